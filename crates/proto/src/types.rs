//! Small value types shared by every message: identifiers, keys, signatures, digests, nonces.

use minicbor::decode::{Decoder, Error as DecErr};
use minicbor::encode::{Encoder, Error as EncErr, Write};
use minicbor::{Decode, Encode};
use std::fmt;

use crate::codec::invalid;

/// Longest identifier (home, lock, camera, carrier, delivery…), in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// A stable, human-readable identifier: 1 to 64 characters from `[A-Za-z0-9._:-]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

/// Why a string is not a valid [`Id`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid identifier {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ : -")]
pub struct IdError(pub String);

impl Id {
    /// Validates and wraps an identifier.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if Self::valid(&s) {
            Ok(Id(s))
        } else {
            Err(IdError(s))
        }
    }

    fn valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_ID_BYTES
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Id::new(s)
    }
}

impl<C> Encode<C> for Id {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncErr<W::Error>> {
        e.str(&self.0)?;
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for Id {
    fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecErr> {
        let s = d.str()?;
        if Id::valid(s) {
            Ok(Id(s.to_owned()))
        } else {
            Err(invalid("identifier"))
        }
    }
}

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Lower-case hexadecimal.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses lower- or upper-case hexadecimal of exactly the right length.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some($name(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let h = self.to_hex();
                write!(f, "{}({}…)", stringify!($name), &h[..12])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl<C> Encode<C> for $name {
            fn encode<W: Write>(&self, e: &mut Encoder<W>, _: &mut C) -> Result<(), EncErr<W::Error>> {
                e.bytes(&self.0)?;
                Ok(())
            }
        }

        impl<'b, C> Decode<'b, C> for $name {
            fn decode(d: &mut Decoder<'b>, _: &mut C) -> Result<Self, DecErr> {
                let b = d.bytes()?;
                let arr: [u8; $len] = b.try_into().map_err(|_| invalid(concat!(stringify!($name), " length")))?;
                Ok($name(arr))
            }
        }
    };
}

fixed_bytes!(
    /// An Ed25519 public key (32 bytes, compressed Edwards point).
    PubKey,
    32
);
fixed_bytes!(
    /// An Ed25519 signature (64 bytes).
    Sig,
    64
);
fixed_bytes!(
    /// A BLAKE3 digest (32 bytes): frame and segment digests, chain heads, audit links.
    Digest,
    32
);
fixed_bytes!(
    /// A 32-byte random value issued once (unlock nonces, handshake nonces).
    Nonce,
    32
);
fixed_bytes!(
    /// A 32-byte keyed-BLAKE3 tag authenticating a routine message under a session key.
    MacTag,
    32
);
fixed_bytes!(
    /// Identifies one grant (one delivery or visit, one open cycle): 16 random bytes.
    GrantId,
    16
);

impl Digest {
    /// The all-zero digest: the chain head before the first link.
    pub const ZERO: Digest = Digest([0; 32]);
}

fixed_bytes!(
    /// An X25519 ephemeral public key (session handshakes).
    XPub,
    32
);

fixed_bytes!(
    /// A SPAKE2 group element (an Ed25519 point, compressed): one pairing message.
    PakeElement,
    32
);
