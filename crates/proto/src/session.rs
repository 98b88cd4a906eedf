//! Session keys from a signed handshake, and keyed-BLAKE3 authentication of routine messages.
//!
//! Verifying an Ed25519 signature costs ~40 µs; a million devices sending a proof every 30 s
//! would spend more than a core on signatures alone. So a device and the server agree on a
//! session key once, in a handshake whose two messages are each signed by a long-term key, and
//! routine proofs then carry a 32-byte keyed-BLAKE3 tag instead (about 1 µs). State changes
//! stay signed, and devices send signed checkpoints that anchor the MAC'd stream (I10).
//!
//! Handshake (both messages travel in signed envelopes; the caller checks those signatures
//! with the device key and the server key before calling in here):
//! 1. device → server: [`SessionHello`] `{device, eph_d, nonce}`;
//! 2. server → device: [`SessionAccept`] `{device, session, eph_s, hello = H(hello)}`;
//! 3. both: `key = BLAKE3-derive("doorward/v1 session key", X25519(e, E') || H(hello) ||
//!    canonical(accept))`.

use minicbor::{Decode, Encode};
use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec;
use crate::types::{Digest, Id, MacTag, Nonce, XPub};

/// Device → server: opens a session.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SessionHello {
    /// The device.
    #[n(0)]
    pub device: Id,
    /// The device's ephemeral X25519 key.
    #[n(1)]
    pub eph: XPub,
    /// Fresh randomness, so two hellos never hash alike.
    #[n(2)]
    pub nonce: Nonce,
}

/// Server → device: accepts a session.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SessionAccept {
    /// The device.
    #[n(0)]
    pub device: Id,
    /// Session identifier, carried by every MAC'd envelope.
    #[n(1)]
    pub session: u64,
    /// The server's ephemeral X25519 key.
    #[n(2)]
    pub eph: XPub,
    /// Digest of the canonical hello this accepts.
    #[n(3)]
    pub hello: Digest,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The accept answers another hello or another device.
    #[error("the server's accept does not answer this hello")]
    Mismatch,
    /// The peer's ephemeral key is degenerate (the shared secret is all zeros).
    #[error("degenerate ephemeral key")]
    Degenerate,
}

/// A 32-byte session key and its identifier. Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SessionKey {
    id: u64,
    key: [u8; 32],
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey(id={})", self.id)
    }
}

impl SessionKey {
    /// Rebuilds a session key from storage (the server keeps keys wrapped, so a restart
    /// needs no new handshake).
    pub fn from_parts(id: u64, key: [u8; 32]) -> Self {
        SessionKey { id, key }
    }

    /// The session identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The raw key, for wrapping into storage.
    pub fn secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// The tag over `msg`: `BLAKE3-keyed(key, "doorward/v1 mac" || msg)`.
    pub fn tag(&self, msg: &[u8]) -> MacTag {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"doorward/v1 mac");
        h.update(msg);
        MacTag(*h.finalize().as_bytes())
    }

    /// Checks a tag in constant time.
    pub fn check(&self, msg: &[u8], tag: &MacTag) -> bool {
        // blake3::Hash equality is constant-time.
        blake3::Hash::from_bytes(self.tag(msg).0) == blake3::Hash::from_bytes(tag.0)
    }
}

fn derive(shared: &[u8; 32], hello: &Digest, accept: &SessionAccept) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("doorward/v1 session key");
    h.update(shared);
    h.update(&hello.0);
    h.update(&codec::encode(accept));
    *h.finalize().as_bytes()
}

/// Digest of a hello, as carried in the accept.
pub fn hello_digest(hello: &SessionHello) -> Digest {
    Digest(
        *blake3::Hasher::new_derive_key("doorward/v1 hello")
            .update(&codec::encode(hello))
            .finalize()
            .as_bytes(),
    )
}

/// The device's side of a handshake in progress.
pub struct Initiator {
    secret: StaticSecret,
    hello: SessionHello,
}

impl Initiator {
    /// Starts a handshake; send the returned hello in an envelope signed by the device key.
    pub fn start(device: Id, rng: &mut impl CryptoRngCore) -> (Self, SessionHello) {
        let secret = StaticSecret::random_from_rng(&mut *rng);
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let hello = SessionHello {
            device,
            eph: XPub(XPublic::from(&secret).to_bytes()),
            nonce: Nonce(nonce),
        };
        (
            Initiator {
                secret,
                hello: hello.clone(),
            },
            hello,
        )
    }

    /// Finishes with the server's accept (whose envelope signature the caller has checked
    /// under the server key).
    pub fn finish(self, accept: &SessionAccept) -> Result<SessionKey, HandshakeError> {
        let hd = hello_digest(&self.hello);
        if accept.hello != hd || accept.device != self.hello.device {
            return Err(HandshakeError::Mismatch);
        }
        let shared = self.secret.diffie_hellman(&XPublic::from(accept.eph.0));
        if !shared.was_contributory() {
            return Err(HandshakeError::Degenerate);
        }
        Ok(SessionKey {
            id: accept.session,
            key: derive(shared.as_bytes(), &hd, accept),
        })
    }
}

/// The server's side: answers a hello (whose envelope signature the caller has checked under
/// the device key) and returns the accept to sign and send, with the session key.
pub fn respond(
    hello: &SessionHello,
    session: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<(SessionAccept, SessionKey), HandshakeError> {
    let secret = StaticSecret::random_from_rng(&mut *rng);
    let hd = hello_digest(hello);
    let accept = SessionAccept {
        device: hello.device.clone(),
        session,
        eph: XPub(XPublic::from(&secret).to_bytes()),
        hello: hd,
    };
    let shared = secret.diffie_hellman(&XPublic::from(hello.eph.0));
    if !shared.was_contributory() {
        return Err(HandshakeError::Degenerate);
    }
    let key = SessionKey {
        id: session,
        key: derive(shared.as_bytes(), &hd, &accept),
    };
    Ok((accept, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn both_sides_derive_the_same_key_and_tags_bind_the_message() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (init, hello) = Initiator::start(Id::new("cam-1").unwrap(), &mut rng);
        let (accept, server_key) = respond(&hello, 42, &mut rng).unwrap();
        let device_key = init.finish(&accept).unwrap();
        assert_eq!(device_key, server_key);
        let tag = device_key.tag(b"proof");
        assert!(server_key.check(b"proof", &tag));
        assert!(!server_key.check(b"proof!", &tag));
    }

    #[test]
    fn an_accept_for_another_hello_is_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let (init, _hello) = Initiator::start(Id::new("cam-1").unwrap(), &mut rng);
        let (_, other) = Initiator::start(Id::new("cam-1").unwrap(), &mut rng);
        let (accept, _) = respond(&other, 1, &mut rng).unwrap();
        assert_eq!(init.finish(&accept).unwrap_err(), HandshakeError::Mismatch);
    }

    #[test]
    fn a_degenerate_ephemeral_key_is_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let (_, mut hello) = Initiator::start(Id::new("cam-1").unwrap(), &mut rng);
        hello.eph = XPub([0; 32]);
        assert_eq!(
            respond(&hello, 1, &mut rng).unwrap_err(),
            HandshakeError::Degenerate
        );
    }
}
