//! Everything an attacker (or bad luck) can do to a home, in one place. Scenarios compose these.

use doorward_proto::AlarmKind;

/// How a forged unlock is built by an attacker who holds the server key (a compromised server
/// or an insider): the lock must refuse it on its own checks (I1: the server's opinion alone
/// is never enough).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// The grant of the delivery that already opened the door, with a fresh nonce (I3).
    SpentGrant,
    /// A grant whose window ended an hour ago (I2).
    OutsideWindow,
    /// A grant for another lock (I2).
    OtherLock,
    /// The driver's grant, with the nonce signed by another driver's key (I2).
    OtherDriver,
    /// A grant minted by a carrier under its own key, not delegated by the home root (I2, S9).
    CarrierMinted,
    /// A valid grant for the revoked driver, at the lock's current epoch (S16).
    RevokedDriver,
    /// A valid grant in a context from the revocation epoch before the lock's (S16).
    StaleEpoch,
    /// A valid grant and a receipt claiming fresh footage, but no live camera to attest the
    /// nonce: an attestation captured earlier, or none (S2).
    DeadCamera,
    /// A valid grant and the camera's live attestation (obtained over its local link), but
    /// the server's honest receipt: the footage stopped reaching the server (S22).
    StaleReceipt,
}

/// One capability of the attacker, or one fault of the world. Parameters come from the
/// scenario; times are true simulated milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Wi-Fi de-authentication of the camera: its packets stop silently (no disconnect event
    /// anywhere); the lock's uplink too when it is routed through the camera (2017).
    Deauth {
        /// How long, ms.
        for_ms: u64,
    },
    /// Radio jamming of the lock's relock command: the bolt never moves (2018 "dropbox").
    JamRelock,
    /// The bolt jams mechanically: commands do not move it and its sensor reads jammed.
    JamBolt,
    /// Replays, at the lock and at the server, the unlock command and entry request captured
    /// from the delivery, then tries the door.
    Replay,
    /// The broker holds every device message back for a while (then delivers them).
    Delay {
        /// How long, ms.
        for_ms: u64,
    },
    /// Injects a lock report signed by a wrong key and a camera proof with a bad MAC.
    Inject,
    /// Builds an unlock command with the stolen server key (see [`Forgery`]) and tries the
    /// door.
    Forge(Forgery),
    /// Props the door open and walks away.
    PropDoor,
    /// Puts a magnet on the door sensor (reads closed) and props the door open.
    Magnet,
    /// Covers the lens (dark frames) or blinds it (bright frames).
    CoverLens {
        /// Bright instead of dark.
        blind: bool,
    },
    /// Replaces the camera feed by its last frame.
    FreezeFeed,
    /// Replaces the camera feed by a loop of the frames before the attack.
    LoopFeed {
        /// Length of the loop in frames (2 is an A/B alternation).
        frames: u64,
    },
    /// Cuts the camera's power.
    CameraPowerCut,
    /// Cuts the lock's power for a while, then it boots from its disk.
    LockPowerCycle {
        /// How long, ms.
        off_ms: u64,
    },
    /// A second person follows the driver in and goes on into the house.
    Follow,
    /// The driver stays inside after the door closes.
    StayInside,
    /// The lock's clock jumps forward, and a recorded server time answer is replayed to it.
    ClockJump {
        /// By how much, ms.
        by_ms: u64,
    },
    /// The control server crashes and restarts with its state.
    ServerCrash {
        /// How long it is down, ms.
        for_ms: u64,
    },
    /// The camera's uplink to the broker is cut; its local link to the lock still works.
    CutCameraUplink,
    /// The homeowner's live connection is cut silently.
    CutLiveLink {
        /// How long, ms.
        for_ms: u64,
    },
    /// The homeowner revokes the driver (not an attack: the set-up of S16).
    RevokeDriver,
    /// The broker (untrusted, I10) sends the server again, as from the lock, the newest
    /// authentic report that said "locked" (bolt thrown, door closed) before this moment.
    BrokerReplay,
}

/// What the customer can be shown that a scenario may expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// An alarm of this kind reached the homeowner's view.
    Alarm(AlarmKind),
    /// The homeowner's view said "connection lost — states unknown" (I14).
    ConnectionLost,
}
