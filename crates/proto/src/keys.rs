//! Ed25519 keys and the one signature-verification rule used everywhere in Doorward.
//!
//! Every signature covers `"doorward/v1/" || context || 0x00 || message`, where `context`
//! names what is signed (`"envelope"`, `"driver-nonce"`, `"issuer-cert"`…), so a signature made
//! for one purpose never verifies for another. Verification is always
//! [`ed25519_dalek::VerifyingKey::verify_strict`]: it rejects small-order keys and
//! non-canonical signature encodings, and biscuit-auth uses the same rule for grants, so a
//! signature is valid in one place exactly when it is valid in every other.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroize;

use crate::types::{PubKey, Sig};

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SigError {
    /// The public key is not a valid, non-degenerate Ed25519 point.
    #[error("public key is not a valid Ed25519 key")]
    BadKey,
    /// The signature does not verify under the strict rule.
    #[error("signature does not verify")]
    BadSignature,
}

/// An Ed25519 key pair (device key, server key, home root, issuing key, driver key).
#[derive(Clone)]
pub struct KeyPair {
    sk: SigningKey,
}

impl KeyPair {
    /// Generates a key from the caller's RNG (the OS RNG in processes, a seeded one in the
    /// simulator).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        KeyPair {
            sk: SigningKey::generate(rng),
        }
    }

    /// Rebuilds a key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair {
            sk: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte secret seed. Store it only encrypted or in a 0600 file.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.sk.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PubKey {
        PubKey(self.sk.verifying_key().to_bytes())
    }

    /// Signs `msg` for the purpose named by `context`.
    pub fn sign(&self, context: &str, msg: &[u8]) -> Sig {
        let mut input = signing_input(context, msg);
        let sig = self.sk.sign(&input);
        input.zeroize();
        Sig(sig.to_bytes())
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({:?})", self.public())
    }
}

fn signing_input(context: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + context.len() + 1 + msg.len());
    v.extend_from_slice(b"doorward/v1/");
    v.extend_from_slice(context.as_bytes());
    v.push(0);
    v.extend_from_slice(msg);
    v
}

/// Verifies `sig` over `msg` for `context` under `key` with the strict rule.
pub fn verify(key: &PubKey, context: &str, msg: &[u8], sig: &Sig) -> Result<(), SigError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| SigError::BadKey)?;
    if vk.is_weak() {
        return Err(SigError::BadKey);
    }
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(&signing_input(context, msg), &sig)
        .map_err(|_| SigError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn signature_is_bound_to_its_context() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let k = KeyPair::generate(&mut rng);
        let s = k.sign("driver-nonce", b"abc");
        assert_eq!(verify(&k.public(), "driver-nonce", b"abc", &s), Ok(()));
        assert_eq!(
            verify(&k.public(), "envelope", b"abc", &s),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(&k.public(), "driver-nonce", b"abd", &s),
            Err(SigError::BadSignature)
        );
    }

    #[test]
    fn small_order_keys_are_rejected() {
        // The identity point encodes as 0x01 followed by zeros: a weak key that would verify
        // forged signatures under a lax rule.
        let mut id = [0u8; 32];
        id[0] = 1;
        let sig = Sig([0; 64]);
        assert_eq!(verify(&PubKey(id), "x", b"m", &sig), Err(SigError::BadKey));
    }
}
