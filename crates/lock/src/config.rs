//! What a lock is told at pairing time: who it is, whom it trusts, and its timing and limits.

use doorward_proto::{Id, KeyPair, PubKey};

/// Sequence numbers reserved durably at a time, so a reboot never reuses one (a report's `seq`
/// only ever comes from a block whose end is already on disk).
pub const SEQ_BLOCK: u64 = 1_000;

/// Most reports held back while the lock waits for its sequence reservation to be durable;
/// beyond it the oldest is dropped (supervision notices the gap, as for a lost message).
pub const MAX_QUEUED_REPORTS: usize = 64;

/// Most times the lock commands the bolt thrown in one relock before it gives up and waits
/// for the bolt sensor (each attempt waits `confirm_ms`).
pub const MAX_RELOCK_ATTEMPTS: u32 = 3;

/// Most persists the lock tracks while it waits for their acknowledgement; older ones are
/// forgotten (a later version carries everything they did).
pub const MAX_INFLIGHT_PERSISTS: usize = 16;

/// Largest encoded [`crate::LockState`] the lock accepts at boot, in bytes.
pub const MAX_STATE_BYTES: usize = 512 * 1024;

/// Everything a lock needs to know that is not evidence: identities, trusted keys, timing,
/// limits. Built at pairing time; times are milliseconds of the lock's monotonic clock unless
/// the name says otherwise.
#[derive(Clone, Debug)]
pub struct LockConfig {
    /// This lock.
    pub lock: Id,
    /// The home it belongs to.
    pub home: Id,
    /// The home root key: issuing keys must be delegated by it.
    pub home_root: PubKey,
    /// The server key: unlock contexts, revocations and time answers must be signed by it.
    pub server: PubKey,
    /// The paired camera (the witness).
    pub camera: Id,
    /// The paired camera's key.
    pub camera_key: PubKey,
    /// The lock's own device key (signs nonces, reports and time requests).
    pub key: KeyPair,
    /// How long an issued nonce stays usable.
    pub nonce_ttl_ms: u64,
    /// Largest accepted difference between the server's time in a context and the lock's
    /// estimate of wall time.
    pub max_skew_ms: u64,
    /// Largest age of the server's camera receipt relative to the context's server time.
    pub witness_fresh_ms: u64,
    /// How far the camera's attested sequence number may run ahead of the server's receipt.
    pub max_unreceipted_segments: u64,
    /// Report interval during an open cycle (I12).
    pub proof_interval_ms: u64,
    /// Report interval while idle.
    pub idle_report_ms: u64,
    /// How long the bolt sensor has to confirm a commanded position (I6).
    pub confirm_ms: u64,
    /// How long a retracted bolt waits for the door to open before the lock relocks.
    pub door_open_wait_ms: u64,
    /// Battery below which the lock refuses to unlock, percent: one more relock must be
    /// possible.
    pub battery_reserve_pct: u8,
    /// During a cycle, longest gap between signed camera checkpoints before witness lockout.
    pub camera_checkpoint_gap_ms: u64,
    /// How long an unlock waits for its durable write before it is denied.
    pub persist_timeout_ms: u64,
    /// How often the lock asks the server for the time again, to bound drift.
    pub time_resync_ms: u64,
    /// How long the lock waits for a time answer before asking again. An answer that arrives
    /// later than `max_skew_ms` after its request is not trusted either.
    pub time_request_retry_ms: u64,
    /// Most nonces outstanding at once; issuing one more forgets the oldest.
    pub max_outstanding_nonces: usize,
    /// Most spent grants remembered; when full the lock denies rather than forgets.
    pub max_spent_grants: usize,
    /// Most revoked items remembered; a revocation that does not fit is not applied, so the
    /// lock stays at its epoch and denies newer contexts.
    pub max_revoked_items: usize,
}

impl LockConfig {
    /// A configuration with the brief's default timing and limits.
    pub fn new(
        lock: Id,
        home: Id,
        home_root: PubKey,
        server: PubKey,
        camera: Id,
        camera_key: PubKey,
        key: KeyPair,
    ) -> Self {
        LockConfig {
            lock,
            home,
            home_root,
            server,
            camera,
            camera_key,
            key,
            nonce_ttl_ms: 30_000,
            max_skew_ms: 2_000,
            witness_fresh_ms: 1_000,
            max_unreceipted_segments: 16,
            proof_interval_ms: 125,
            idle_report_ms: 30_000,
            confirm_ms: 2_000,
            door_open_wait_ms: 30_000,
            battery_reserve_pct: 10,
            camera_checkpoint_gap_ms: 1_500,
            persist_timeout_ms: 2_000,
            time_resync_ms: 600_000,
            time_request_retry_ms: 5_000,
            max_outstanding_nonces: 8,
            max_spent_grants: 1_024,
            max_revoked_items: 4_096,
        }
    }
}
