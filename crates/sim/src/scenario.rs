//! The attack catalogue of BRIEF §5: each scenario composes capabilities at moments of the
//! delivery, and names what the customer must be shown (or that the door stays shut).

use doorward_proto::AlarmKind::{self, *};

use crate::attack::{Capability, Capability::*, Forgery, Signal};

/// A moment of the delivery an attack is tied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// An absolute true time, ms from the start of the run.
    At(u64),
    /// The driver reached the door.
    AtDoor,
    /// The door started to open.
    DoorOpened,
    /// The driver is inside.
    Inside,
    /// The driver started to walk out after the drop-off.
    WalkingOut,
    /// The door started to close.
    DoorClosing,
    /// The door is closed and the driver gone.
    EntryDone,
}

/// One capability used at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// When.
    pub hook: Hook,
    /// Delay after the hook, ms.
    pub after_ms: u64,
    /// What.
    pub cap: Capability,
}

/// One scenario of the catalogue.
#[derive(Debug)]
pub struct Scenario {
    /// `S1`…`S24` or `benign`.
    pub id: &'static str,
    /// A short name.
    pub name: &'static str,
    /// What is done, in order of hooks.
    pub steps: &'static [Step],
    /// Signals the customer must see (each of them); the first one seen sets the latency.
    pub required: &'static [Signal],
    /// Further alarms that are accurate in this scenario (not false alarms, not required).
    pub allowed: &'static [Signal],
    /// The door must not open after the attack starts.
    pub denied: bool,
    /// Ordinary network noise: 1 % loss, jitter up to 50 ms, one 300 ms stall.
    pub noise: bool,
    /// The lock's uplink runs through the camera's Wi-Fi (the 2017 hub design).
    pub lock_via_camera: bool,
}

const fn a(k: AlarmKind) -> Signal {
    Signal::Alarm(k)
}

const fn step(hook: Hook, after_ms: u64, cap: Capability) -> Step {
    Step {
        hook,
        after_ms,
        cap,
    }
}

/// Supervision alarms that are true whenever the broker or the camera goes quiet mid-entry.
const QUIET: &[Signal] = &[a(LockSilent), a(DeviceSilent), a(StreamTampered)];

/// The catalogue, in report order.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "benign",
        name: "normal-delivery-with-noise",
        steps: &[],
        required: &[],
        allowed: &[],
        denied: false,
        noise: true,
        lock_via_camera: false,
    },
    Scenario {
        id: "S1",
        name: "deauth-after-dropoff",
        steps: &[step(Hook::WalkingOut, 0, Deauth { for_ms: u64::MAX })],
        required: &[a(WitnessLost)],
        allowed: &[
            a(LockSilent),
            a(DeviceSilent),
            a(NotRelocked),
            a(UnconfirmedActuation),
        ],
        denied: false,
        noise: false,
        lock_via_camera: true,
    },
    Scenario {
        id: "S2",
        name: "deauth-before-arrival",
        steps: &[
            step(Hook::At(1_000), 0, Deauth { for_ms: u64::MAX }),
            step(Hook::AtDoor, 3_000, Forge(Forgery::DeadCamera)),
        ],
        required: &[],
        allowed: &[a(DeviceSilent), a(ForgedReport)],
        denied: true,
        noise: false,
        lock_via_camera: true,
    },
    Scenario {
        id: "S3",
        name: "dropbox-jammed-relock",
        steps: &[step(Hook::DoorClosing, 0, JamRelock)],
        required: &[a(UnconfirmedActuation), a(NotRelocked)],
        allowed: &[a(BoltJammed), a(WitnessLost)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S4",
        name: "frozen-stream",
        steps: &[step(Hook::DoorOpened, 0, FreezeFeed)],
        required: &[a(FrozenFootage)],
        allowed: &[a(SceneMismatch), a(ActivityAfterEntry), a(MoreInThanOut)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S5",
        name: "looped-stream",
        steps: &[step(Hook::DoorOpened, 0, LoopFeed { frames: 0 })],
        required: &[a(LoopedFootage)],
        allowed: &[
            a(FrozenFootage),
            a(SceneMismatch),
            a(ActivityAfterEntry),
            a(MoreInThanOut),
        ],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S6",
        name: "replay-context-grant-request",
        steps: &[
            step(Hook::EntryDone, 2_000, Replay),
            step(Hook::EntryDone, 4_000, Forge(Forgery::SpentGrant)),
        ],
        required: &[],
        allowed: &[],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S7",
        name: "grant-outside-window-lock-driver",
        steps: &[
            step(Hook::EntryDone, 2_000, Forge(Forgery::OutsideWindow)),
            step(Hook::EntryDone, 4_000, Forge(Forgery::OtherLock)),
            step(Hook::EntryDone, 6_000, Forge(Forgery::OtherDriver)),
        ],
        required: &[],
        allowed: &[],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S8",
        name: "forged-reports-at-broker",
        steps: &[step(Hook::DoorOpened, 500, Inject)],
        required: &[a(ForgedReport)],
        allowed: &[],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S9",
        name: "carrier-mints-access",
        steps: &[step(Hook::EntryDone, 2_000, Forge(Forgery::CarrierMinted))],
        required: &[],
        allowed: &[],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S10",
        name: "lock-clock-jump-time-replay",
        steps: &[step(Hook::At(1_500), 0, ClockJump { by_ms: 10_000 })],
        required: &[a(ClockSkew)],
        allowed: &[a(UnconfirmedActuation), a(WitnessLost)],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S11",
        name: "camera-power-cut",
        steps: &[step(Hook::Inside, 0, CameraPowerCut)],
        required: &[a(WitnessLost)],
        allowed: &[a(DeviceSilent), a(ActivityAfterEntry)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S12",
        name: "bolt-jammed",
        steps: &[step(Hook::At(1_000), 0, JamBolt)],
        required: &[a(BoltJammed)],
        allowed: &[a(UnconfirmedActuation), a(WitnessLost)],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S13",
        name: "door-held-open",
        steps: &[step(Hook::WalkingOut, 0, PropDoor)],
        required: &[a(DoorHeldOpen)],
        allowed: &[a(UnconfirmedActuation)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S14",
        name: "server-crash-mid-entry",
        steps: &[step(Hook::Inside, 0, ServerCrash { for_ms: 6_000 })],
        required: &[a(WitnessLost)],
        allowed: &[
            a(LockSilent),
            a(DeviceSilent),
            a(StreamTampered),
            Signal::ConnectionLost,
        ],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S15",
        name: "broker-stall",
        steps: &[step(Hook::DoorOpened, 1_000, Delay { for_ms: 4_000 })],
        required: &[a(WitnessLost)],
        allowed: QUIET,
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S16",
        name: "revoked-driver-again",
        steps: &[
            step(Hook::EntryDone, 1_000, RevokeDriver),
            step(Hook::EntryDone, 3_000, Forge(Forgery::RevokedDriver)),
            step(Hook::EntryDone, 5_000, Forge(Forgery::StaleEpoch)),
        ],
        required: &[],
        allowed: &[],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S17",
        name: "magnet-on-door-sensor",
        steps: &[step(Hook::WalkingOut, 0, Magnet)],
        required: &[a(SceneMismatch)],
        allowed: &[a(DoorHeldOpen), a(ActivityAfterEntry)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S18",
        name: "camera-covered-or-blinded",
        steps: &[step(Hook::Inside, 0, CoverLens { blind: false })],
        required: &[a(BlindedCamera)],
        allowed: &[a(SceneMismatch), a(ActivityAfterEntry), a(MoreInThanOut)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S19",
        name: "driver-stays-inside",
        steps: &[step(Hook::WalkingOut, 0, StayInside)],
        required: &[a(ActivityAfterEntry)],
        allowed: &[a(MoreInThanOut)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S20",
        name: "second-person-follows",
        steps: &[step(Hook::DoorOpened, 0, Follow)],
        required: &[a(MoreInThanOut)],
        allowed: &[a(ActivityAfterEntry)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S21",
        name: "lock-power-cycle-grant-replay",
        steps: &[
            step(Hook::Inside, 0, LockPowerCycle { off_ms: 2_000 }),
            step(Hook::EntryDone, 2_000, Forge(Forgery::SpentGrant)),
        ],
        required: &[],
        allowed: &[a(LockSilent)],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S22",
        name: "camera-uplink-cut",
        steps: &[
            step(Hook::At(1_000), 0, CutCameraUplink),
            step(Hook::AtDoor, 3_000, Forge(Forgery::StaleReceipt)),
        ],
        required: &[],
        allowed: &[a(DeviceSilent)],
        denied: true,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S23",
        name: "live-connection-cut",
        steps: &[
            step(Hook::DoorOpened, 500, CutLiveLink { for_ms: 6_000 }),
            // An alarm the customer cannot receive yet: it must be re-sent after the cut.
            step(Hook::Inside, 0, CameraPowerCut),
        ],
        required: &[Signal::ConnectionLost, a(WitnessLost)],
        allowed: &[a(DeviceSilent), a(ActivityAfterEntry)],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
    Scenario {
        id: "S24",
        name: "broker-replay",
        // The door is open and the bolt retracted: an old authentic "locked" report, if taken,
        // would show the customer a locked door.
        steps: &[step(Hook::DoorOpened, 1_000, BrokerReplay)],
        required: &[a(StreamTampered)],
        allowed: &[],
        denied: false,
        noise: false,
        lock_via_camera: false,
    },
];

/// The home-day of BRIEF §7 (not part of the catalogue): no attack, no network noise beyond
/// each link's own jitter; it must raise nothing.
pub static HOME_DAY: Scenario = Scenario {
    id: "homeday",
    name: "idle-day-with-two-deliveries",
    steps: &[],
    required: &[],
    allowed: &[],
    denied: false,
    noise: false,
    lock_via_camera: false,
};

/// The scenario with this id (case-insensitive), if any.
pub fn find(id: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.id.eq_ignore_ascii_case(id))
}
