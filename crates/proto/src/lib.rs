//! Doorward's wire protocol and key handling, with no IO.
//!
//! This crate is what every other part of Doorward agrees on: the messages devices, the server
//! and drivers exchange ([`msg`]), their canonical binary encoding ([`codec`]), the envelope that
//! carries a signature or a session MAC ([`envelope`]), the one Ed25519 verification rule
//! ([`keys`]), session keys from a signed handshake ([`session`]), out-of-band pairing
//! ([`pairing`]), delegated issuing keys and access grants ([`grant`]), the signed upload of
//! recorded footage ([`footage`]), and the test-only guard switches ([`guard`]).
//!
//! It is not a transport: it never opens a socket, reads a clock or draws from the operating
//! system's RNG. Callers pass time (`*_ms` arguments) and randomness (`&mut impl CryptoRngCore`).
//!
//! It may depend only on pure libraries (encoding, cryptography, biscuit). Everything in
//! Doorward depends on it; it depends on nothing of Doorward's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod envelope;
pub mod footage;
pub mod grant;
pub mod guard;
pub mod keys;
pub mod msg;
pub mod pairing;
pub mod session;
pub mod types;

pub use codec::DecodeError;
pub use envelope::{Auth, Envelope, OpenError};
pub use keys::{verify, KeyPair, SigError};
pub use msg::*;
pub use types::*;

/// The protocol version carried in every envelope. A receiver rejects any other version.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest envelope a device or the server accepts, in bytes, before any decoding starts.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;

/// Largest serialized access grant (a biscuit token), in bytes.
pub const MAX_GRANT_BYTES: usize = 4 * 1024;
