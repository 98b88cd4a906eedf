//! Who the server knows: homes and their policy, paired doors (a lock and its camera),
//! carriers opted in, drivers; and the administrative operations that change them.

use doorward_proto::{
    Bolt, Digest, Door, Id, IssuerCert, KeyPair, Observations, PubKey, Revoked, Signed,
};

use crate::stream::{CameraChain, Supervision};

/// Minutes in a week: weekly windows are minutes from Monday 00:00 UTC.
pub const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;

/// A weekly window during which entries are allowed: `[start_min, end_min)` in minutes from
/// Monday 00:00 UTC. A window may not wrap past Sunday midnight (use two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeeklyWindow {
    /// First minute of the week inside the window.
    pub start_min: u32,
    /// First minute of the week after it.
    pub end_min: u32,
}

impl WeeklyWindow {
    /// Whether the server time `now_ms` falls inside the window.
    pub fn contains(&self, now_ms: u64) -> bool {
        let m = minute_of_week(now_ms);
        self.start_min <= m && m < self.end_min
    }
}

/// Minute of the week (Monday 00:00 UTC is 0) of a Unix time in ms. 1970-01-01 was a
/// Thursday, three days after a Monday.
pub fn minute_of_week(now_ms: u64) -> u32 {
    ((now_ms / 60_000 + 3 * 24 * 60) % MINUTES_PER_WEEK as u64) as u32
}

/// What the homeowner decided about entries (I9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HomePolicy {
    /// Allowed weekly windows; empty means any time.
    pub windows: Vec<WeeklyWindow>,
    /// Only garage doors may be opened.
    pub garage_only: bool,
    /// Vacation mode: every entry is refused.
    pub vacation: bool,
    /// Every entry waits for the homeowner's approval.
    pub live_approval: bool,
}

/// A home to register.
#[derive(Clone, Debug)]
pub struct HomeSetup {
    /// The home.
    pub home: Id,
    /// The home root key.
    pub root: PubKey,
    /// The server's issuing key for this home.
    pub issuer: KeyPair,
    /// The root's delegation to the issuing key.
    pub cert: Signed<IssuerCert>,
    /// Policy.
    pub policy: HomePolicy,
}

/// What kind of door a lock closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorKind {
    /// A front (or other house) door.
    Front,
    /// A garage door.
    Garage,
}

/// A lock and the camera that witnesses it, paired out of band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorSetup {
    /// The lock.
    pub lock: Id,
    /// The lock's device key.
    pub lock_key: PubKey,
    /// The camera.
    pub camera: Id,
    /// The camera's device key.
    pub camera_key: PubKey,
    /// Front or garage.
    pub kind: DoorKind,
}

/// A delivery a carrier schedules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverySetup {
    /// The delivery.
    pub delivery: Id,
    /// The home.
    pub home: Id,
    /// The lock to open.
    pub lock: Id,
    /// The carrier.
    pub carrier: Id,
    /// The assigned driver.
    pub driver: PubKey,
    /// Window start, ms since the Unix epoch.
    pub not_before_ms: u64,
    /// Window end (exclusive).
    pub not_after_ms: u64,
    /// Longest the door may stay open; the configured default when `None`.
    pub max_open_ms: Option<u64>,
}

/// An administrative change (homeowner or carrier API).
// Handed over once and consumed, never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Admin {
    /// Register a home.
    AddHome(HomeSetup),
    /// Pair a lock and its camera to a home.
    PairDoor {
        /// The home.
        home: Id,
        /// The door.
        door: DoorSetup,
    },
    /// Opt a carrier in.
    OptIn {
        /// The home.
        home: Id,
        /// The carrier.
        carrier: Id,
    },
    /// Register a driver key for a carrier.
    AddDriver {
        /// The driver's key.
        driver: PubKey,
        /// The carrier.
        carrier: Id,
    },
    /// Block (or unblock) a driver everywhere.
    SetDriverBlocked {
        /// The driver's key.
        driver: PubKey,
        /// Blocked.
        blocked: bool,
    },
    /// Replace a home's policy.
    SetPolicy {
        /// The home.
        home: Id,
        /// The policy.
        policy: HomePolicy,
    },
    /// Schedule a delivery.
    Schedule(DeliverySetup),
    /// Cancel a scheduled delivery nobody has been let in for: it ends `Cancelled` and lets
    /// nobody in from then on.
    Cancel {
        /// The home.
        home: Id,
        /// The delivery.
        delivery: Id,
    },
    /// Revoke a carrier, a driver or a grant for a home: bumps the revocation epoch and sends
    /// the signed revocation to the home's locks (S16).
    Revoke {
        /// The home.
        home: Id,
        /// What.
        item: Revoked,
    },
}

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// A table is at its limit.
    #[error("limit reached: at most {limit} {what}")]
    Limit {
        /// Which table.
        what: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// The identifier is already used.
    #[error("{0} is already registered")]
    Exists(String),
    /// No such home.
    #[error("unknown home {0}")]
    UnknownHome(Id),
    /// No such lock in that home.
    #[error("unknown lock {0}")]
    UnknownLock(Id),
    /// No such driver.
    #[error("unknown driver")]
    UnknownDriver,
    /// The issuing key's certificate does not verify or does not name the issuing key.
    #[error("issuing key certificate: {0}")]
    BadCert(&'static str),
    /// A weekly window is empty, reversed or past the end of the week.
    #[error("window {start_min}..{end_min} is not within one week")]
    BadWindow {
        /// Start minute.
        start_min: u32,
        /// End minute.
        end_min: u32,
    },
    /// The delivery's time window is empty.
    #[error("the delivery window is empty")]
    EmptyWindow,
    /// No such delivery in flight at that home (never scheduled, or already over).
    #[error("no delivery {0} in flight at this home")]
    UnknownDelivery(Id),
    /// The delivery's entry is under way (or its request awaits a decision): it ends by
    /// its own course.
    #[error("delivery {0} has an entry under way: it ends when the entry does")]
    EntryUnderWay(Id),
}

/// A registered home.
pub(crate) struct Home {
    pub id: Id,
    pub root: PubKey,
    /// The issuing key's 32-byte seed, not the key pair: an Ed25519 key pair with its
    /// expanded public point takes 224 B, and it signs only when a grant is issued (rebuilt
    /// then, ≈ 15 µs). Zeroed on drop.
    pub issuer_seed: zeroize::Zeroizing<[u8; 32]>,
    pub cert: Signed<IssuerCert>,
    pub policy: HomePolicy,
    pub carriers: Vec<Id>,
    pub revoked_drivers: Vec<PubKey>,
    pub epoch: u64,
    /// Signed revocation envelopes, oldest first, to bring a lagging lock up to date.
    pub revocations: std::collections::VecDeque<(u64, doorward_proto::Envelope)>,
    /// Lock slots of the home's doors.
    pub locks: Vec<u32>,
}

/// A registered driver.
pub(crate) struct Driver {
    pub carrier: Id,
    pub blocked: bool,
    /// Set when an entry of this driver became unwitnessed (I4): no further grants.
    pub suspended: bool,
}

/// The newest accepted message a view rests on.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub seq: u64,
    pub digest: Digest,
    pub rx_ms: u64,
}

/// What the newest accepted lock report said.
#[derive(Clone, Debug)]
pub(crate) struct LockSeen {
    pub bolt: Bolt,
    pub door: Door,
    pub seen: Seen,
}

/// What the newest accepted camera proof said.
#[derive(Clone, Debug)]
pub(crate) struct CameraSeen {
    pub recording: bool,
    pub obs: Observations,
    pub seen: Seen,
}

/// The lock side of a door.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockSide {
    pub kind_garage: bool,
    /// Newest accepted report (with its evidence).
    pub report: Option<LockSeen>,
    /// An unlock was authorised and no report has confirmed or refused it yet.
    pub unlocking_since: Option<u64>,
    /// The delivery slot with the lock reserved (request pending or entry in progress).
    pub active: Option<u32>,
    /// Door sensor and camera disagree now.
    pub scene_disagree: bool,
}

/// The camera side of a door.
#[derive(Clone, Debug, Default)]
pub(crate) struct CameraSide {
    pub chain: CameraChain,
    /// Newest accepted proof, with its evidence.
    pub proof: Option<CameraSeen>,
    /// Newest proof that may be receipted: recording and chain intact.
    pub receipt_ok: bool,
}

/// A device's role and what the server holds about it.
#[derive(Clone, Debug)]
pub(crate) enum Side {
    Lock(LockSide),
    Camera(CameraSide),
}

/// A paired device.
pub(crate) struct Device {
    pub id: Id,
    pub home: u32,
    /// The other device of the door.
    pub peer: u32,
    pub key: PubKey,
    pub sup: Supervision,
    pub side: Side,
}

impl Device {
    pub fn lock(&self) -> Option<&LockSide> {
        match &self.side {
            Side::Lock(l) => Some(l),
            Side::Camera(_) => None,
        }
    }
    pub fn lock_mut(&mut self) -> Option<&mut LockSide> {
        match &mut self.side {
            Side::Lock(l) => Some(l),
            Side::Camera(_) => None,
        }
    }
    pub fn camera(&self) -> Option<&CameraSide> {
        match &self.side {
            Side::Camera(c) => Some(c),
            Side::Lock(_) => None,
        }
    }
    pub fn camera_mut(&mut self) -> Option<&mut CameraSide> {
        match &mut self.side {
            Side::Camera(c) => Some(c),
            Side::Lock(_) => None,
        }
    }
}
