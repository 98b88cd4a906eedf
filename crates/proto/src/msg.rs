//! Every message of the Doorward protocol.
//!
//! Top-level messages travel as a [`Body`] inside an [`crate::Envelope`], which carries an
//! Ed25519 signature or a session MAC. Parts that must be checked by someone other than the
//! receiver of the envelope (the server's unlock context, the camera's witness attestation,
//! the issuing key's certificate) are [`Signed`] on their own, with their own context string.
//! docs/PROTOCOL.md is the normative description; field numbers below are the CBOR array
//! positions.

use minicbor::{Decode, Encode};

use crate::codec;
use crate::keys::{self, KeyPair, SigError};
use crate::types::*;

/// Longest free-text field (alarm details), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Most frame digests one camera proof may carry.
pub const MAX_FRAMES_PER_PROOF: usize = 16;
/// Most entries one revocation message may carry.
pub const MAX_REVOCATIONS_PER_MESSAGE: usize = 64;

/// A value signed on its own, independent of the envelope that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Signed<T> {
    /// The signed value.
    #[n(0)]
    pub body: T,
    /// Signature over `"doorward/v1/" || T::CONTEXT || 0x00 || canonical(body)`.
    #[n(1)]
    pub sig: Sig,
}

/// A type that can be [`Signed`]: names the context string its signatures are bound to.
pub trait Signable: Encode<()> {
    /// The signature context, unique per type.
    const CONTEXT: &'static str;
}

impl<T: Signable> Signed<T> {
    /// Signs `body` with `key`.
    pub fn sign(body: T, key: &KeyPair) -> Self {
        let sig = key.sign(T::CONTEXT, &codec::encode(&body));
        Signed { body, sig }
    }

    /// Checks the signature under `key` (the strict rule, see [`crate::keys`]).
    pub fn verify(&self, key: &PubKey) -> Result<&T, SigError> {
        keys::verify(key, T::CONTEXT, &codec::encode(&self.body), &self.sig)?;
        Ok(&self.body)
    }
}

/// Position of the bolt, as read by the bolt sensor (never inferred from a command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum Bolt {
    /// Bolt fully extended.
    #[n(0)]
    Thrown,
    /// Bolt fully retracted.
    #[n(1)]
    Retracted,
    /// Bolt between positions (motor running).
    #[n(2)]
    Moving,
    /// Bolt stuck: the motor ran and the bolt did not reach its position.
    #[n(3)]
    Jammed,
}

/// The door as read by the door sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum Door {
    /// Door in the frame.
    #[n(0)]
    Closed,
    /// Door out of the frame.
    #[n(1)]
    Open,
}

/// Why a lock report was sent.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum LockEvent {
    /// Routine supervision report; nothing changed.
    #[n(0)]
    Periodic,
    /// The bolt sensor changed.
    #[n(1)]
    BoltChanged,
    /// The door sensor changed.
    #[n(2)]
    DoorChanged,
    /// The bolt was retracted for a grant (an open cycle began).
    #[n(3)]
    Unlocked(#[n(0)] GrantId),
    /// The bolt was thrown again and confirmed; the open cycle ended.
    #[n(4)]
    Relocked(#[n(0)] GrantId),
    /// An unlock was refused; the reason is recorded.
    #[n(5)]
    Denied(#[n(0)] DenyReason),
    /// The door opened while the bolt was thrown.
    #[n(6)]
    ForcedOpen,
    /// The door stayed open past the grant's maximum open time.
    #[n(7)]
    HeldOpen,
    /// The bolt did not reach its commanded position.
    #[n(8)]
    Jammed,
    /// The lock's witness is gone mid-cycle: it accepts no grant until the witness is back.
    #[n(9)]
    WitnessLockout,
    /// The lock (re)started.
    #[n(10)]
    Boot,
    /// A revocation message was applied; the lock now holds the given epoch.
    #[n(11)]
    EpochApplied,
}

/// Why an unlock was refused, by the lock or by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
#[allow(missing_docs)] // Each name says it; docs/PROTOCOL.md lists them with their checks.
pub enum DenyReason {
    #[n(0)]
    Malformed,
    #[n(1)]
    UnknownKey,
    #[n(2)]
    BadSignature,
    #[n(3)]
    WrongLock,
    #[n(4)]
    NonceUnknown,
    #[n(5)]
    NonceExpired,
    #[n(6)]
    ClockSkew,
    #[n(7)]
    TimeUnknown,
    #[n(8)]
    StaleWitnessReceipt,
    #[n(9)]
    WitnessNotPaired,
    #[n(10)]
    WitnessNotRecording,
    #[n(11)]
    WitnessMismatch,
    #[n(12)]
    WitnessLockout,
    #[n(13)]
    StaleEpoch,
    #[n(14)]
    EpochAhead,
    #[n(15)]
    Revoked,
    #[n(16)]
    IssuerCertInvalid,
    #[n(17)]
    GrantInvalid,
    #[n(18)]
    GrantOutsideWindow,
    #[n(19)]
    GrantSpent,
    #[n(20)]
    WrongDriver,
    #[n(21)]
    LowBattery,
    #[n(22)]
    CycleInProgress,
    #[n(23)]
    Jammed,
    #[n(24)]
    StorageFailure,
    #[n(25)]
    QueueFull,
    #[n(26)]
    CarrierNotOptedIn,
    #[n(27)]
    OutsideAllowedWindow,
    #[n(28)]
    VacationMode,
    #[n(29)]
    ApprovalDenied,
    #[n(30)]
    ApprovalTimedOut,
    #[n(31)]
    DriverBlocked,
    #[n(32)]
    DeliveryUnknown,
    #[n(33)]
    WitnessUnavailable,
    #[n(34)]
    GarageOnly,
}

/// A signed or MAC'd report of the lock's sensors. Sent on every change and every
/// `proof_interval_ms` during an open cycle (I12), every idle interval otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LockReport {
    /// The lock.
    #[n(0)]
    pub lock: Id,
    /// Strictly increasing per lock, across reboots.
    #[n(1)]
    pub seq: u64,
    /// The lock's monotonic clock, milliseconds.
    #[n(2)]
    pub mono_ms: u64,
    /// Bolt sensor.
    #[n(3)]
    pub bolt: Bolt,
    /// Door sensor.
    #[n(4)]
    pub door: Door,
    /// Battery charge, percent (0–100).
    #[n(5)]
    pub battery_pct: u8,
    /// Revocation epoch the lock holds.
    #[n(6)]
    pub epoch: u64,
    /// Why this report was sent.
    #[n(7)]
    pub event: LockEvent,
    /// The open cycle in progress, if any.
    #[n(8)]
    pub cycle: Option<GrantId>,
}

/// What the camera's detectors saw in the frames a proof covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Observations {
    /// Consecutive frames with identical digests (a frozen stream).
    #[n(0)]
    pub frozen: bool,
    /// A frame digest seen earlier in the stream (a looped stream, A/B alternation included).
    #[n(1)]
    pub looped: bool,
    /// Frames uniform or dark while recording (covered or blinded lens).
    #[n(2)]
    pub blinded: bool,
    /// The door region of the picture is moving.
    #[n(3)]
    pub door_moving: bool,
    /// People currently in the entry zone.
    #[n(4)]
    pub people_in_zone: u8,
    /// People who crossed the threshold inwards since the stream started (wrapping).
    #[n(5)]
    pub entered: u16,
    /// People who crossed the threshold outwards since the stream started (wrapping).
    #[n(6)]
    pub exited: u16,
    /// The door, as the picture shows it: open (swung out of its frame) or closed.
    #[n(7)]
    pub door_open: bool,
}

/// A camera's proof that it is alive and recording: the newest segment and the chain head.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CameraProof {
    /// The camera.
    #[n(0)]
    pub camera: Id,
    /// Strictly increasing per camera; one per segment.
    #[n(1)]
    pub seq: u64,
    /// The camera's monotonic clock, milliseconds.
    #[n(2)]
    pub mono_ms: u64,
    /// Digest of the segment this proof covers ([`segment_digest`]).
    #[n(3)]
    pub segment: Digest,
    /// Chain head after this segment ([`chain_next`]).
    #[n(4)]
    pub head: Digest,
    /// Whether the camera is recording.
    #[n(5)]
    pub recording: bool,
    /// Digests of the frames in the segment, in order (at most [`MAX_FRAMES_PER_PROOF`]).
    #[n(6)]
    pub frames: Vec<Digest>,
    /// What the detectors saw.
    #[n(7)]
    pub obs: Observations,
}

/// A fresh nonce the lock issued for one unlock attempt, readable over the local channel.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UnlockNonce {
    /// The lock.
    #[n(0)]
    pub lock: Id,
    /// 32 random bytes, valid for `nonce_ttl_ms` on the lock's clock, usable once.
    #[n(1)]
    pub nonce: Nonce,
    /// The lock's monotonic clock when the nonce was issued.
    #[n(2)]
    pub mono_ms: u64,
    /// The revocation epoch the lock holds.
    #[n(3)]
    pub epoch: u64,
}
impl Signable for UnlockNonce {
    const CONTEXT: &'static str = "unlock-nonce";
}

/// The camera's own statement that it is alive and recording now, bound to one lock nonce.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct WitnessAttestation {
    /// The camera.
    #[n(0)]
    pub camera: Id,
    /// The lock whose nonce is attested.
    #[n(1)]
    pub lock: Id,
    /// The lock's nonce.
    #[n(2)]
    pub nonce: Nonce,
    /// The camera's newest proof sequence number.
    #[n(3)]
    pub seq: u64,
    /// The camera's chain head at `seq`.
    #[n(4)]
    pub head: Digest,
    /// Whether the camera is recording.
    #[n(5)]
    pub recording: bool,
}
impl Signable for WitnessAttestation {
    const CONTEXT: &'static str = "witness-attestation";
}

/// The server's receipt that the camera's chain reached it: proof that footage is off site.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CameraReceipt {
    /// The camera.
    #[n(0)]
    pub camera: Id,
    /// The newest proof sequence number the server holds.
    #[n(1)]
    pub seq: u64,
    /// The chain head at `seq`.
    #[n(2)]
    pub head: Digest,
    /// Server time when that proof arrived, milliseconds since the Unix epoch.
    #[n(3)]
    pub received_ms: u64,
}

/// The server's authorisation of one unlock, bound to the lock's nonce (I1).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UnlockContext {
    /// The lock.
    #[n(0)]
    pub lock: Id,
    /// The nonce the lock issued.
    #[n(1)]
    pub nonce: Nonce,
    /// Server time, milliseconds since the Unix epoch.
    #[n(2)]
    pub server_ms: u64,
    /// Revocation epoch the server holds for this home.
    #[n(3)]
    pub epoch: u64,
    /// The grant being used.
    #[n(4)]
    pub grant: GrantId,
    /// The driver's key that signed the nonce.
    #[n(5)]
    pub driver: PubKey,
    /// Receipt of the paired camera's chain.
    #[n(6)]
    pub receipt: CameraReceipt,
}
impl Signable for UnlockContext {
    const CONTEXT: &'static str = "unlock-context";
}

/// A home root key's delegation of grant issuing to an issuing key, for a time.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct IssuerCert {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The delegated issuing key.
    #[n(1)]
    pub issuer: PubKey,
    /// Start of validity, milliseconds since the Unix epoch.
    #[n(2)]
    pub not_before_ms: u64,
    /// End of validity (exclusive).
    #[n(3)]
    pub not_after_ms: u64,
    /// Increases with each rotation; a lock refuses certificates older than the newest it saw.
    #[n(4)]
    pub serial: u64,
}
impl Signable for IssuerCert {
    const CONTEXT: &'static str = "issuer-cert";
}

/// Everything the lock needs to decide one unlock (I1, I2). Sent by the server over MQTT.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UnlockCommand {
    /// The issuing key's certificate, signed by the home root.
    #[n(0)]
    pub issuer: Signed<IssuerCert>,
    /// The grant: a biscuit token rooted at the issuing key, serialized.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub grant: Vec<u8>,
    /// The driver's signature over the nonce ([`driver_nonce_message`]).
    #[n(2)]
    pub driver_sig: Sig,
    /// The server's unlock context, signed by the server key.
    #[n(3)]
    pub context: Signed<UnlockContext>,
    /// The paired camera's attestation, signed by the camera key.
    #[n(4)]
    pub witness: Signed<WitnessAttestation>,
}

/// What a revocation removes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Revoked {
    /// Every grant issued to this carrier.
    #[n(0)]
    Carrier(#[n(0)] Id),
    /// Every grant bound to this driver key.
    #[n(1)]
    Driver(#[n(0)] PubKey),
    /// One grant.
    #[n(2)]
    Grant(#[n(0)] GrantId),
}

/// A revocation update for one home, signed by an issuing key. Epochs increase by one; a lock
/// applies them in order and refuses contexts from another epoch.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Revocation {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The epoch this update brings the lock to.
    #[n(1)]
    pub epoch: u64,
    /// Server time of issue.
    #[n(2)]
    pub issued_ms: u64,
    /// What is revoked (at most [`MAX_REVOCATIONS_PER_MESSAGE`]).
    #[n(3)]
    pub items: Vec<Revoked>,
}
impl Signable for Revocation {
    const CONTEXT: &'static str = "revocation";
}

/// A lock asks the server for the time, with a fresh nonce so a recorded answer cannot be
/// replayed (S10).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TimeRequest {
    /// The device asking.
    #[n(0)]
    pub device: Id,
    /// Fresh nonce.
    #[n(1)]
    pub nonce: Nonce,
}

/// The server's signed time, bound to the device's request nonce.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TimeSync {
    /// The device that asked.
    #[n(0)]
    pub device: Id,
    /// The request's nonce.
    #[n(1)]
    pub nonce: Nonce,
    /// Server time, milliseconds since the Unix epoch.
    #[n(2)]
    pub server_ms: u64,
}

/// A device's signed summary of its stream: sent at least every second during an entry and
/// with each idle interval, it anchors the MAC'd proofs before it (I10).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Checkpoint {
    /// The device.
    #[n(0)]
    pub device: Id,
    /// Sequence number of the newest message covered.
    #[n(1)]
    pub seq: u64,
    /// Hash of every message the device sent up to `seq` ([`chain_next`] over message digests).
    #[n(2)]
    pub head: Digest,
    /// The device's monotonic clock.
    #[n(3)]
    pub mono_ms: u64,
}

/// Kinds of alarm, each tied to the invariant whose breach it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(index_only)]
pub enum AlarmKind {
    /// No camera proof for `witness_gap_ms` during an entry (I4).
    #[n(0)]
    WitnessLost,
    /// No lock report for `witness_gap_ms` during an open cycle (I12).
    #[n(1)]
    LockSilent,
    /// An unlock or relock not confirmed by a bolt report within `confirm_ms` (I6).
    #[n(2)]
    UnconfirmedActuation,
    /// Repeating frame or segment digests (I7).
    #[n(3)]
    FrozenFootage,
    /// Digests seen before, A/B alternation included (I7).
    #[n(4)]
    LoopedFootage,
    /// Uniform or dark frames while recording (I7).
    #[n(5)]
    BlindedCamera,
    /// Door sensor and camera disagree about the door (I5, I7).
    #[n(6)]
    SceneMismatch,
    /// A message with a bad signature or MAC, or from an unknown key (I10).
    #[n(7)]
    ForgedReport,
    /// A time or device clock outside `max_skew_ms` (I8).
    #[n(8)]
    ClockSkew,
    /// The bolt is jammed.
    #[n(9)]
    BoltJammed,
    /// The door stayed open past the maximum open time.
    #[n(10)]
    DoorHeldOpen,
    /// The door opened while the bolt was thrown.
    #[n(11)]
    ForcedOpen,
    /// Activity in the entry zone after the entry closed (I13).
    #[n(12)]
    ActivityAfterEntry,
    /// More people went in than came out (I13).
    #[n(13)]
    MoreInThanOut,
    /// A replayed, gapped or forked device stream (I7).
    #[n(14)]
    StreamTampered,
    /// An idle device stopped reporting (I4 idle supervision).
    #[n(15)]
    DeviceSilent,
    /// The server could not make its record durable (I8).
    #[n(16)]
    StorageFailure,
    /// The battery is too low for another relock.
    #[n(17)]
    LowBattery,
    /// A closed door without a bolt-thrown report within `confirm_ms` (I12).
    #[n(18)]
    NotRelocked,
}

/// An alarm as delivered to the homeowner.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Alarm {
    /// Unique per server, increasing.
    #[n(0)]
    pub id: u64,
    /// The home.
    #[n(1)]
    pub home: Id,
    /// What happened.
    #[n(2)]
    pub kind: AlarmKind,
    /// Server time when it was raised.
    #[n(3)]
    pub raised_ms: u64,
    /// The device whose evidence (or missing evidence) raised it.
    #[n(4)]
    pub device: Option<Id>,
    /// Audit-log index of the evidence.
    #[n(5)]
    pub evidence: Option<u64>,
    /// A sentence for a person (at most [`MAX_TEXT_BYTES`]).
    #[n(6)]
    pub detail: String,
}

/// The server asks a camera to attest a lock's nonce.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct WitnessRequest {
    /// The camera asked.
    #[n(0)]
    pub camera: Id,
    /// The lock's signed nonce.
    #[n(1)]
    pub nonce: Signed<UnlockNonce>,
}

/// Acknowledges a device's messages up to `seq`, so it may drop its local record of them.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Ack {
    /// The device.
    #[n(0)]
    pub device: Id,
    /// Newest sequence number now durable at the server.
    #[n(1)]
    pub seq: u64,
}

/// Every top-level message. The variant number is the message kind on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[allow(missing_docs)]
pub enum Body {
    #[n(1)]
    LockReport(#[n(0)] LockReport),
    #[n(2)]
    CameraProof(#[n(0)] CameraProof),
    #[n(3)]
    UnlockNonce(#[n(0)] Signed<UnlockNonce>),
    #[n(4)]
    WitnessRequest(#[n(0)] WitnessRequest),
    #[n(5)]
    WitnessAttestation(#[n(0)] Signed<WitnessAttestation>),
    #[n(6)]
    UnlockCommand(#[n(0)] Box<UnlockCommand>),
    #[n(7)]
    Revocation(#[n(0)] Revocation),
    #[n(8)]
    TimeRequest(#[n(0)] TimeRequest),
    #[n(9)]
    TimeSync(#[n(0)] TimeSync),
    #[n(10)]
    Checkpoint(#[n(0)] Checkpoint),
    #[n(11)]
    Alarm(#[n(0)] Alarm),
    #[n(12)]
    Ack(#[n(0)] Ack),
    #[n(13)]
    SessionHello(#[n(0)] crate::session::SessionHello),
    #[n(14)]
    SessionAccept(#[n(0)] crate::session::SessionAccept),
}

impl Body {
    /// Checks the limits that the type system does not: list lengths, text lengths, ranges.
    pub fn check_limits(&self) -> Result<(), codec::DecodeError> {
        use codec::DecodeError::Invalid;
        match self {
            Body::LockReport(r) if r.battery_pct > 100 => Err(Invalid("battery_pct over 100")),
            Body::CameraProof(p) if p.frames.len() > MAX_FRAMES_PER_PROOF => {
                Err(Invalid("too many frames in one proof"))
            }
            Body::Revocation(r) if r.items.len() > MAX_REVOCATIONS_PER_MESSAGE => {
                Err(Invalid("too many revocation items"))
            }
            Body::Alarm(a) if a.detail.len() > MAX_TEXT_BYTES => {
                Err(Invalid("alarm detail too long"))
            }
            Body::UnlockCommand(c) if c.grant.len() > crate::MAX_GRANT_BYTES => {
                Err(Invalid("grant too large"))
            }
            _ => Ok(()),
        }
    }

    /// The device a message comes from or is addressed to, for key lookup and routing.
    pub fn device(&self) -> Option<&Id> {
        Some(match self {
            Body::LockReport(r) => &r.lock,
            Body::CameraProof(p) => &p.camera,
            Body::UnlockNonce(n) => &n.body.lock,
            Body::WitnessRequest(w) => &w.camera,
            Body::WitnessAttestation(w) => &w.body.camera,
            Body::UnlockCommand(c) => &c.context.body.lock,
            Body::TimeRequest(t) => &t.device,
            Body::TimeSync(t) => &t.device,
            Body::Checkpoint(c) => &c.device,
            Body::Ack(a) => &a.device,
            Body::SessionHello(h) => &h.device,
            Body::SessionAccept(a) => &a.device,
            Body::Revocation(_) | Body::Alarm(_) => return None,
        })
    }
}

/// The bytes a driver signs (context `"driver-nonce"`) to prove presence at one lock.
pub fn driver_nonce_message(lock: &Id, nonce: &Nonce) -> Vec<u8> {
    codec::encode(&(lock.clone(), *nonce))
}

/// Signature context for driver nonce signatures.
pub const DRIVER_NONCE_CONTEXT: &str = "driver-nonce";

/// Digest of one camera segment: BLAKE3 over its frame digests in order.
pub fn segment_digest(frames: &[Digest]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("doorward/v1 segment");
    for f in frames {
        h.update(&f.0);
    }
    Digest(*h.finalize().as_bytes())
}

/// Digest of one frame's pixel data.
pub fn frame_digest(pixels: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("doorward/v1 frame");
    h.update(pixels);
    Digest(*h.finalize().as_bytes())
}

/// One link of a hash chain: `BLAKE3-derive("doorward/v1 chain", prev || seq_be || item)`.
/// Used by camera chains, device message chains and the audit log alike.
pub fn chain_next(prev: &Digest, seq: u64, item: &Digest) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("doorward/v1 chain");
    h.update(&prev.0);
    h.update(&seq.to_be_bytes());
    h.update(&item.0);
    Digest(*h.finalize().as_bytes())
}

/// Digest of one message body, as chained into a device's [`Checkpoint::head`]:
/// `head_seq = chain_next(head_prev, seq, message_digest(body))` over the device's messages in
/// order, starting from [`Digest::ZERO`]. A signed checkpoint so commits to the exact content
/// of every MAC'd message before it.
pub fn message_digest(body: &Body) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("doorward/v1 message");
    h.update(&codec::encode(body));
    Digest(*h.finalize().as_bytes())
}
