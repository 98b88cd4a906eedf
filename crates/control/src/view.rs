//! What a person is shown (I5): every value carries the signed report it rests on and its
//! age, and is `Unknown` when that evidence is missing, stale or contradicted.

use doorward_proto::{Digest, Id};

use crate::io::{Evidence, Phase};

/// A value as shown: known from fresh evidence, or unknown with the last known value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown<T> {
    /// Fresh, uncontradicted evidence says this.
    Known(T),
    /// The evidence is missing, stale or contradicted.
    Unknown {
        /// The last value evidence showed, if any.
        last: Option<T>,
        /// Age of that evidence, ms.
        age_ms: Option<u64>,
    },
}

impl<T> Shown<T> {
    /// The known value, if any.
    pub fn known(&self) -> Option<&T> {
        match self {
            Shown::Known(v) => Some(v),
            Shown::Unknown { .. } => None,
        }
    }
}

/// One shown value with its evidence and age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View<T> {
    /// The value.
    pub value: Shown<T>,
    /// The device message it rests on.
    pub evidence: Option<Evidence>,
    /// Age of that message at the time of the query, ms.
    pub age_ms: Option<u64>,
}

/// The lock as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockValue {
    /// Bolt thrown and door closed, both reported.
    Locked,
    /// Bolt reported retracted.
    Unlocked,
    /// An unlock was authorised; no report has confirmed it yet.
    Unlocking,
    /// Bolt reported moving.
    Moving,
    /// Bolt reported jammed.
    Jammed,
    /// Bolt reported thrown while the door is reported open (not locked).
    BoltThrownDoorOpen,
}

/// The door as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorValue {
    /// Reported closed.
    Closed,
    /// Reported open.
    Open,
}

/// The camera as shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraValue {
    /// Proofs arrive and the camera records.
    Recording {
        /// Newest proof's sequence number.
        seq: u64,
        /// Chain head at that proof.
        head: Digest,
    },
    /// The camera says it is not recording.
    NotRecording,
}

/// One door of a home: lock, door and camera views, and the entry in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorState {
    /// The lock.
    pub lock_id: Id,
    /// The camera.
    pub camera_id: Id,
    /// The lock.
    pub lock: View<LockValue>,
    /// The door (door sensor, checked against the camera).
    pub door: View<DoorValue>,
    /// The camera.
    pub camera: View<CameraValue>,
    /// The delivery holding this door, with its phase.
    pub delivery: Option<(Id, Phase)>,
}

/// Everything shown for a home at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeState {
    /// The home.
    pub home: Id,
    /// Server time of the view.
    pub at_ms: u64,
    /// The revocation epoch.
    pub epoch: u64,
    /// Its doors.
    pub doors: Vec<DoorState>,
    /// Alarms raised and not acknowledged.
    pub open_alarms: Vec<u64>,
}

/// A delivery as shown to the carrier and the homeowner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryView {
    /// The delivery.
    pub delivery: Id,
    /// Its phase.
    pub phase: Phase,
    /// Alarms raised during it.
    pub alarms: Vec<u64>,
    /// Kinds of those alarms.
    pub alarm_kinds: Vec<doorward_proto::AlarmKind>,
}
