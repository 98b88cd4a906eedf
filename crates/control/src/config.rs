//! Timing and limits of the decision core. Every duration is in milliseconds of server wall
//! time; every table has a named bound.

/// Timing and limits. [`Config::default`] holds the product defaults from the brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Camera proof interval during an entry, and lock report interval during an open cycle.
    pub proof_interval_ms: u64,
    /// No valid camera proof for this long during an entry raises `WitnessLost` (I4); no lock
    /// report for this long during an open cycle raises `LockSilent` (I12).
    pub witness_gap_ms: u64,
    /// Idle proof and report interval of cameras and locks.
    pub idle_interval_ms: u64,
    /// An idle device silent this long raises `DeviceSilent`.
    pub idle_silent_ms: u64,
    /// The newest camera proof must be at most this old when the server issues a receipt for
    /// an unlock (I1, S22).
    pub witness_fresh_ms: u64,
    /// How long the server waits, after the camera's attestation, for a proof fresh enough to
    /// receipt before it denies `WitnessUnavailable`.
    pub witness_wait_ms: u64,
    /// A bolt report must confirm an unlock or a relock within this long (I6, I12).
    pub confirm_ms: u64,
    /// Lock and door views older than this during the lock's open cycle (from its unlock
    /// report to its relock report, when it reports at the entry pace) show `Unknown` (I5).
    pub lock_report_fresh_entry_ms: u64,
    /// Lock and door views older than this while idle show `Unknown`: two idle intervals and
    /// a margin, so one lost idle report does not flap the state.
    pub lock_report_fresh_idle_ms: u64,
    /// Door sensor and camera disagreeing for this long raises `SceneMismatch`; shorter
    /// disagreements are the two views catching up with a moving door (shown as `Unknown`).
    pub scene_mismatch_ms: u64,
    /// After the relock, how long the camera has to see the zone empty before the people
    /// still there count as `ActivityAfterEntry` (I13).
    pub egress_grace_ms: u64,
    /// After the egress is witnessed, how long activity in the zone still belongs to the
    /// entry (`ActivityAfterEntry`) before the delivery is `Done`.
    pub post_entry_watch_ms: u64,
    /// How long a live approval request waits for the homeowner.
    pub approval_timeout_ms: u64,
    /// Unacknowledged alarms are re-sent this often (I14).
    pub alarm_resend_ms: u64,
    /// A device clock that jumps ahead of server time by more than this raises `ClockSkew`.
    pub max_skew_ms: u64,
    /// Most consecutive sequence numbers that may be missing from a device stream and still
    /// count as transport loss (recorded, no alarm); a larger jump is tampering (I7).
    pub max_seq_gap: u64,
    /// Maximum open time written into grants when the delivery does not name one.
    pub default_max_open_ms: u64,
    /// Granularity of the timer wheel (slot width; deadlines stay exact).
    pub wheel_granularity_ms: u64,
    /// Most homes.
    pub max_homes: usize,
    /// Most devices (locks and cameras together).
    pub max_devices: usize,
    /// Most drivers.
    pub max_drivers: usize,
    /// Most deliveries scheduled and not yet finished.
    pub max_deliveries_in_flight: usize,
    /// Most entry requests waiting for approval or the witness.
    pub max_pending_requests: usize,
    /// Most alarms raised and not yet acknowledged.
    pub max_open_alarms: usize,
    /// Most finished deliveries kept for queries (oldest forgotten first).
    pub max_finished_deliveries: usize,
    /// How long a new session key waits for the device's first message under it. Until then
    /// the device's current key stays in force, so a replayed hello displaces nothing; past
    /// it the new key is forgotten. Longer than the idle interval, so an idle device's next
    /// proof finds its key.
    pub session_confirm_ms: u64,
    /// Most handshakes answered per `session_confirm_ms` (keys waiting for their first use,
    /// and those that found it within that time); more hellos are refused until it passes.
    pub max_pending_sessions: usize,
    /// Hello digests remembered to refuse replays (oldest forgotten first). A replay older
    /// than that is answered but still displaces nothing.
    pub max_recent_hellos: usize,
    /// After a restart, the least time the devices of a restored entry are given to be heard
    /// from again (to reconnect to the restarted broker) before their silence or an
    /// unconfirmed unlock is alarmed; every restored deadline starts at the restart.
    pub resume_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            proof_interval_ms: 125,
            witness_gap_ms: 500,
            idle_interval_ms: 30_000,
            idle_silent_ms: 90_000,
            witness_fresh_ms: 500,
            witness_wait_ms: 2_000,
            confirm_ms: 2_000,
            lock_report_fresh_entry_ms: 1_000,
            lock_report_fresh_idle_ms: 65_000,
            scene_mismatch_ms: 1_000,
            egress_grace_ms: 5_000,
            post_entry_watch_ms: 30_000,
            approval_timeout_ms: 60_000,
            alarm_resend_ms: 10_000,
            max_skew_ms: 2_000,
            max_seq_gap: 8,
            default_max_open_ms: 120_000,
            wheel_granularity_ms: 8,
            max_homes: 100_000,
            max_devices: 1_000_000,
            max_drivers: 100_000,
            max_deliveries_in_flight: 100_000,
            max_pending_requests: 10_000,
            max_open_alarms: 100_000,
            max_finished_deliveries: 10_000,
            session_confirm_ms: 90_000,
            max_pending_sessions: 65_536,
            max_recent_hellos: 65_536,
            resume_grace_ms: 2_000,
        }
    }
}

/// Most doors (lock and camera pairs) one home may pair.
pub const MAX_DOORS_PER_HOME: usize = 4;
/// Most carriers one home may opt in.
pub const MAX_CARRIERS_PER_HOME: usize = 32;
/// Most weekly windows in one home's schedule.
pub const MAX_WINDOWS_PER_HOME: usize = 32;
/// Most driver keys one home may have revoked at a time.
pub const MAX_REVOKED_DRIVERS_PER_HOME: usize = 256;
/// Most revocation messages kept per home to bring a lagging lock up to the current epoch.
pub const MAX_REVOCATION_HISTORY: usize = 64;
/// Truncated frame and segment digests remembered per camera during an entry, for loop
/// detection (at 8 proofs/s of up to 16 frames: several seconds of frames).
pub const MAX_DIGEST_HISTORY: usize = 512;
/// Segment digests remembered per camera while idle (inline in its supervision state).
pub const IDLE_SEGMENT_HISTORY: usize = 2;
