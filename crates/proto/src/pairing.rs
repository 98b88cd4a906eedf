//! Out-of-band pairing: a setup code run through SPAKE2, and a QR payload of a device's key.
//!
//! The broker is untrusted, so a device and its home never trust a key first seen over it.
//! Two out-of-band channels exist:
//!
//! - **Setup code** ([`SetupCode`]): 10 random digits and a Verhoeff check digit, printed on
//!   the device and typed in by the owner. The two sides run SPAKE2 (Ed25519 group) on it:
//!   [`PairingStart::new`] gives the first message, [`PairingStart::finish`] with the peer's
//!   message gives a [`PairingFinish`] holding the shared key. Each side then sends its
//!   long-term public keys in a [`KeyConfirm`] whose tag is keyed BLAKE3 under a confirmation
//!   key derived from the PAKE key, one key per direction. A wrong code or any altered message
//!   gives different keys on the two sides, so both refuse the other's confirmation; an
//!   attacker on the broker gets one online guess per attempt and learns nothing offline.
//! - **QR payload** ([`QrPayload`]): `doorward:1:<kind>:<device id>:<key hex>:<checksum>`,
//!   the device's public key printed as a QR code, so the owner's app learns the device key
//!   without the broker. It authenticates the device to the home only; the device still
//!   learns the home's keys through the setup code, and the home compares the two keys.
//!
//! Message flow over the broker (each message encoded with [`PairingMessage::to_bytes`]):
//! 1. home → device: [`PairingMessage::Pake`] (role `Home`);
//! 2. device → home: [`PairingMessage::Pake`] (role `Device`), then
//!    [`PairingMessage::Confirm`] with [`DeviceKeys`];
//! 3. home → device: [`PairingMessage::Confirm`] with [`HomeKeys`], only if step 2 verified.
//!
//! Limiting attempts is the caller's job: at most [`MAX_PAIRING_ATTEMPTS_PER_HOUR`] failed
//! attempts per device, counted on both sides, which keeps an online guesser's chance per
//! year below 1 in 10^5 with 10^10 codes.

use minicbor::{Decode, Encode};
use rand_core::CryptoRngCore;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::{self, DecodeError};
use crate::guard::{self, Guard};
use crate::types::{Id, MacTag, PakeElement, PubKey};

/// Random digits in a setup code.
pub const SETUP_CODE_RANDOM_DIGITS: usize = 10;
/// All digits in a setup code: the random ones and one Verhoeff check digit.
pub const SETUP_CODE_DIGITS: usize = SETUP_CODE_RANDOM_DIGITS + 1;
/// Most failed pairing attempts a device (and the home) should allow per hour before refusing
/// to start another. Enforcing it is the caller's job: this module keeps no clock.
pub const MAX_PAIRING_ATTEMPTS_PER_HOUR: u32 = 10;
/// Largest encoded [`PairingMessage`], in bytes.
pub const MAX_PAIRING_MESSAGE_BYTES: usize = 512;
/// Longest QR payload string, in bytes.
pub const MAX_QR_BYTES: usize = 256;
/// The QR payload's prefix.
pub const QR_PREFIX: &str = "doorward";
/// The QR payload format version.
pub const QR_VERSION: u8 = 1;

/// SPAKE2 identity of the home side.
const ID_HOME: &[u8] = b"doorward/v1 pairing home";
/// SPAKE2 identity prefix of the device side; the device id follows.
const ID_DEVICE_PREFIX: &[u8] = b"doorward/v1 pairing device ";
/// Key-derivation contexts of the two confirmation keys.
const CONFIRM_HOME: &str = "doorward/v1 pairing confirm home";
const CONFIRM_DEVICE: &str = "doorward/v1 pairing confirm device";
/// Key-derivation context of the QR checksum.
const QR_CHECKSUM: &str = "doorward/v1 qr checksum";

// ---------------------------------------------------------------------------------------------
// Setup codes

/// Verhoeff's dihedral-group tables: the check digit catches every single-digit error and
/// every swap of adjacent digits, which a Luhn digit does not (it misses 09 ↔ 90).
const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];
const VERHOEFF_INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];

/// The Verhoeff check digit of `digits` (each 0–9).
pub fn verhoeff_digit(digits: &[u8]) -> u8 {
    let mut c = 0u8;
    for (i, &d) in digits.iter().rev().enumerate() {
        c = VERHOEFF_D[c as usize][VERHOEFF_P[(i + 1) % 8][d as usize % 10] as usize];
    }
    VERHOEFF_INV[c as usize]
}

fn verhoeff_valid(digits: &[u8]) -> bool {
    let mut c = 0u8;
    for (i, &d) in digits.iter().rev().enumerate() {
        c = VERHOEFF_D[c as usize][VERHOEFF_P[i % 8][d as usize % 10] as usize];
    }
    c == 0
}

/// Why a typed setup code was refused before any PAKE ran.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetupCodeError {
    /// A character other than a digit, a space or a dash.
    #[error("setup codes contain only digits (spaces and dashes are ignored), found {0:?}")]
    NotADigit(char),
    /// Too few or too many digits.
    #[error("a setup code has {SETUP_CODE_DIGITS} digits, this one has {0}")]
    Length(usize),
    /// The check digit does not match: a digit was mistyped or two were swapped.
    #[error("the setup code has a typo (its check digit does not match)")]
    Checksum,
}

/// A setup code: [`SETUP_CODE_RANDOM_DIGITS`] random digits and a Verhoeff check digit, shown
/// as `1234-5678-901`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SetupCode([u8; SETUP_CODE_DIGITS]);

impl SetupCode {
    /// Draws a fresh code from the caller's RNG (uniform over the 10^10 codes).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut d = [0u8; SETUP_CODE_DIGITS];
        for slot in d.iter_mut().take(SETUP_CODE_RANDOM_DIGITS) {
            // Rejection sampling keeps every digit uniform: 250 is the largest multiple of 10
            // below 256.
            *slot = loop {
                let mut b = [0u8; 1];
                rng.fill_bytes(&mut b);
                if b[0] < 250 {
                    break b[0] % 10;
                }
            };
        }
        d[SETUP_CODE_RANDOM_DIGITS] = verhoeff_digit(&d[..SETUP_CODE_RANDOM_DIGITS]);
        SetupCode(d)
    }

    /// Parses a code as typed: digits, with spaces and dashes ignored; the check digit must
    /// match.
    pub fn parse(s: &str) -> Result<Self, SetupCodeError> {
        let mut d = [0u8; SETUP_CODE_DIGITS];
        let mut n = 0usize;
        for ch in s.chars() {
            match ch {
                ' ' | '-' => continue,
                '0'..='9' => {
                    if n < SETUP_CODE_DIGITS {
                        d[n] = ch as u8 - b'0';
                    }
                    n += 1;
                }
                other => return Err(SetupCodeError::NotADigit(other)),
            }
        }
        if n != SETUP_CODE_DIGITS {
            return Err(SetupCodeError::Length(n));
        }
        if !verhoeff_valid(&d) {
            return Err(SetupCodeError::Checksum);
        }
        Ok(SetupCode(d))
    }

    /// The digits without separators, as fed to the PAKE.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

impl std::fmt::Display for SetupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.digits();
        write!(f, "{}-{}-{}", &s[..4], &s[4..8], &s[8..])
    }
}

impl std::fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A setup code is a secret until pairing is done: keep it out of logs.
        f.write_str("SetupCode(…)")
    }
}

impl std::str::FromStr for SetupCode {
    type Err = SetupCodeError;
    fn from_str(s: &str) -> Result<Self, SetupCodeError> {
        SetupCode::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire messages

/// Which side of a pairing a message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum PairingRole {
    /// The home: the owner's app or the server acting for the home (SPAKE2 side A).
    #[n(0)]
    Home,
    /// The device being paired (SPAKE2 side B).
    #[n(1)]
    Device,
}

impl PairingRole {
    fn peer(self) -> Self {
        match self {
            PairingRole::Home => PairingRole::Device,
            PairingRole::Device => PairingRole::Home,
        }
    }
}

/// What a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum DeviceKind {
    /// A lock agent (drives the bolt).
    #[n(0)]
    Lock,
    /// A camera agent (the witness).
    #[n(1)]
    Camera,
}

impl DeviceKind {
    /// The name used in QR payloads and topics: `lock` or `camera`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Lock => "lock",
            DeviceKind::Camera => "camera",
        }
    }

    /// Parses `lock` or `camera`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "lock" => Some(DeviceKind::Lock),
            "camera" => Some(DeviceKind::Camera),
            _ => None,
        }
    }
}

/// One SPAKE2 message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PakeMsg {
    /// The sender's side.
    #[n(0)]
    pub role: PairingRole,
    /// The device being paired (bound into the PAKE, so a swapped id fails).
    #[n(1)]
    pub device: Id,
    /// The SPAKE2 element `X = x·B + pw·M` (home) or `Y = y·B + pw·N` (device).
    #[n(2)]
    pub element: PakeElement,
}

/// A device's long-term identity, sent to the home under key confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeviceKeys {
    /// Lock or camera.
    #[n(0)]
    pub kind: DeviceKind,
    /// The device.
    #[n(1)]
    pub device: Id,
    /// The device key: signs every envelope and statement the device makes.
    #[n(2)]
    pub key: PubKey,
}

/// The home's long-term keys, sent to the device under key confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HomeKeys {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The home root key: issuer certificates chain to it.
    #[n(1)]
    pub root: PubKey,
    /// The server key: signs unlock contexts, time, revocations' envelopes.
    #[n(2)]
    pub server: PubKey,
    /// For a lock: its paired camera (paired before it), whose attestations it requires.
    #[n(3)]
    pub witness: Option<DeviceKeys>,
}

/// The keys one side sends.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PairingPayload {
    /// Sent by the home.
    #[n(0)]
    Home(#[n(0)] HomeKeys),
    /// Sent by the device.
    #[n(1)]
    Device(#[n(0)] DeviceKeys),
}

impl PairingPayload {
    fn role(&self) -> PairingRole {
        match self {
            PairingPayload::Home(_) => PairingRole::Home,
            PairingPayload::Device(_) => PairingRole::Device,
        }
    }

    fn keys(&self) -> Vec<&PubKey> {
        match self {
            PairingPayload::Home(h) => {
                let mut v = vec![&h.root, &h.server];
                if let Some(w) = &h.witness {
                    v.push(&w.key);
                }
                v
            }
            PairingPayload::Device(d) => vec![&d.key],
        }
    }
}

/// Long-term keys with their key-confirmation tag.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct KeyConfirm {
    /// The sender's keys.
    #[n(0)]
    pub payload: PairingPayload,
    /// `BLAKE3-keyed(confirm key of the sender's side, canonical(payload))`.
    #[n(1)]
    pub tag: MacTag,
}

/// Every pairing message, as sent over the (untrusted) broker.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PairingMessage {
    /// A SPAKE2 message.
    #[n(0)]
    Pake(#[n(0)] PakeMsg),
    /// Keys under key confirmation.
    #[n(1)]
    Confirm(#[n(0)] KeyConfirm),
}

impl PairingMessage {
    /// The wire bytes (canonical CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes wire bytes: at most [`MAX_PAIRING_MESSAGE_BYTES`], canonical form.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode(bytes, MAX_PAIRING_MESSAGE_BYTES)
    }
}

// ---------------------------------------------------------------------------------------------
// The PAKE

/// Why a pairing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingError {
    /// The peer's PAKE message is not usable: wrong side, another device, or a degenerate point.
    #[error("bad pairing message: {0}")]
    BadMessage(&'static str),
    /// The key confirmation did not verify: the setup codes differ or a message was altered.
    /// Count it as a failed attempt.
    #[error("pairing failed: wrong setup code or a tampered message")]
    Confirmation,
    /// A confirmation came from the wrong side, or names another device.
    #[error("the confirmation is not from the expected peer")]
    WrongPeer,
    /// A key in the payload is not a valid, non-degenerate Ed25519 key.
    #[error("a paired key is not a valid Ed25519 key")]
    BadKey,
}

fn spake_ids(device: &Id) -> (Identity, Identity) {
    let mut b = ID_DEVICE_PREFIX.to_vec();
    b.extend_from_slice(device.as_str().as_bytes());
    (Identity::new(ID_HOME), Identity::new(&b))
}

fn side_byte(role: PairingRole) -> u8 {
    // spake2 prefixes its messages with 'A' or 'B'; the role field carries it on the wire.
    match role {
        PairingRole::Home => b'A',
        PairingRole::Device => b'B',
    }
}

fn is_valid_key(k: &PubKey) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(&k.0).is_ok_and(|vk| !vk.is_weak())
}

/// One side's pairing after it sent its PAKE message.
pub struct PairingStart {
    role: PairingRole,
    device: Id,
    spake: Spake2<Ed25519Group>,
}

impl std::fmt::Debug for PairingStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairingStart({:?}, {})", self.role, self.device)
    }
}

impl PairingStart {
    /// Starts pairing `device` as `role` with the setup code; send the returned message.
    pub fn new(
        role: PairingRole,
        code: &SetupCode,
        device: &Id,
        rng: &mut impl CryptoRngCore,
    ) -> (Self, PakeMsg) {
        let pw = Password::new(code.digits());
        let (id_a, id_b) = spake_ids(device);
        let (spake, msg) = match role {
            PairingRole::Home => Spake2::<Ed25519Group>::start_a_with_rng(&pw, &id_a, &id_b, rng),
            PairingRole::Device => Spake2::<Ed25519Group>::start_b_with_rng(&pw, &id_a, &id_b, rng),
        };
        // spake2's message is a side byte and a 32-byte compressed point.
        let mut element = [0u8; 32];
        element.copy_from_slice(&msg[1..]);
        let out = PakeMsg {
            role,
            device: device.clone(),
            element: PakeElement(element),
        };
        (
            PairingStart {
                role,
                device: device.clone(),
                spake,
            },
            out,
        )
    }

    /// Finishes the PAKE with the peer's message. Succeeds even with a wrong code: only the
    /// key confirmation that follows can tell.
    pub fn finish(self, peer: &PakeMsg) -> Result<PairingFinish, PairingError> {
        if peer.role != self.role.peer() {
            return Err(PairingError::BadMessage("message from the same side"));
        }
        if peer.device != self.device {
            return Err(PairingError::BadMessage("message for another device"));
        }
        // A small-order element would pin the shared point to a handful of values whatever
        // the code; refuse it (the identity point included).
        if !is_valid_key(&PubKey(peer.element.0)) {
            return Err(PairingError::BadMessage("degenerate PAKE element"));
        }
        let mut m = Vec::with_capacity(33);
        m.push(side_byte(peer.role));
        m.extend_from_slice(&peer.element.0);
        let mut k = self
            .spake
            .finish(&m)
            .map_err(|_| PairingError::BadMessage("not a curve point"))?;
        let (mine, theirs) = match self.role {
            PairingRole::Home => (CONFIRM_HOME, CONFIRM_DEVICE),
            PairingRole::Device => (CONFIRM_DEVICE, CONFIRM_HOME),
        };
        let out = PairingFinish {
            role: self.role,
            device: self.device,
            confirm_mine: blake3::derive_key(mine, &k),
            confirm_peer: blake3::derive_key(theirs, &k),
        };
        k.zeroize();
        Ok(out)
    }
}

/// One side's pairing after the PAKE: sends its keys and checks the peer's.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PairingFinish {
    #[zeroize(skip)]
    role: PairingRole,
    #[zeroize(skip)]
    device: Id,
    confirm_mine: [u8; 32],
    confirm_peer: [u8; 32],
}

impl std::fmt::Debug for PairingFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairingFinish({:?}, {})", self.role, self.device)
    }
}

fn confirm_tag(key: &[u8; 32], payload: &PairingPayload) -> MacTag {
    MacTag(*blake3::keyed_hash(key, &codec::encode(payload)).as_bytes())
}

impl PairingFinish {
    /// Wraps this side's keys in a confirmation to send. The payload must be this side's kind
    /// (and, for a device, name the device being paired).
    pub fn confirm(&self, payload: PairingPayload) -> Result<KeyConfirm, PairingError> {
        if payload.role() != self.role {
            return Err(PairingError::WrongPeer);
        }
        if let PairingPayload::Device(d) = &payload {
            if d.device != self.device {
                return Err(PairingError::WrongPeer);
            }
        }
        let tag = confirm_tag(&self.confirm_mine, &payload);
        Ok(KeyConfirm { payload, tag })
    }

    /// Checks the peer's confirmation and returns its keys. An error means the pairing
    /// failed: count the attempt and start again with a new PAKE.
    pub fn accept(&self, msg: &KeyConfirm) -> Result<PairingPayload, PairingError> {
        if msg.payload.role() != self.role.peer() {
            return Err(PairingError::WrongPeer);
        }
        if let PairingPayload::Device(d) = &msg.payload {
            if d.device != self.device {
                return Err(PairingError::WrongPeer);
            }
        }
        if guard::enabled(Guard::PairingConfirmation) {
            let expected = confirm_tag(&self.confirm_peer, &msg.payload);
            // blake3::Hash compares in constant time.
            if blake3::Hash::from_bytes(expected.0) != blake3::Hash::from_bytes(msg.tag.0) {
                return Err(PairingError::Confirmation);
            }
        }
        if !msg.payload.keys().into_iter().all(is_valid_key) {
            return Err(PairingError::BadKey);
        }
        Ok(msg.payload.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// QR payloads

/// Why a QR payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QrError {
    /// Longer than [`MAX_QR_BYTES`].
    #[error("QR payload is longer than {MAX_QR_BYTES} bytes")]
    TooLong,
    /// Not a Doorward payload, or too few `:`-separated fields.
    #[error("not a Doorward pairing code (expected doorward:1:<kind>:<device>:<key>:<checksum>)")]
    Format,
    /// A format version this side does not read.
    #[error("QR payload version {0:?} is not supported (this side reads version {QR_VERSION})")]
    Version(String),
    /// A kind other than `lock` or `camera`.
    #[error("unknown device kind {0:?} (expected lock or camera)")]
    Kind(String),
    /// The device id is not a valid identifier.
    #[error("invalid device id {0:?}")]
    DeviceId(String),
    /// The key is not 64 lower-case hexadecimal digits.
    #[error("the key is not 64 lower-case hexadecimal digits")]
    KeyEncoding,
    /// The key is not a valid, non-degenerate Ed25519 key.
    #[error("the key is not a valid Ed25519 key")]
    BadKey,
    /// The checksum does not match: the code was misread or altered.
    #[error("QR payload checksum does not match (misread or altered)")]
    Checksum,
}

/// A device's public key as printed in its QR code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrPayload {
    /// Lock or camera.
    pub kind: DeviceKind,
    /// The device.
    pub device: Id,
    /// The device key.
    pub key: PubKey,
}

fn qr_checksum(body: &str) -> String {
    hex::encode(&blake3::derive_key(QR_CHECKSUM, body.as_bytes())[..4])
}

impl QrPayload {
    /// The payload string: `doorward:1:<kind>:<device>:<key as 64 lower-case hex>:<checksum>`,
    /// where checksum is the first 4 bytes, in lower-case hex, of
    /// `BLAKE3-derive("doorward/v1 qr checksum", everything before the last ':')`.
    pub fn format(&self) -> String {
        let body = format!(
            "{QR_PREFIX}:{QR_VERSION}:{}:{}:{}",
            self.kind.as_str(),
            self.device,
            self.key.to_hex()
        );
        let sum = qr_checksum(&body);
        format!("{body}:{sum}")
    }

    /// Parses and checks a payload. Exactly the string [`QrPayload::format`] produces is
    /// accepted. The device id may itself contain `:`, so the key and checksum are taken from
    /// the right.
    pub fn parse(s: &str) -> Result<Self, QrError> {
        if s.len() > MAX_QR_BYTES {
            return Err(QrError::TooLong);
        }
        let (body, sum) = s.rsplit_once(':').ok_or(QrError::Format)?;
        let (rest, key) = body.rsplit_once(':').ok_or(QrError::Format)?;
        let mut head = rest.splitn(4, ':');
        let (prefix, version, kind, device) =
            match (head.next(), head.next(), head.next(), head.next()) {
                (Some(p), Some(v), Some(k), Some(d)) => (p, v, k, d),
                _ => return Err(QrError::Format),
            };
        if prefix != QR_PREFIX {
            return Err(QrError::Format);
        }
        if version != QR_VERSION.to_string() {
            return Err(QrError::Version(version.to_owned()));
        }
        // The checksum comes before field parsing so a misread code says "misread", not
        // whatever field the damage happened to land in.
        if sum.len() != 8 || qr_checksum(body).as_bytes() != sum.as_bytes() {
            return Err(QrError::Checksum);
        }
        let kind = DeviceKind::from_name(kind).ok_or_else(|| QrError::Kind(kind.to_owned()))?;
        let device = Id::new(device).map_err(|_| QrError::DeviceId(device.to_owned()))?;
        if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(QrError::KeyEncoding);
        }
        let key = PubKey::from_hex(key).ok_or(QrError::KeyEncoding)?;
        if !is_valid_key(&key) {
            return Err(QrError::BadKey);
        }
        Ok(QrPayload { kind, device, key })
    }

    /// Whether keys received through a setup-code pairing are the ones this QR code shows.
    pub fn matches(&self, keys: &DeviceKeys) -> bool {
        self.kind == keys.kind && self.device == keys.device && self.key == keys.key
    }
}

impl std::fmt::Display for QrPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.format())
    }
}

impl std::str::FromStr for QrPayload {
    type Err = QrError;
    fn from_str(s: &str) -> Result<Self, QrError> {
        QrPayload::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    fn home_keys() -> HomeKeys {
        HomeKeys {
            home: id("home-1"),
            root: KeyPair::from_seed(&[1; 32]).public(),
            server: KeyPair::from_seed(&[2; 32]).public(),
            witness: Some(DeviceKeys {
                kind: DeviceKind::Camera,
                device: id("cam-1"),
                key: KeyPair::from_seed(&[3; 32]).public(),
            }),
        }
    }

    fn device_keys() -> DeviceKeys {
        DeviceKeys {
            kind: DeviceKind::Lock,
            device: id("lock-1"),
            key: KeyPair::from_seed(&[4; 32]).public(),
        }
    }

    /// Runs the PAKE with the two codes; returns both finished sides.
    fn pake(home_code: &SetupCode, dev_code: &SetupCode) -> (PairingFinish, PairingFinish) {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let dev = id("lock-1");
        let (h, ha) = PairingStart::new(PairingRole::Home, home_code, &dev, &mut rng);
        let (d, db) = PairingStart::new(PairingRole::Device, dev_code, &dev, &mut rng);
        // Both messages cross the broker encoded; decode them as the receivers would.
        let ha = PairingMessage::decode(&PairingMessage::Pake(ha).to_bytes()).unwrap();
        let db = PairingMessage::decode(&PairingMessage::Pake(db).to_bytes()).unwrap();
        let (PairingMessage::Pake(ha), PairingMessage::Pake(db)) = (ha, db) else {
            panic!("decoded to another variant")
        };
        (h.finish(&db).unwrap(), d.finish(&ha).unwrap())
    }

    fn code(rng_seed: u64) -> SetupCode {
        SetupCode::generate(&mut ChaCha20Rng::seed_from_u64(rng_seed))
    }

    #[test]
    fn i10_right_code_pairs_and_both_sides_learn_each_others_keys() {
        let c = code(1);
        let (home, dev) = pake(&c, &c);
        let from_dev = dev.confirm(PairingPayload::Device(device_keys())).unwrap();
        assert_eq!(
            home.accept(&from_dev).unwrap(),
            PairingPayload::Device(device_keys())
        );
        let from_home = home.confirm(PairingPayload::Home(home_keys())).unwrap();
        assert_eq!(
            dev.accept(&from_home).unwrap(),
            PairingPayload::Home(home_keys())
        );
    }

    #[test]
    fn i10_wrong_code_fails_on_both_sides() {
        let right = code(1);
        let wrong = code(2);
        assert_ne!(right, wrong);
        let (home, dev) = pake(&right, &wrong);
        let from_dev = dev.confirm(PairingPayload::Device(device_keys())).unwrap();
        assert_eq!(home.accept(&from_dev), Err(PairingError::Confirmation));
        let from_home = home.confirm(PairingPayload::Home(home_keys())).unwrap();
        assert_eq!(dev.accept(&from_home), Err(PairingError::Confirmation));
    }

    #[test]
    fn i10_a_tampered_pake_message_fails_on_both_sides() {
        let c = code(3);
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let dev = id("lock-1");
        let (h, ha) = PairingStart::new(PairingRole::Home, &c, &dev, &mut rng);
        let (d, db) = PairingStart::new(PairingRole::Device, &c, &dev, &mut rng);
        // The broker replaces the device's element with one of its own (a valid point from a
        // PAKE it runs with a guessed code).
        let (_, mitm) = PairingStart::new(PairingRole::Device, &code(4), &dev, &mut rng);
        let tampered = PakeMsg {
            element: mitm.element,
            ..db
        };
        let home = h.finish(&tampered).unwrap();
        let device = d.finish(&ha).unwrap();
        let from_dev = device
            .confirm(PairingPayload::Device(device_keys()))
            .unwrap();
        assert_eq!(home.accept(&from_dev), Err(PairingError::Confirmation));
        let from_home = home.confirm(PairingPayload::Home(home_keys())).unwrap();
        assert_eq!(device.accept(&from_home), Err(PairingError::Confirmation));
    }

    #[test]
    fn i10_a_substituted_key_in_the_confirmation_is_refused() {
        let c = code(5);
        let (home, dev) = pake(&c, &c);
        let mut from_dev = dev.confirm(PairingPayload::Device(device_keys())).unwrap();
        let attacker = KeyPair::from_seed(&[66; 32]).public();
        if let PairingPayload::Device(d) = &mut from_dev.payload {
            d.key = attacker;
        }
        assert_eq!(home.accept(&from_dev), Err(PairingError::Confirmation));
    }

    #[test]
    fn i10_without_the_confirmation_guard_a_substituted_key_is_accepted() {
        let c = code(5);
        let (home, dev) = pake(&c, &c);
        let mut from_dev = dev.confirm(PairingPayload::Device(device_keys())).unwrap();
        let attacker = KeyPair::from_seed(&[66; 32]).public();
        if let PairingPayload::Device(d) = &mut from_dev.payload {
            d.key = attacker;
        }
        let _off = crate::guard::disable(Guard::PairingConfirmation);
        let got = home.accept(&from_dev).unwrap();
        assert!(matches!(got, PairingPayload::Device(d) if d.key == attacker));
    }

    #[test]
    fn a_confirmation_reflected_back_to_its_sender_is_refused() {
        let c = code(6);
        let (home, _dev) = pake(&c, &c);
        // The broker echoes the home's own confirmation back to it. The role is inside the
        // MAC'd payload, so it cannot be relabelled; as it stands it is from the wrong side.
        let from_home = home.confirm(PairingPayload::Home(home_keys())).unwrap();
        assert_eq!(home.accept(&from_home), Err(PairingError::WrongPeer));
    }

    #[test]
    fn a_degenerate_or_misdirected_pake_message_is_refused() {
        let c = code(7);
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let dev = id("lock-1");
        let (h, ha) = PairingStart::new(PairingRole::Home, &c, &dev, &mut rng);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let bad = PakeMsg {
            role: PairingRole::Device,
            device: dev.clone(),
            element: PakeElement(identity),
        };
        assert!(matches!(h.finish(&bad), Err(PairingError::BadMessage(_))));
        let (h, _) = PairingStart::new(PairingRole::Home, &c, &dev, &mut rng);
        assert!(matches!(h.finish(&ha), Err(PairingError::BadMessage(_))));
        let (d, _) = PairingStart::new(PairingRole::Device, &c, &id("lock-2"), &mut rng);
        assert!(matches!(d.finish(&ha), Err(PairingError::BadMessage(_))));
    }

    #[test]
    fn a_weak_key_in_a_confirmed_payload_is_refused() {
        let c = code(8);
        let (home, dev) = pake(&c, &c);
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let keys = DeviceKeys {
            key: PubKey(weak),
            ..device_keys()
        };
        let from_dev = dev.confirm(PairingPayload::Device(keys)).unwrap();
        assert_eq!(home.accept(&from_dev), Err(PairingError::BadKey));
    }

    #[test]
    fn setup_codes_round_trip_and_catch_typos() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for _ in 0..200 {
            let c = SetupCode::generate(&mut rng);
            let shown = c.to_string();
            assert_eq!(shown.len(), SETUP_CODE_DIGITS + 2);
            assert_eq!(SetupCode::parse(&shown).unwrap(), c);
            assert_eq!(SetupCode::parse(&c.digits()).unwrap(), c);
            let digits: Vec<u8> = c.digits().bytes().collect();
            // Every single-digit change is caught.
            for i in 0..digits.len() {
                for alt in b'0'..=b'9' {
                    if alt == digits[i] {
                        continue;
                    }
                    let mut t = digits.clone();
                    t[i] = alt;
                    let t = String::from_utf8(t).unwrap();
                    assert_eq!(SetupCode::parse(&t), Err(SetupCodeError::Checksum), "{t}");
                }
            }
            // Every swap of two different adjacent digits is caught.
            for i in 0..digits.len() - 1 {
                if digits[i] != digits[i + 1] {
                    let mut t = digits.clone();
                    t.swap(i, i + 1);
                    let t = String::from_utf8(t).unwrap();
                    assert_eq!(SetupCode::parse(&t), Err(SetupCodeError::Checksum), "{t}");
                }
            }
        }
    }

    #[test]
    fn verhoeff_matches_the_published_example() {
        // Verhoeff's worked example: the check digit of 236 is 3.
        assert_eq!(verhoeff_digit(&[2, 3, 6]), 3);
        assert!(verhoeff_valid(&[2, 3, 6, 3]));
    }

    #[test]
    fn setup_code_errors_are_specific() {
        assert_eq!(
            SetupCode::parse("1234-5678-90"),
            Err(SetupCodeError::Length(10))
        );
        assert_eq!(
            SetupCode::parse("1234-5678-9012"),
            Err(SetupCodeError::Length(12))
        );
        assert_eq!(
            SetupCode::parse("1234-5678-90x"),
            Err(SetupCodeError::NotADigit('x'))
        );
    }

    fn qr() -> QrPayload {
        QrPayload {
            kind: DeviceKind::Camera,
            device: id("cam:front-door"),
            key: KeyPair::from_seed(&[3; 32]).public(),
        }
    }

    #[test]
    fn qr_payload_round_trips_even_with_colons_in_the_device_id() {
        let q = qr();
        let s = q.to_string();
        assert!(s.starts_with("doorward:1:camera:cam:front-door:"));
        assert_eq!(QrPayload::parse(&s).unwrap(), q);
    }

    #[test]
    fn qr_payload_with_a_bad_checksum_is_refused() {
        let s = qr().to_string();
        // Change one key digit: the checksum no longer matches.
        let i = s.len() - 12;
        let mut b = s.clone().into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        let t = String::from_utf8(b).unwrap();
        assert_eq!(QrPayload::parse(&t), Err(QrError::Checksum));
        let mut t = s.clone();
        t.pop();
        t.push('g');
        assert_eq!(QrPayload::parse(&t), Err(QrError::Checksum));
    }

    #[test]
    fn qr_payload_errors_are_specific() {
        let with_sum = |body: &str| format!("{body}:{}", qr_checksum(body));
        let key = qr().key.to_hex();
        assert_eq!(QrPayload::parse("hello"), Err(QrError::Format));
        assert_eq!(
            QrPayload::parse(&with_sum(&format!("other:1:lock:l:{key}"))),
            Err(QrError::Format)
        );
        assert_eq!(
            QrPayload::parse(&with_sum(&format!("doorward:2:lock:l:{key}"))),
            Err(QrError::Version("2".into()))
        );
        assert_eq!(
            QrPayload::parse(&with_sum(&format!("doorward:1:door:l:{key}"))),
            Err(QrError::Kind("door".into()))
        );
        assert_eq!(
            QrPayload::parse(&with_sum(&format!("doorward:1:lock:l l:{key}"))),
            Err(QrError::DeviceId("l l".into()))
        );
        assert_eq!(
            QrPayload::parse(&with_sum(&format!(
                "doorward:1:lock:l:{}",
                key.to_uppercase()
            ))),
            Err(QrError::KeyEncoding)
        );
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(
            QrPayload::parse(&with_sum(&format!(
                "doorward:1:lock:l:{}",
                hex::encode(weak)
            ))),
            Err(QrError::BadKey)
        );
        assert_eq!(
            QrPayload::parse(&"x".repeat(MAX_QR_BYTES + 1)),
            Err(QrError::TooLong)
        );
    }

    #[test]
    fn qr_key_matches_the_key_from_the_setup_code_pairing() {
        let q = qr();
        let k = DeviceKeys {
            kind: q.kind,
            device: q.device.clone(),
            key: q.key,
        };
        assert!(q.matches(&k));
        assert!(!q.matches(&DeviceKeys {
            key: KeyPair::from_seed(&[9; 32]).public(),
            ..k
        }));
    }

    #[test]
    fn pairing_messages_over_the_size_limit_are_refused() {
        let big = vec![0u8; MAX_PAIRING_MESSAGE_BYTES + 1];
        assert!(matches!(
            PairingMessage::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
