//! The registry's typed rows and the per-device durable state.
//!
//! A registry row is stored as `(home, kind, id)` and the canonical CBOR of the record, so a
//! field added at the end of a record (as an `Option`) needs no migration.

use doorward_proto::{codec, Digest, Id, PubKey};
use minicbor::{Decode, Encode};

use crate::{StoreError, MAX_RECORD_BYTES};

/// A home: the tenant every other row belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Home {
    /// The home's identifier.
    #[n(0)]
    pub id: Id,
    /// A name its owner chose.
    #[n(1)]
    pub name: String,
    /// The home root key every grant chains to.
    #[n(2)]
    pub root_key: PubKey,
    /// When it was created, milliseconds since the Unix epoch.
    #[n(3)]
    pub created_ms: u64,
}

/// What a paired device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum DeviceKind {
    /// A lock agent.
    #[n(0)]
    Lock,
    /// A camera agent (the witness).
    #[n(1)]
    Camera,
}

/// A device paired to a home, with the public key pairing confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Device {
    /// The home it belongs to.
    #[n(0)]
    pub home: Id,
    /// The device's identifier.
    #[n(1)]
    pub id: Id,
    /// Lock or camera.
    #[n(2)]
    pub kind: DeviceKind,
    /// Its long-term public key.
    #[n(3)]
    pub key: PubKey,
    /// For a lock, the camera that witnesses it.
    #[n(4)]
    pub witness: Option<Id>,
    /// When it was paired, milliseconds since the Unix epoch.
    #[n(5)]
    pub paired_ms: u64,
}

/// A carrier as one home sees it: opted in or not.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Carrier {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The carrier's identifier.
    #[n(1)]
    pub id: Id,
    /// Its display name.
    #[n(2)]
    pub name: String,
    /// Whether the home lets it deliver (I9).
    #[n(3)]
    pub opted_in: bool,
}

/// A driver a carrier registered for deliveries to a home.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Driver {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The driver's identifier.
    #[n(1)]
    pub id: Id,
    /// The carrier that registered the driver.
    #[n(2)]
    pub carrier: Id,
    /// The driver's key (on the driver's phone).
    #[n(3)]
    pub key: PubKey,
}

/// Where a delivery is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum DeliveryState {
    /// Scheduled, no driver yet.
    #[n(0)]
    Scheduled,
    /// A driver is assigned.
    #[n(1)]
    Assigned,
    /// The entry is in progress.
    #[n(2)]
    InProgress,
    /// Finished.
    #[n(3)]
    Done,
    /// Cancelled before it finished.
    #[n(4)]
    Cancelled,
}

/// A delivery a carrier scheduled at a home.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Delivery {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The delivery's identifier.
    #[n(1)]
    pub id: Id,
    /// The carrier.
    #[n(2)]
    pub carrier: Id,
    /// The assigned driver, if any.
    #[n(3)]
    pub driver: Option<Id>,
    /// The lock it may open.
    #[n(4)]
    pub lock: Id,
    /// Start of the allowed window, milliseconds since the Unix epoch.
    #[n(5)]
    pub window_start_ms: u64,
    /// End of the allowed window, milliseconds since the Unix epoch.
    #[n(6)]
    pub window_end_ms: u64,
    /// Lifecycle state.
    #[n(7)]
    pub state: DeliveryState,
}

/// The kind of a registry row; stored as its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// [`Home`].
    Home = 1,
    /// [`Device`].
    Device = 2,
    /// [`Carrier`].
    Carrier = 3,
    /// [`Driver`].
    Driver = 4,
    /// [`Delivery`].
    Delivery = 5,
}

impl RecordKind {
    /// The stored number.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One registry row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A home (its own home is itself).
    Home(Home),
    /// A paired device.
    Device(Device),
    /// A carrier's standing with a home.
    Carrier(Carrier),
    /// A registered driver.
    Driver(Driver),
    /// A delivery.
    Delivery(Delivery),
}

impl Record {
    /// The home the row belongs to.
    pub fn home(&self) -> &Id {
        match self {
            Record::Home(r) => &r.id,
            Record::Device(r) => &r.home,
            Record::Carrier(r) => &r.home,
            Record::Driver(r) => &r.home,
            Record::Delivery(r) => &r.home,
        }
    }

    /// The row's identifier, unique per home and kind.
    pub fn id(&self) -> &Id {
        match self {
            Record::Home(r) => &r.id,
            Record::Device(r) => &r.id,
            Record::Carrier(r) => &r.id,
            Record::Driver(r) => &r.id,
            Record::Delivery(r) => &r.id,
        }
    }

    /// The row's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Home(_) => RecordKind::Home,
            Record::Device(_) => RecordKind::Device,
            Record::Carrier(_) => RecordKind::Carrier,
            Record::Driver(_) => RecordKind::Driver,
            Record::Delivery(_) => RecordKind::Delivery,
        }
    }

    /// The stored bytes: canonical CBOR of the record.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            Record::Home(r) => codec::encode(r),
            Record::Device(r) => codec::encode(r),
            Record::Carrier(r) => codec::encode(r),
            Record::Driver(r) => codec::encode(r),
            Record::Delivery(r) => codec::encode(r),
        }
    }

    /// Decodes a stored row and checks it is the row it is stored as, so a row moved to
    /// another home in the database is refused rather than shown to that home (I11).
    pub(crate) fn from_row(
        home: &Id,
        kind_code: i32,
        id: &str,
        bytes: &[u8],
    ) -> Result<Record, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("record {home}/{id}: {why}"));
        let rec = match kind_code {
            1 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Home),
            2 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Device),
            3 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Carrier),
            4 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Driver),
            5 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Delivery),
            k => return Err(corrupt(format!("unknown kind {k}"))),
        }
        .map_err(|e| corrupt(e.to_string()))?;
        if rec.home() != home || rec.id().as_str() != id || rec.kind().code() != kind_code {
            return Err(corrupt("stored under another key".into()));
        }
        Ok(rec)
    }
}

/// What the server keeps per device across restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// The home.
    pub home: Id,
    /// The device.
    pub device: Id,
    /// Sequence number of the last message accepted from it.
    pub last_seq: u64,
    /// The device's hash chain head at `last_seq`.
    pub chain_head: Digest,
    /// Its session key, wrapped (encrypted) by the server: opaque here, at most
    /// [`crate::MAX_WRAPPED_KEY_BYTES`].
    pub wrapped_session_key: Option<Vec<u8>>,
    /// When this state was written, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}
