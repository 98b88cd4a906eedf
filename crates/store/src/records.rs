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

/// The namespace (the `home` column) of the server-wide authentication rows: accounts,
/// sessions, login links, carriers, API-key hashes and driver keys. It starts with `:`,
/// which no home id may, so it can never be read as a tenant's rows.
pub const AUTH_NS: &str = ":auth";

/// The namespace of the rows a carrier owns (its drivers, its deliveries): `:c:` and the
/// carrier's id.
pub fn carrier_ns(carrier: &Id) -> Result<Id, doorward_proto::IdError> {
    Id::new(format!(":c:{carrier}"))
}

fn auth_ns() -> &'static Id {
    static NS: std::sync::OnceLock<Id> = std::sync::OnceLock::new();
    NS.get_or_init(|| Id::new(AUTH_NS).expect("a valid id"))
}

/// A homeowner's account (namespace [`AUTH_NS`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Account {
    /// The account's identifier (derived from the normalised email).
    #[n(0)]
    pub id: Id,
    /// The normalised email address.
    #[n(1)]
    pub email: String,
    /// The password's argon2id hash, as a PHC string.
    #[n(2)]
    pub password_hash: String,
    /// When it was created, milliseconds since the Unix epoch.
    #[n(3)]
    pub created_ms: u64,
    /// The homes it owns, oldest first.
    #[n(4)]
    pub homes: Vec<Id>,
}

/// A homeowner's login session (namespace [`AUTH_NS`]); the token itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Session {
    /// SHA-256 of the session token, hex.
    #[n(0)]
    pub id: Id,
    /// The account.
    #[n(1)]
    pub account: Id,
    /// When it was created, ms since the Unix epoch.
    #[n(2)]
    pub created_ms: u64,
    /// After this it is refused whatever its use, ms since the Unix epoch.
    #[n(3)]
    pub expires_ms: u64,
    /// When it was last used (to within the server's touch interval).
    #[n(4)]
    pub last_seen_ms: u64,
}

/// A one-time login link (namespace [`AUTH_NS`]); deleted when used.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LoginLink {
    /// SHA-256 of the link's token, hex.
    #[n(0)]
    pub id: Id,
    /// The account it logs in.
    #[n(1)]
    pub account: Id,
    /// After this it is refused, ms since the Unix epoch.
    #[n(2)]
    pub expires_ms: u64,
}

/// A home's policy as stored (the core holds the live copy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct PolicyRow {
    /// Allowed weekly windows, (start, end) minutes from Monday 00:00 UTC.
    #[n(0)]
    pub windows: Vec<(u32, u32)>,
    /// Only garage doors.
    #[n(1)]
    pub garage_only: bool,
    /// Vacation mode: every entry refused.
    #[n(2)]
    pub vacation: bool,
    /// Every entry waits for the homeowner.
    #[n(3)]
    pub live_approval: bool,
}

/// Who owns a home (under the home itself, id = the home): the one row every homeowner
/// check reads (I11).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HomeOwner {
    /// The home.
    #[n(0)]
    pub home: Id,
    /// The owning account.
    #[n(1)]
    pub account: Id,
    /// False while the id is only reserved (issuing key handed out, home not yet added).
    #[n(2)]
    pub created: bool,
    /// The policy last set through the API.
    #[n(3)]
    pub policy: Option<PolicyRow>,
}

/// A carrier the operator created (namespace [`AUTH_NS`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CarrierAccount {
    /// The carrier's identifier.
    #[n(0)]
    pub id: Id,
    /// Its display name.
    #[n(1)]
    pub name: String,
    /// When it was created, ms since the Unix epoch.
    #[n(2)]
    pub created_ms: u64,
}

/// A carrier API key (namespace [`AUTH_NS`]); the key itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ApiKey {
    /// SHA-256 of the key, hex.
    #[n(0)]
    pub id: Id,
    /// The carrier it authenticates.
    #[n(1)]
    pub carrier: Id,
    /// When it was created, ms since the Unix epoch.
    #[n(2)]
    pub created_ms: u64,
}

/// Which driver a signing key belongs to (namespace [`AUTH_NS`], id = the key in hex).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DriverKey {
    /// The driver's public key, hex.
    #[n(0)]
    pub id: Id,
    /// The carrier that registered it.
    #[n(1)]
    pub carrier: Id,
    /// The driver's identifier.
    #[n(2)]
    pub driver: Id,
}

/// A driver as its carrier registered it (namespace [`carrier_ns`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CarrierDriver {
    /// The carrier's namespace ([`carrier_ns`]).
    #[n(0)]
    pub ns: Id,
    /// The driver's identifier.
    #[n(1)]
    pub id: Id,
    /// A name the carrier chose.
    #[n(2)]
    pub name: String,
    /// The driver's key.
    #[n(3)]
    pub key: PubKey,
    /// When it was registered, ms since the Unix epoch.
    #[n(4)]
    pub created_ms: u64,
}

/// Where a carrier's delivery lives (namespace [`carrier_ns`]): its home.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeliveryRef {
    /// The carrier's namespace ([`carrier_ns`]).
    #[n(0)]
    pub ns: Id,
    /// The delivery.
    #[n(1)]
    pub id: Id,
    /// The home whose [`Delivery`] row holds it.
    #[n(2)]
    pub home: Id,
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
    /// [`Account`].
    Account = 6,
    /// [`Session`].
    Session = 7,
    /// [`LoginLink`].
    LoginLink = 8,
    /// [`HomeOwner`].
    HomeOwner = 9,
    /// [`CarrierAccount`].
    CarrierAccount = 10,
    /// [`ApiKey`].
    ApiKey = 11,
    /// [`DriverKey`].
    DriverKey = 12,
    /// [`CarrierDriver`].
    CarrierDriver = 13,
    /// [`DeliveryRef`].
    DeliveryRef = 14,
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
    /// A homeowner account.
    Account(Account),
    /// A login session.
    Session(Session),
    /// A one-time login link.
    LoginLink(LoginLink),
    /// Who owns a home.
    HomeOwner(HomeOwner),
    /// A carrier.
    CarrierAccount(CarrierAccount),
    /// A carrier API key's hash.
    ApiKey(ApiKey),
    /// A driver key's owner.
    DriverKey(DriverKey),
    /// A carrier's driver.
    CarrierDriver(CarrierDriver),
    /// A carrier's delivery and its home.
    DeliveryRef(DeliveryRef),
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
            Record::Account(_)
            | Record::Session(_)
            | Record::LoginLink(_)
            | Record::CarrierAccount(_)
            | Record::ApiKey(_)
            | Record::DriverKey(_) => auth_ns(),
            Record::HomeOwner(r) => &r.home,
            Record::CarrierDriver(r) => &r.ns,
            Record::DeliveryRef(r) => &r.ns,
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
            Record::Account(r) => &r.id,
            Record::Session(r) => &r.id,
            Record::LoginLink(r) => &r.id,
            Record::HomeOwner(r) => &r.home,
            Record::CarrierAccount(r) => &r.id,
            Record::ApiKey(r) => &r.id,
            Record::DriverKey(r) => &r.id,
            Record::CarrierDriver(r) => &r.id,
            Record::DeliveryRef(r) => &r.id,
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
            Record::Account(_) => RecordKind::Account,
            Record::Session(_) => RecordKind::Session,
            Record::LoginLink(_) => RecordKind::LoginLink,
            Record::HomeOwner(_) => RecordKind::HomeOwner,
            Record::CarrierAccount(_) => RecordKind::CarrierAccount,
            Record::ApiKey(_) => RecordKind::ApiKey,
            Record::DriverKey(_) => RecordKind::DriverKey,
            Record::CarrierDriver(_) => RecordKind::CarrierDriver,
            Record::DeliveryRef(_) => RecordKind::DeliveryRef,
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
            Record::Account(r) => codec::encode(r),
            Record::Session(r) => codec::encode(r),
            Record::LoginLink(r) => codec::encode(r),
            Record::HomeOwner(r) => codec::encode(r),
            Record::CarrierAccount(r) => codec::encode(r),
            Record::ApiKey(r) => codec::encode(r),
            Record::DriverKey(r) => codec::encode(r),
            Record::CarrierDriver(r) => codec::encode(r),
            Record::DeliveryRef(r) => codec::encode(r),
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
            6 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Account),
            7 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::Session),
            8 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::LoginLink),
            9 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::HomeOwner),
            10 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::CarrierAccount),
            11 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::ApiKey),
            12 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::DriverKey),
            13 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::CarrierDriver),
            14 => codec::decode(bytes, MAX_RECORD_BYTES).map(Record::DeliveryRef),
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
