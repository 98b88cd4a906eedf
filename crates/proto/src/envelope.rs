//! The envelope every top-level message travels in: `[version, body, auth]`.
//!
//! `auth` is either an Ed25519 signature by the sender's key (context `"envelope"`) over the
//! canonical encoding of `body`, or a keyed-BLAKE3 tag under a session key (see
//! [`crate::session`]). State changes are always signed; only routine proofs may be MAC'd.

use minicbor::{Decode, Encode};

use crate::codec::{self, DecodeError};
use crate::keys::{self, KeyPair, SigError};
use crate::msg::Body;
use crate::session::SessionKey;
use crate::types::{MacTag, PubKey, Sig};
use crate::{MAX_ENVELOPE_BYTES, PROTOCOL_VERSION};

/// Signature context of envelope signatures.
pub const ENVELOPE_CONTEXT: &str = "envelope";

/// How an envelope is authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Auth {
    /// Ed25519 signature by the sender's long-term key.
    #[n(0)]
    Sig(#[n(0)] Sig),
    /// Keyed-BLAKE3 tag under the session key `session`.
    #[n(1)]
    Mac {
        /// Session identifier from the handshake.
        #[n(0)]
        session: u64,
        /// The tag.
        #[n(1)]
        tag: MacTag,
    },
}

/// A message with its authentication.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    /// Always [`PROTOCOL_VERSION`].
    #[n(0)]
    pub version: u8,
    /// The message.
    #[n(1)]
    pub body: Body,
    /// Its signature or MAC.
    #[n(2)]
    pub auth: Auth,
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A version this implementation does not speak.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// The signature did not verify.
    #[error("signature: {0}")]
    Sig(#[from] SigError),
    /// The MAC did not verify, or names another session.
    #[error("session MAC does not verify")]
    Mac,
    /// A signature was required and a MAC was given (or the reverse).
    #[error("wrong kind of authentication for this message")]
    WrongAuth,
}

impl Envelope {
    /// Signs `body` with the sender's key.
    pub fn signed(body: Body, key: &KeyPair) -> Self {
        let sig = key.sign(ENVELOPE_CONTEXT, &codec::encode(&body));
        Envelope {
            version: PROTOCOL_VERSION,
            body,
            auth: Auth::Sig(sig),
        }
    }

    /// Authenticates `body` with a session key.
    pub fn maced(body: Body, key: &SessionKey) -> Self {
        let tag = key.tag(&codec::encode(&body));
        Envelope {
            version: PROTOCOL_VERSION,
            body,
            auth: Auth::Mac {
                session: key.id(),
                tag,
            },
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes wire bytes: size limit, canonical form, version and field limits. It does not
    /// check the authentication: call [`Envelope::verify_sig`] or [`Envelope::verify_mac`]
    /// with the key of the device the body names.
    pub fn decode(bytes: &[u8]) -> Result<Self, OpenError> {
        let env: Envelope = codec::decode(bytes, MAX_ENVELOPE_BYTES)?;
        if env.version != PROTOCOL_VERSION {
            return Err(OpenError::Version(env.version));
        }
        env.body.check_limits()?;
        Ok(env)
    }

    /// Verifies the envelope's signature under `key`. A MAC'd envelope is refused.
    pub fn verify_sig(&self, key: &PubKey) -> Result<(), OpenError> {
        match &self.auth {
            Auth::Sig(sig) => {
                if !crate::guard::enabled(crate::guard::Guard::EnvelopeAuth) {
                    return Ok(());
                }
                Ok(keys::verify(
                    key,
                    ENVELOPE_CONTEXT,
                    &codec::encode(&self.body),
                    sig,
                )?)
            }
            Auth::Mac { .. } => Err(OpenError::WrongAuth),
        }
    }

    /// Verifies the envelope's MAC under `key`. A signed envelope is refused here; routine
    /// messages may arrive either way, so callers try the variant that `auth` names.
    pub fn verify_mac(&self, key: &SessionKey) -> Result<(), OpenError> {
        match &self.auth {
            Auth::Mac { session, tag } => {
                if !crate::guard::enabled(crate::guard::Guard::EnvelopeAuth) {
                    return Ok(());
                }
                if *session == key.id() && key.check(&codec::encode(&self.body), tag) {
                    Ok(())
                } else {
                    Err(OpenError::Mac)
                }
            }
            Auth::Sig(_) => Err(OpenError::WrongAuth),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{self, Guard};
    use crate::msg::{Ack, Body};
    use crate::types::Id;

    fn body() -> Body {
        Body::Ack(Ack {
            device: Id::new("lock-1").unwrap(),
            seq: 9,
        })
    }

    /// A broker rewrites a signed message's body, or signs it with its own key.
    fn forgeries() -> (KeyPair, Vec<Envelope>) {
        let device = KeyPair::from_seed(&[1; 32]);
        let mut altered = Envelope::signed(body(), &device);
        if let Body::Ack(a) = &mut altered.body {
            a.seq = 10;
        }
        let foreign = Envelope::signed(body(), &KeyPair::from_seed(&[2; 32]));
        (device, vec![altered, foreign])
    }

    #[test]
    fn i10_forged_envelopes_are_refused() {
        let (device, forged) = forgeries();
        for env in forged {
            let env = Envelope::decode(&env.to_bytes()).unwrap();
            assert_eq!(
                env.verify_sig(&device.public()),
                Err(OpenError::Sig(SigError::BadSignature))
            );
        }
        let key = SessionKey::from_parts(3, [5; 32]);
        let mut maced = Envelope::maced(body(), &key);
        assert_eq!(maced.verify_mac(&key), Ok(()));
        maced.auth = Auth::Mac {
            session: 3,
            tag: MacTag([0; 32]),
        };
        assert_eq!(maced.verify_mac(&key), Err(OpenError::Mac));
    }

    #[test]
    fn i10_without_the_envelope_guard_forged_envelopes_pass() {
        let (device, forged) = forgeries();
        let _off = guard::disable(Guard::EnvelopeAuth);
        for env in forged {
            assert_eq!(env.verify_sig(&device.public()), Ok(()));
        }
        let key = SessionKey::from_parts(3, [5; 32]);
        let mut maced = Envelope::maced(body(), &key);
        maced.auth = Auth::Mac {
            session: 3,
            tag: MacTag([0; 32]),
        };
        assert_eq!(maced.verify_mac(&key), Ok(()));
    }
}
