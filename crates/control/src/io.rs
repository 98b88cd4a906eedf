//! What goes into the core ([`Input`], [`crate::Admin`]) and what comes out ([`Output`]),
//! including the audit records the shell appends to the hash-chained log.

use minicbor::{Decode, Encode};

use doorward_proto::{
    Alarm, CameraReceipt, DenyReason, Digest, Envelope, GrantId, Id, Nonce, PubKey, Revoked, Sig,
    Signed, UnlockNonce,
};

/// A driver's request to enter for a delivery, as the carrier API passes it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRequest {
    /// The delivery.
    pub delivery: Id,
    /// The driver's key.
    pub driver: PubKey,
    /// The lock's signed nonce, read by the driver over the local channel.
    pub nonce: Signed<UnlockNonce>,
    /// The driver's signature over [`doorward_proto::driver_nonce_message`].
    pub driver_sig: Sig,
}

/// An event for the core.
// Inputs are built, handed over once and consumed, never stored in bulk: boxing the large
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Raw envelope bytes from MQTT, with the device whose topic they came from.
    Device {
        /// The device named by the topic.
        from: Id,
        /// The envelope bytes.
        bytes: Vec<u8>,
    },
    /// The driver is at the door (from the carrier API).
    DriverArrived {
        /// The delivery.
        delivery: Id,
    },
    /// A driver asks to enter.
    EntryRequest(EntryRequest),
    /// The homeowner approves a pending entry.
    Approve {
        /// The request, from [`ApprovalRequest::request`].
        request: u64,
    },
    /// The homeowner refuses a pending entry.
    Deny {
        /// The request.
        request: u64,
    },
    /// The homeowner acknowledged an alarm: stop re-sending it.
    AckAlarm {
        /// The alarm's id.
        id: u64,
    },
    /// Nothing happened; time passed (deadlines fire).
    Tick,
}

/// Where an alarm or a shown state comes from: one authenticated device message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Evidence {
    /// The device that sent it.
    #[n(0)]
    pub device: Id,
    /// Its sequence number.
    #[n(1)]
    pub seq: u64,
    /// BLAKE3 of the envelope bytes as received.
    #[n(2)]
    pub digest: Digest,
}

/// An alarm for the homeowner, with what it rests on and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmNotice {
    /// The alarm as sent to the homeowner's devices.
    pub alarm: Alarm,
    /// The device message the alarm rests on (for missing evidence: the last one received).
    pub evidence: Option<Evidence>,
    /// What the homeowner should do.
    pub action: &'static str,
    /// 1 when first raised, then 2, 3… for each re-send until acknowledged.
    pub sent: u32,
}

/// The homeowner is asked to approve an entry before `deadline_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Answer with [`Input::Approve`] or [`Input::Deny`] and this number.
    pub request: u64,
    /// The home.
    pub home: Id,
    /// The delivery.
    pub delivery: Id,
    /// The carrier.
    pub carrier: Id,
    /// The driver's key.
    pub driver: PubKey,
    /// The lock.
    pub lock: Id,
    /// After this the request is denied.
    pub deadline_ms: u64,
}

/// The answer to an entry request, for the carrier API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryDecision {
    /// Refused, with the reason.
    Denied {
        /// The request.
        request: u64,
        /// The delivery.
        delivery: Id,
        /// Why.
        reason: DenyReason,
    },
    /// The unlock command is on its way to the lock (the lock still decides, I1).
    Authorised {
        /// The request.
        request: u64,
        /// The delivery.
        delivery: Id,
        /// The grant issued.
        grant: GrantId,
    },
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Publish an envelope to a device (signed by the server key).
    Send {
        /// The device.
        device: Id,
        /// The envelope.
        envelope: Envelope,
    },
    /// Show (or show again) an alarm to the homeowner.
    Alarm(AlarmNotice),
    /// Ask the homeowner to approve an entry.
    ApprovalRequest(ApprovalRequest),
    /// Answer an entry request.
    Decision(EntryDecision),
    /// Append a record to the audit log.
    Audit(AuditEvent),
}

/// Progress of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum Phase {
    /// Scheduled by the carrier.
    #[n(0)]
    Scheduled,
    /// The driver is at the door (an entry may be pending approval or the witness).
    #[n(1)]
    AtDoor,
    /// The unlock is authorised and the command sent; no report has confirmed it yet.
    #[n(2)]
    Unlocking,
    /// The lock reported the bolt retracted for this grant: the entry is open.
    #[n(3)]
    Entry,
    /// The lock reported the bolt thrown and the door closed.
    #[n(4)]
    Relocked,
    /// The camera saw the door closed, nobody in the zone and as many out as in.
    #[n(5)]
    EgressWitnessed,
    /// Finished with no alarm.
    #[n(6)]
    Done,
    /// Finished with alarms.
    #[n(7)]
    Incident,
    /// Finished without an entry: the window ended with nobody let in.
    #[n(8)]
    Expired,
    /// Finished without an entry: cancelled before anybody was let in.
    #[n(9)]
    Cancelled,
}

/// Why a device message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum RejectReason {
    /// Not a valid envelope.
    #[n(0)]
    Malformed,
    /// The topic names no paired device.
    #[n(1)]
    UnknownDevice,
    /// The body names another device than the topic.
    #[n(2)]
    WrongSource,
    /// The signature does not verify under the device key.
    #[n(3)]
    BadSignature,
    /// The MAC does not verify, or names a session the server does not hold.
    #[n(4)]
    BadMac,
    /// A state change arrived MAC'd; state changes must be signed.
    #[n(5)]
    SignatureRequired,
    /// An older sequence number.
    #[n(6)]
    Replay,
    /// Another message under an already used sequence number.
    #[n(7)]
    Fork,
    /// A sequence jump past the loss tolerance.
    #[n(8)]
    Gap,
    /// A redelivery of the newest message.
    #[n(9)]
    Duplicate,
    /// The camera's segment or chain head does not check.
    #[n(10)]
    ChainBroken,
    /// The device's clock jumped ahead of server time.
    #[n(11)]
    ClockSkew,
    /// A message kind the server does not take from this device.
    #[n(12)]
    Unexpected,
    /// A session handshake that failed.
    #[n(13)]
    Handshake,
    /// A session hello past `max_pending_sessions`.
    #[n(14)]
    HandshakeLimit,
}

/// A change to the registry, for the record.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum RegistryChange {
    /// A home was added with its root and issuing keys.
    #[n(0)]
    HomeAdded {
        /// Root key.
        #[n(0)]
        root: PubKey,
        /// Issuing key.
        #[n(1)]
        issuer: PubKey,
    },
    /// A lock and its camera were paired.
    #[n(1)]
    DoorPaired {
        /// Lock.
        #[n(0)]
        lock: Id,
        /// Lock key.
        #[n(1)]
        lock_key: PubKey,
        /// Camera.
        #[n(2)]
        camera: Id,
        /// Camera key.
        #[n(3)]
        camera_key: PubKey,
        /// Garage door.
        #[n(4)]
        garage: bool,
    },
    /// A carrier was opted in.
    #[n(2)]
    CarrierOptedIn(#[n(0)] Id),
    /// A driver was registered for a carrier.
    #[n(3)]
    DriverAdded {
        /// Driver key.
        #[n(0)]
        driver: PubKey,
        /// Carrier.
        #[n(1)]
        carrier: Id,
    },
    /// A driver was blocked or unblocked.
    #[n(4)]
    DriverBlocked {
        /// Driver key.
        #[n(0)]
        driver: PubKey,
        /// Now blocked.
        #[n(1)]
        blocked: bool,
    },
    /// The home's policy changed.
    #[n(5)]
    PolicySet {
        /// Vacation mode.
        #[n(0)]
        vacation: bool,
        /// Garage only.
        #[n(1)]
        garage_only: bool,
        /// Live approval.
        #[n(2)]
        live_approval: bool,
        /// Allowed weekly windows as (start, end) minutes of the week, UTC.
        #[n(3)]
        windows: Vec<(u32, u32)>,
    },
    /// A delivery was scheduled.
    #[n(6)]
    DeliveryScheduled {
        /// Delivery.
        #[n(0)]
        delivery: Id,
        /// Lock.
        #[n(1)]
        lock: Id,
        /// Carrier.
        #[n(2)]
        carrier: Id,
        /// Driver.
        #[n(3)]
        driver: PubKey,
        /// Window start.
        #[n(4)]
        not_before_ms: u64,
        /// Window end.
        #[n(5)]
        not_after_ms: u64,
    },
}

/// What an audit record says.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum AuditKind {
    /// An authenticated device message was accepted: the envelope itself is the evidence.
    #[n(0)]
    Accepted {
        /// The device.
        #[n(0)]
        device: Id,
        /// Its sequence number (0 for unsequenced messages).
        #[n(1)]
        seq: u64,
        /// BLAKE3 of the envelope bytes.
        #[n(2)]
        digest: Digest,
        /// The envelope bytes as received.
        #[n(3)]
        #[cbor(with = "minicbor::bytes")]
        envelope: Vec<u8>,
        /// A routine proof or periodic report that changed nothing: the log may collapse it
        /// into a per-device checkpoint.
        #[n(4)]
        routine: bool,
    },
    /// A device message was dropped.
    #[n(1)]
    Rejected {
        /// The topic's device.
        #[n(0)]
        from: Id,
        /// BLAKE3 of the bytes.
        #[n(1)]
        digest: Digest,
        /// Why.
        #[n(2)]
        reason: RejectReason,
        /// Its sequence number, when it had one.
        #[n(3)]
        seq: Option<u64>,
    },
    /// Messages missing from a device stream within the loss tolerance.
    #[n(2)]
    StreamLoss {
        /// The device.
        #[n(0)]
        device: Id,
        /// The sequence number after the gap.
        #[n(1)]
        seq: u64,
        /// How many are missing.
        #[n(2)]
        missing: u64,
    },
    /// A session key was agreed with a device (in force from its first use, see
    /// `SessionActive`).
    #[n(3)]
    SessionOpened {
        /// The device.
        #[n(0)]
        device: Id,
        /// The session id.
        #[n(1)]
        session: u64,
    },
    /// The registry changed.
    #[n(4)]
    Registry(#[n(0)] RegistryChange),
    /// A driver asked to enter.
    #[n(5)]
    EntryRequested {
        /// Request number.
        #[n(0)]
        request: u64,
        /// Delivery.
        #[n(1)]
        delivery: Id,
        /// Driver key.
        #[n(2)]
        driver: PubKey,
        /// The lock's nonce.
        #[n(3)]
        nonce: Nonce,
    },
    /// An entry was refused.
    #[n(6)]
    Denied {
        /// Request number (0 when refused before a number was given).
        #[n(0)]
        request: u64,
        /// Delivery.
        #[n(1)]
        delivery: Id,
        /// Why.
        #[n(2)]
        reason: DenyReason,
    },
    /// The homeowner was asked to approve.
    #[n(7)]
    ApprovalRequested {
        /// Request number.
        #[n(0)]
        request: u64,
        /// Deadline.
        #[n(1)]
        deadline_ms: u64,
    },
    /// The homeowner approved.
    #[n(8)]
    Approved {
        /// Request number.
        #[n(0)]
        request: u64,
    },
    /// The camera was asked to attest the lock's nonce.
    #[n(9)]
    WitnessRequested {
        /// Request number.
        #[n(0)]
        request: u64,
        /// Camera.
        #[n(1)]
        camera: Id,
    },
    /// An unlock was authorised: grant issued, context signed, command sent.
    #[n(10)]
    Authorised {
        /// Request number.
        #[n(0)]
        request: u64,
        /// Delivery.
        #[n(1)]
        delivery: Id,
        /// Grant.
        #[n(2)]
        grant: GrantId,
        /// Revocation epoch in the context.
        #[n(3)]
        epoch: u64,
        /// The camera receipt in the context.
        #[n(4)]
        receipt: CameraReceipt,
        /// BLAKE3 of the command envelope sent.
        #[n(5)]
        command: Digest,
        /// The camera's people counts (entered, exited) when the unlock was authorised: the
        /// baseline of the witnessed egress (I13), kept so a restarted server can check it.
        #[n(6)]
        counts: Option<(u16, u16)>,
    },
    /// A delivery changed phase.
    #[n(11)]
    Phase {
        /// Delivery.
        #[n(0)]
        delivery: Id,
        /// New phase.
        #[n(1)]
        phase: Phase,
    },
    /// An alarm was raised.
    #[n(12)]
    AlarmRaised {
        /// The alarm.
        #[n(0)]
        alarm: Alarm,
        /// The message it rests on.
        #[n(1)]
        evidence: Option<Evidence>,
    },
    /// An alarm was acknowledged.
    #[n(13)]
    AlarmAcked {
        /// Alarm id.
        #[n(0)]
        id: u64,
    },
    /// A revocation was issued.
    #[n(14)]
    Revocation {
        /// New epoch.
        #[n(0)]
        epoch: u64,
        /// What was revoked.
        #[n(1)]
        items: Vec<Revoked>,
    },
    /// A device was sent the server's signed time.
    #[n(15)]
    TimeServed {
        /// Device.
        #[n(0)]
        device: Id,
    },
    /// A lock reported it refused an unlock.
    #[n(16)]
    LockDenied {
        /// Delivery.
        #[n(0)]
        delivery: Id,
        /// The lock's reason.
        #[n(1)]
        reason: DenyReason,
    },
    /// A device's signed checkpoint disagrees with the messages the server accepted from it
    /// (every one since the last anchor arrived): one was altered or injected. The checkpoint
    /// itself is the `Accepted` record just before.
    #[n(17)]
    CheckpointMismatch {
        /// The device.
        #[n(0)]
        device: Id,
        /// The checkpoint's sequence number.
        #[n(1)]
        seq: u64,
        /// The head the device signed.
        #[n(2)]
        device_head: Digest,
        /// The head over the messages the server accepted.
        #[n(3)]
        server_head: Digest,
    },
    /// A device's checkpoint could not be checked, because messages before it were lost (see
    /// the `StreamLoss` records) or the server held no anchor yet (first contact, reboot,
    /// restart). The messages since the previous anchor rest on their MACs alone; the stream
    /// is checked from this checkpoint on.
    #[n(18)]
    Reanchored {
        /// The device.
        #[n(0)]
        device: Id,
        /// The checkpoint's sequence number.
        #[n(1)]
        seq: u64,
    },
    /// The device's first message under a session key agreed earlier arrived: that key now
    /// replaces the previous one.
    #[n(19)]
    SessionActive {
        /// The device.
        #[n(0)]
        device: Id,
        /// The session id.
        #[n(1)]
        session: u64,
    },
}

/// One audit record: every decision and state change, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuditEvent {
    /// Server time.
    #[n(0)]
    pub at_ms: u64,
    /// The home concerned, if any.
    #[n(1)]
    pub home: Option<Id>,
    /// What happened.
    #[n(2)]
    pub what: AuditKind,
}

impl AuditEvent {
    /// Canonical CBOR bytes, as appended to the audit log.
    pub fn to_bytes(&self) -> Vec<u8> {
        doorward_proto::codec::encode(self)
    }

    /// Whether this is a routine idle proof or periodic report, which the log may collapse.
    pub fn is_routine(&self) -> bool {
        matches!(self.what, AuditKind::Accepted { routine: true, .. })
    }
}
