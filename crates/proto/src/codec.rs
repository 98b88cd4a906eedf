//! Canonical binary encoding: CBOR (RFC 8949) as produced by `minicbor`'s derive, with one
//! encoding per value.
//!
//! Structs are CBOR arrays whose positions are the `#[n(..)]` indices; enums are
//! `[variant, fields...]` or a bare unsigned integer for field-less enums; byte strings are
//! definite-length. Decoding is strict: the input must be at most the caller's limit, must be
//! consumed entirely, and must re-encode to exactly the same bytes. So a value has one
//! encoding, which is what hash chains, signatures and replay checks rely on.

use minicbor::{Decode, Encode};
use std::error::Error as _;

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is longer than the limit for this kind of message.
    #[error("input is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Input length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The bytes are not valid CBOR for this message type.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Bytes remain after the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    /// The value decodes but is not in canonical form (another encoding of the same value).
    #[error("not in canonical form")]
    NotCanonical,
    /// A field holds a value outside its allowed range (for example an identifier too long).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

/// Encodes a value canonically.
pub fn encode<T: Encode<()>>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail: the writer is infallible and our types have no
    // fallible encoders.
    minicbor::to_vec(value).expect("encoding into a Vec is infallible")
}

/// Decodes a value, requiring canonical form and at most `limit` bytes.
pub fn decode<T>(bytes: &[u8], limit: usize) -> Result<T, DecodeError>
where
    T: for<'b> Decode<'b, ()> + Encode<()>,
{
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let mut d = minicbor::Decoder::new(bytes);
    let value: T = d.decode().map_err(map_err)?;
    let used = d.position();
    if used != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - used));
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

fn map_err(e: minicbor::decode::Error) -> DecodeError {
    if let Some(msg) = e.source().and_then(|s| s.downcast_ref::<InvalidField>()) {
        return DecodeError::Invalid(msg.0);
    }
    DecodeError::Malformed(e.to_string())
}

/// Carried inside a `minicbor` decode error when a field's value is out of range.
#[derive(Debug)]
pub(crate) struct InvalidField(pub &'static str);

impl std::fmt::Display for InvalidField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidField {}

/// Builds a decode error that [`decode`] reports as [`DecodeError::Invalid`].
pub(crate) fn invalid(what: &'static str) -> minicbor::decode::Error {
    minicbor::decode::Error::custom(InvalidField(what))
}
