//! The lock state machine: inputs in, outputs out, time passed in by the caller.

use std::collections::VecDeque;

use doorward_proto::guard::{self, Guard};
use doorward_proto::{
    Body, Bolt, DenyReason, Door, Envelope, GrantId, LockEvent, LockReport, Nonce, Revoked, Signed,
    TimeRequest, UnlockNonce,
};
use rand_core::CryptoRngCore;

use crate::config::SEQ_BLOCK;
use crate::config::{LockConfig, MAX_INFLIGHT_PERSISTS, MAX_QUEUED_REPORTS, MAX_RELOCK_ATTEMPTS};
use crate::decide::Authorized;
use crate::state::LockState;

/// How long the lock waits before writing its state again after a failed write.
pub const PERSIST_RETRY_MS: u64 = 1_000;

/// What the lock asks the motor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoltCommand {
    /// Pull the bolt back (unlock).
    Retract,
    /// Push the bolt out (lock).
    Throw,
}

/// Sensor readings at boot, as the hardware adapter reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sensors {
    /// Bolt sensor.
    pub bolt: Bolt,
    /// Door sensor.
    pub door: Door,
    /// Battery charge, percent.
    pub battery_pct: u8,
}

/// Something that happened to the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A driver asked for a nonce over the local channel.
    NonceRequest,
    /// Envelope bytes from the network: an unlock command, a revocation or a time answer from
    /// the server, or a checkpoint from the paired camera.
    Message(Vec<u8>),
    /// The bolt sensor reads a new position.
    Bolt(Bolt),
    /// The door sensor reads a new state.
    Door(Door),
    /// The battery reads a new charge, percent.
    Battery(u8),
    /// The agent wrote the state of this persist version (and every earlier one) to disk.
    Persisted {
        /// The version from [`Output::Persist`].
        version: u64,
    },
    /// The agent could not write the state of this persist version.
    PersistFailed {
        /// The version from [`Output::Persist`].
        version: u64,
    },
    /// Time passed; call at [`Lock::next_deadline_ms`] at the latest.
    Tick,
}

/// Something the lock wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Hand this nonce to the driver over the local channel.
    LocalNonce(Signed<UnlockNonce>),
    /// Send this envelope to the server (signed lock reports, time requests).
    Send(Envelope),
    /// Write this state to disk, then answer [`Input::Persisted`] or [`Input::PersistFailed`].
    Persist {
        /// Increases with each persist; acknowledgements name it.
        version: u64,
        /// The whole durable state.
        state: LockState,
    },
    /// Drive the motor.
    Actuate(BoltCommand),
    /// The lock missed revocation epochs: ask the server for every epoch after `have_epoch`.
    RevocationResync {
        /// The epoch the lock holds.
        have_epoch: u64,
    },
    /// A message was refused without a decision (nothing to report to the server).
    Rejected(InputError),
}

/// Why an input message was refused outside an unlock decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The bytes are not a valid envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The envelope's signature is not from the key that must sign this kind of message.
    #[error("envelope not signed by the expected key")]
    BadAuth,
    /// A kind of message a lock does not take.
    #[error("a lock does not accept this kind of message")]
    Unexpected,
    /// Addressed to another lock, home or camera.
    #[error("message for another device or home")]
    NotForUs,
    /// A time answer that does not carry the nonce of the lock's outstanding request.
    #[error("time answer does not match an outstanding request")]
    TimeSyncUnsolicited,
    /// A time answer that came back later than `max_skew_ms` after its request.
    #[error("time answer arrived too late to be trusted")]
    TimeSyncTooLate,
    /// A revocation epoch the lock already holds.
    #[error("revocation epoch {got} is not newer than the lock's {have}")]
    RevocationReplayed {
        /// The epoch received.
        got: u64,
        /// The epoch held.
        have: u64,
    },
    /// Applying the revocation would exceed `max_revoked_items`.
    #[error("revocation table is full")]
    RevocationTableFull,
    /// A camera checkpoint not newer than one already seen.
    #[error("camera checkpoint replayed")]
    CheckpointReplayed,
}

#[derive(Clone, Debug)]
enum Phase {
    /// No cycle: the bolt is (or should be) thrown.
    Idle,
    /// An unlock was authorised; its spent grant is being written before the bolt moves.
    Authorizing {
        grant: GrantId,
        max_open_ms: u64,
        version: u64,
        deadline_ms: u64,
    },
    /// The motor was told to retract; waiting for the bolt sensor.
    Retracting {
        grant: GrantId,
        max_open_ms: u64,
        deadline_ms: u64,
    },
    /// The bolt is retracted. `grant` is `None` for a lock that booted unlocked.
    Unlocked {
        grant: Option<GrantId>,
        max_open_ms: u64,
        since_ms: u64,
        door_opened_ms: Option<u64>,
        held_open: bool,
    },
    /// The motor was told to throw; waiting for the bolt sensor.
    Relocking {
        grant: Option<GrantId>,
        deadline_ms: Option<u64>,
        attempts: u32,
    },
}

/// The lock agent's core. Create with [`Lock::boot`], drive with [`Lock::handle`].
#[derive(Clone, Debug)]
pub struct Lock {
    pub(crate) cfg: LockConfig,
    pub(crate) state: LockState,
    bolt: Bolt,
    door: Door,
    pub(crate) battery_pct: u8,
    phase: Phase,
    pub(crate) jammed: bool,
    cycle_started_ms: Option<u64>,
    last_checkpoint_ms: Option<u64>,
    last_checkpoint_seq: Option<u64>,
    pub(crate) lockout: bool,
    /// Outstanding nonces with their issue time, oldest first.
    pub(crate) nonces: Vec<(Nonce, u64)>,
    /// `(server_ms, mono_ms)` of the last accepted time answer.
    anchor: Option<(u64, u64)>,
    /// `(nonce, sent_mono_ms)` of the outstanding time request.
    time_request: Option<(Nonce, u64)>,
    next_seq: u64,
    durable_seq_reserved: u64,
    queued: VecDeque<LockReport>,
    last_report_ms: u64,
    version: u64,
    inflight: VecDeque<(u64, u64)>,
    pub(crate) dirty: bool,
    persist_retry_ms: u64,
}

impl Lock {
    /// Starts a lock from its last durable state (a default one on first boot). The outputs
    /// reserve a fresh block of report sequence numbers and, if the bolt is not thrown while
    /// the door is closed, throw it (relock on boot). Reports wait until that reservation is
    /// acknowledged; the first time request goes out with the first [`Lock::handle`] call
    /// ([`Lock::next_deadline_ms`] asks for one at once), since it needs randomness.
    pub fn boot(
        cfg: LockConfig,
        mut state: LockState,
        now_ms: u64,
        sensors: Sensors,
    ) -> (Lock, Vec<Output>) {
        let next_seq = state.seq_reserved;
        state.seq_reserved = next_seq.saturating_add(SEQ_BLOCK);
        let mut lock = Lock {
            cfg,
            state,
            bolt: sensors.bolt,
            door: sensors.door,
            battery_pct: sensors.battery_pct.min(100),
            phase: Phase::Idle,
            jammed: sensors.bolt == Bolt::Jammed,
            cycle_started_ms: None,
            last_checkpoint_ms: None,
            last_checkpoint_seq: None,
            lockout: false,
            nonces: Vec::new(),
            anchor: None,
            time_request: None,
            next_seq,
            // Nothing is usable until the new reservation is on disk: the old block's
            // numbers may have been sent before the power went.
            durable_seq_reserved: next_seq,
            queued: VecDeque::new(),
            last_report_ms: now_ms,
            version: 0,
            inflight: VecDeque::new(),
            dirty: false,
            persist_retry_ms: 0,
        };
        let mut out = Vec::new();
        lock.persist(&mut out);
        lock.report(now_ms, LockEvent::Boot, &mut out);
        if sensors.bolt != Bolt::Thrown && guard::enabled(Guard::AutoRelock) {
            match sensors.door {
                Door::Closed => lock.begin_relock(now_ms, None, &mut out),
                Door::Open => {
                    lock.phase = Phase::Unlocked {
                        grant: None,
                        max_open_ms: u64::MAX,
                        since_ms: now_ms,
                        door_opened_ms: Some(now_ms),
                        held_open: false,
                    }
                }
            }
        }
        (lock, out)
    }

    /// Handles one input at `now_ms` (the lock's monotonic clock) and returns what to do.
    /// `rng` supplies nonces (unlock nonces, time requests).
    pub fn handle(
        &mut self,
        now_ms: u64,
        input: Input,
        rng: &mut impl CryptoRngCore,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        // Deadlines first, so an input arriving late sees the state its deadline made.
        self.poll(now_ms, rng, &mut out);
        match input {
            Input::Tick => {}
            Input::NonceRequest => self.issue_nonce(now_ms, rng, &mut out),
            Input::Message(bytes) => self.on_message(now_ms, &bytes, &mut out),
            Input::Bolt(b) => self.on_bolt(now_ms, b, &mut out),
            Input::Door(d) => self.on_door(now_ms, d, &mut out),
            Input::Battery(p) => self.on_battery(now_ms, p, &mut out),
            Input::Persisted { version } => self.on_persisted(now_ms, version, &mut out),
            Input::PersistFailed { version } => self.on_persist_failed(now_ms, version, &mut out),
        }
        if self.dirty && self.inflight.is_empty() && now_ms >= self.persist_retry_ms {
            self.persist(&mut out);
        }
        out
    }

    /// The latest monotonic time at which the driver must call [`Lock::handle`] with
    /// [`Input::Tick`]. It may be in the past: then call at once.
    pub fn next_deadline_ms(&self) -> u64 {
        let mut d = self
            .last_report_ms
            .saturating_add(self.report_interval_ms());
        let mut at = |t: u64| d = d.min(t);
        let confirm = guard::enabled(Guard::ConfirmedActuation);
        match &self.phase {
            Phase::Idle => {}
            Phase::Authorizing { deadline_ms, .. } => at(*deadline_ms),
            Phase::Retracting { deadline_ms, .. } if confirm => at(*deadline_ms),
            Phase::Retracting { .. } => {}
            Phase::Unlocked {
                since_ms,
                door_opened_ms,
                max_open_ms,
                held_open,
                ..
            } => match door_opened_ms {
                None if guard::enabled(Guard::AutoRelock) => {
                    at(since_ms.saturating_add(self.cfg.door_open_wait_ms))
                }
                None => {}
                Some(t) if !held_open => at(t.saturating_add(*max_open_ms)),
                Some(_) => {}
            },
            Phase::Relocking {
                deadline_ms: Some(t),
                ..
            } if confirm => at(*t),
            Phase::Relocking { .. } => {}
        }
        if let Some(t) = self.witness_deadline_ms() {
            at(t);
        }
        if let Some(t) = self.time_request_due_ms() {
            at(t);
        }
        if self.dirty && self.inflight.is_empty() {
            at(self.persist_retry_ms);
        }
        d
    }

    /// The lock's estimate of wall time (ms since the Unix epoch) at `now_ms`, if it has
    /// synchronised with the server since boot.
    pub fn wall_ms(&self, now_ms: u64) -> Option<u64> {
        self.anchor
            .map(|(server, mono)| server.saturating_add(now_ms.saturating_sub(mono)))
    }

    /// The durable state as it stands in memory (possibly ahead of disk).
    pub fn state(&self) -> &LockState {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &LockConfig {
        &self.cfg
    }

    /// The revocation epoch held.
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// The last bolt sensor reading.
    pub fn bolt(&self) -> Bolt {
        self.bolt
    }

    /// The last door sensor reading.
    pub fn door(&self) -> Door {
        self.door
    }

    /// The last battery reading, percent.
    pub fn battery_pct(&self) -> u8 {
        self.battery_pct
    }

    /// Whether an open cycle is in progress (from authorisation to a confirmed relock).
    pub fn in_cycle(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// The grant of the cycle in progress, if any.
    pub fn cycle_grant(&self) -> Option<GrantId> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Authorizing { grant, .. } | Phase::Retracting { grant, .. } => Some(*grant),
            Phase::Unlocked { grant, .. } | Phase::Relocking { grant, .. } => *grant,
        }
    }

    /// Whether the lock is in witness lockout (I4): it refuses grants until checkpoints resume.
    pub fn witness_lockout(&self) -> bool {
        self.lockout
    }

    /// Whether a bolt jam is latched (I6): cleared when the bolt is next seen to move.
    pub fn jammed(&self) -> bool {
        self.jammed
    }

    /// How many nonces are outstanding.
    pub fn outstanding_nonces(&self) -> usize {
        self.nonces.len()
    }

    // ----- timers -------------------------------------------------------------------------

    fn report_interval_ms(&self) -> u64 {
        if self.in_cycle() && guard::enabled(Guard::LockSupervision) {
            self.cfg.proof_interval_ms
        } else {
            self.cfg.idle_report_ms
        }
    }

    fn witness_deadline_ms(&self) -> Option<u64> {
        if self.lockout || self.cycle_grant().is_none() {
            return None;
        }
        let start = self.cycle_started_ms?;
        let base = start.max(self.last_checkpoint_ms.unwrap_or(0));
        Some(base.saturating_add(self.cfg.camera_checkpoint_gap_ms))
    }

    fn time_request_due_ms(&self) -> Option<u64> {
        let due = match self.anchor {
            None => 0,
            Some((_, mono)) => mono.saturating_add(self.cfg.time_resync_ms),
        };
        let can = match self.time_request {
            None => 0,
            Some((_, sent)) => sent.saturating_add(self.cfg.time_request_retry_ms),
        };
        Some(due.max(can))
    }

    fn poll(&mut self, now: u64, rng: &mut impl CryptoRngCore, out: &mut Vec<Output>) {
        let confirm = guard::enabled(Guard::ConfirmedActuation);
        match self.phase.clone() {
            Phase::Idle => {}
            Phase::Authorizing { deadline_ms, .. } if now >= deadline_ms => {
                // The write never came back: the grant is spent in memory, never retracted.
                self.phase = Phase::Idle;
                self.cycle_started_ms = None;
                self.deny(now, DenyReason::StorageFailure, out);
            }
            Phase::Authorizing { .. } => {}
            Phase::Retracting { deadline_ms, .. } if confirm && now >= deadline_ms => {
                self.jam(now, out);
            }
            Phase::Retracting { .. } => {}
            Phase::Unlocked {
                grant,
                since_ms,
                door_opened_ms,
                max_open_ms,
                held_open,
            } => match door_opened_ms {
                None => {
                    if guard::enabled(Guard::AutoRelock)
                        && now >= since_ms.saturating_add(self.cfg.door_open_wait_ms)
                    {
                        self.begin_relock(now, grant, out);
                    }
                }
                Some(t) => {
                    if !held_open && now >= t.saturating_add(max_open_ms) {
                        if let Phase::Unlocked { held_open, .. } = &mut self.phase {
                            *held_open = true;
                        }
                        self.report(now, LockEvent::HeldOpen, out);
                    }
                }
            },
            Phase::Relocking {
                deadline_ms: Some(t),
                ..
            } if confirm && now >= t => self.jam(now, out),
            Phase::Relocking { .. } => {}
        }
        if let Some(t) = self.witness_deadline_ms() {
            if now >= t {
                self.lockout = true;
                self.report(now, LockEvent::WitnessLockout, out);
            }
        }
        if let Some(t) = self.time_request_due_ms() {
            if now >= t {
                let mut n = [0u8; 32];
                rng.fill_bytes(&mut n);
                let nonce = Nonce(n);
                self.time_request = Some((nonce, now));
                let body = Body::TimeRequest(TimeRequest {
                    device: self.cfg.lock.clone(),
                    nonce,
                });
                out.push(Output::Send(Envelope::signed(body, &self.cfg.key)));
            }
        }
        if now
            >= self
                .last_report_ms
                .saturating_add(self.report_interval_ms())
        {
            self.report(now, LockEvent::Periodic, out);
        }
    }

    // ----- inputs -------------------------------------------------------------------------

    fn issue_nonce(&mut self, now: u64, rng: &mut impl CryptoRngCore, out: &mut Vec<Output>) {
        let ttl = self.cfg.nonce_ttl_ms;
        self.nonces
            .retain(|(_, issued)| now < issued.saturating_add(ttl));
        while self.nonces.len() >= self.cfg.max_outstanding_nonces.max(1) {
            // Forgetting is safe (fail closed): the oldest nonce simply stops working.
            self.nonces.remove(0);
        }
        let mut n = [0u8; 32];
        rng.fill_bytes(&mut n);
        let nonce = Nonce(n);
        self.nonces.push((nonce, now));
        let body = UnlockNonce {
            lock: self.cfg.lock.clone(),
            nonce,
            mono_ms: now,
            epoch: self.state.epoch,
        };
        out.push(Output::LocalNonce(Signed::sign(body, &self.cfg.key)));
    }

    fn on_message(&mut self, now: u64, bytes: &[u8], out: &mut Vec<Output>) {
        let env = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                out.push(Output::Rejected(InputError::Malformed(e.to_string())));
                return;
            }
        };
        match &env.body {
            Body::UnlockCommand(_) => match self.decide(now, &env) {
                Ok(auth) => self.authorised(now, auth, out),
                Err(reason) => self.deny(now, reason, out),
            },
            Body::Revocation(_) => self.on_revocation(now, env, out),
            Body::TimeSync(_) => self.on_time_sync(now, env, out),
            Body::Checkpoint(_) => self.on_checkpoint(now, env, out),
            _ => out.push(Output::Rejected(InputError::Unexpected)),
        }
    }

    fn authorised(&mut self, now: u64, auth: Authorized, out: &mut Vec<Output>) {
        let version = self.persist(out);
        self.cycle_started_ms = Some(now);
        if guard::enabled(Guard::SpentGrants) {
            // I3, I8: the spent grant must be on disk before the bolt moves, or a power cut
            // right after the unlock would let the same grant open the door again.
            self.phase = Phase::Authorizing {
                grant: auth.grant,
                max_open_ms: auth.max_open_ms,
                version,
                deadline_ms: now.saturating_add(self.cfg.persist_timeout_ms),
            };
        } else {
            self.start_retract(now, auth.grant, auth.max_open_ms, out);
        }
    }

    fn start_retract(&mut self, now: u64, grant: GrantId, max_open_ms: u64, out: &mut Vec<Output>) {
        out.push(Output::Actuate(BoltCommand::Retract));
        self.phase = Phase::Retracting {
            grant,
            max_open_ms,
            deadline_ms: now.saturating_add(self.cfg.confirm_ms),
        };
    }

    fn on_revocation(&mut self, now: u64, env: Envelope, out: &mut Vec<Output>) {
        if env.verify_sig(&self.cfg.server).is_err() {
            out.push(Output::Rejected(InputError::BadAuth));
            return;
        }
        let Body::Revocation(r) = env.body else {
            return;
        };
        if r.home != self.cfg.home {
            out.push(Output::Rejected(InputError::NotForUs));
            return;
        }
        let have = self.state.epoch;
        if guard::enabled(Guard::RevocationEpoch) {
            if r.epoch <= have {
                out.push(Output::Rejected(InputError::RevocationReplayed {
                    got: r.epoch,
                    have,
                }));
                return;
            }
            if r.epoch > have.saturating_add(1) {
                // A gap: applying this one would skip revocations the lock never saw.
                out.push(Output::RevocationResync { have_epoch: have });
                return;
            }
        }
        let mut new: Vec<Revoked> = Vec::new();
        for item in r.items {
            if !self.state.revoked.contains(&item) && !new.contains(&item) {
                new.push(item);
            }
        }
        if self.state.revoked.len() + new.len() > self.cfg.max_revoked_items {
            // Staying at the old epoch makes every newer context EpochAhead: fail closed.
            out.push(Output::Rejected(InputError::RevocationTableFull));
            return;
        }
        self.state.revoked.extend(new);
        self.state.epoch = r.epoch;
        self.persist(out);
        self.report(now, LockEvent::EpochApplied, out);
    }

    fn on_time_sync(&mut self, now: u64, env: Envelope, out: &mut Vec<Output>) {
        if env.verify_sig(&self.cfg.server).is_err() {
            out.push(Output::Rejected(InputError::BadAuth));
            return;
        }
        let Body::TimeSync(ts) = env.body else {
            return;
        };
        if ts.device != self.cfg.lock {
            out.push(Output::Rejected(InputError::NotForUs));
            return;
        }
        if guard::enabled(Guard::ClockSkew) {
            match self.time_request {
                Some((nonce, sent)) if nonce == ts.nonce => {
                    // A late answer may have been held back by the network: its time is off by
                    // as much as the delay, so it is not trusted past `max_skew_ms`.
                    if now.saturating_sub(sent) > self.cfg.max_skew_ms {
                        out.push(Output::Rejected(InputError::TimeSyncTooLate));
                        return;
                    }
                }
                _ => {
                    out.push(Output::Rejected(InputError::TimeSyncUnsolicited));
                    return;
                }
            }
        }
        self.anchor = Some((ts.server_ms, now));
        self.time_request = None;
    }

    fn on_checkpoint(&mut self, now: u64, env: Envelope, out: &mut Vec<Output>) {
        if env.verify_sig(&self.cfg.camera_key).is_err() {
            out.push(Output::Rejected(InputError::BadAuth));
            return;
        }
        let Body::Checkpoint(cp) = env.body else {
            return;
        };
        if cp.device != self.cfg.camera {
            out.push(Output::Rejected(InputError::NotForUs));
            return;
        }
        if guard::enabled(Guard::StreamSequence) {
            if let Some(last) = self.last_checkpoint_seq {
                if cp.seq <= last {
                    // A replayed checkpoint proves nothing about the camera now.
                    out.push(Output::Rejected(InputError::CheckpointReplayed));
                    return;
                }
            }
        }
        self.last_checkpoint_seq = Some(cp.seq.max(self.last_checkpoint_seq.unwrap_or(0)));
        self.last_checkpoint_ms = Some(now);
        self.lockout = false;
    }

    fn on_bolt(&mut self, now: u64, b: Bolt, out: &mut Vec<Output>) {
        if b == self.bolt {
            return;
        }
        self.bolt = b;
        if matches!(b, Bolt::Thrown | Bolt::Retracted) {
            // The bolt was seen to move: the motor works again.
            self.jammed = false;
        }
        match (self.phase.clone(), b) {
            (
                Phase::Retracting {
                    grant, max_open_ms, ..
                },
                Bolt::Retracted,
            ) => self.enter_unlocked(now, grant, max_open_ms, out),
            (Phase::Relocking { grant, .. }, Bolt::Thrown) => self.relocked(now, grant, out),
            (Phase::Retracting { .. } | Phase::Relocking { .. }, Bolt::Jammed) => {
                self.jam(now, out)
            }
            (_, Bolt::Jammed) => {
                self.jammed = true;
                self.report(now, LockEvent::Jammed, out);
            }
            _ => self.report(now, LockEvent::BoltChanged, out),
        }
    }

    fn on_door(&mut self, now: u64, d: Door, out: &mut Vec<Output>) {
        if d == self.door {
            return;
        }
        self.door = d;
        match d {
            Door::Open => {
                if let Phase::Unlocked { door_opened_ms, .. } = &mut self.phase {
                    door_opened_ms.get_or_insert(now);
                }
                let event = if self.bolt == Bolt::Thrown {
                    LockEvent::ForcedOpen
                } else {
                    LockEvent::DoorChanged
                };
                self.report(now, event, out);
            }
            Door::Closed => {
                if let Phase::Unlocked {
                    grant,
                    door_opened_ms: Some(_),
                    ..
                } = self.phase
                {
                    if guard::enabled(Guard::AutoRelock) {
                        // I3: the door closed, so the bolt goes out now, on nobody's command.
                        self.begin_relock(now, grant, out);
                    }
                }
                self.report(now, LockEvent::DoorChanged, out);
            }
        }
    }

    fn on_battery(&mut self, now: u64, pct: u8, out: &mut Vec<Output>) {
        let pct = pct.min(100);
        let reserve = self.cfg.battery_reserve_pct;
        let crossed = (self.battery_pct >= reserve) != (pct >= reserve);
        self.battery_pct = pct;
        if crossed {
            self.report(now, LockEvent::Periodic, out);
        }
    }

    fn on_persisted(&mut self, now: u64, version: u64, out: &mut Vec<Output>) {
        while let Some(&(v, reserved)) = self.inflight.front() {
            if v > version {
                break;
            }
            self.durable_seq_reserved = self.durable_seq_reserved.max(reserved);
            self.inflight.pop_front();
        }
        if let Phase::Authorizing {
            grant,
            max_open_ms,
            version: wanted,
            ..
        } = self.phase
        {
            if version >= wanted {
                self.start_retract(now, grant, max_open_ms, out);
            }
        }
        self.flush(out);
    }

    fn on_persist_failed(&mut self, now: u64, version: u64, out: &mut Vec<Output>) {
        self.inflight.retain(|&(v, _)| v != version);
        self.dirty = true;
        self.persist_retry_ms = now.saturating_add(PERSIST_RETRY_MS);
        if let Phase::Authorizing {
            version: wanted, ..
        } = self.phase
        {
            if version >= wanted {
                self.phase = Phase::Idle;
                self.cycle_started_ms = None;
                self.deny(now, DenyReason::StorageFailure, out);
            }
        }
    }

    // ----- cycle --------------------------------------------------------------------------

    fn enter_unlocked(
        &mut self,
        now: u64,
        grant: GrantId,
        max_open_ms: u64,
        out: &mut Vec<Output>,
    ) {
        self.phase = Phase::Unlocked {
            grant: Some(grant),
            max_open_ms,
            since_ms: now,
            door_opened_ms: (self.door == Door::Open).then_some(now),
            held_open: false,
        };
        self.report(now, LockEvent::Unlocked(grant), out);
    }

    fn begin_relock(&mut self, now: u64, grant: Option<GrantId>, out: &mut Vec<Output>) {
        if self.bolt == Bolt::Thrown {
            self.relocked(now, grant, out);
            return;
        }
        out.push(Output::Actuate(BoltCommand::Throw));
        self.phase = Phase::Relocking {
            grant,
            deadline_ms: Some(now.saturating_add(self.cfg.confirm_ms)),
            attempts: 1,
        };
    }

    fn relocked(&mut self, now: u64, grant: Option<GrantId>, out: &mut Vec<Output>) {
        self.phase = Phase::Idle;
        self.cycle_started_ms = None;
        let event = match grant {
            Some(g) => LockEvent::Relocked(g),
            None => LockEvent::BoltChanged,
        };
        self.report(now, event, out);
    }

    /// The bolt did not reach its commanded position in time (I6).
    fn jam(&mut self, now: u64, out: &mut Vec<Output>) {
        let first = !self.jammed;
        self.jammed = true;
        if first {
            self.report(now, LockEvent::Jammed, out);
        }
        match self.phase.clone() {
            Phase::Retracting { grant, .. } => {
                // Put the bolt back where it was: a half-retracted bolt is not a locked door.
                self.begin_relock(now, Some(grant), out);
            }
            Phase::Relocking {
                grant, attempts, ..
            } => {
                if attempts < MAX_RELOCK_ATTEMPTS {
                    out.push(Output::Actuate(BoltCommand::Throw));
                    self.phase = Phase::Relocking {
                        grant,
                        deadline_ms: Some(now.saturating_add(self.cfg.confirm_ms)),
                        attempts: attempts + 1,
                    };
                } else {
                    // Out of attempts: keep the cycle open (fast reports) until the sensor
                    // shows the bolt thrown.
                    self.phase = Phase::Relocking {
                        grant,
                        deadline_ms: None,
                        attempts,
                    };
                }
            }
            _ => {}
        }
    }

    // ----- reports and persistence ----------------------------------------------------------

    pub(crate) fn deny(&mut self, now: u64, reason: DenyReason, out: &mut Vec<Output>) {
        self.report(now, LockEvent::Denied(reason), out);
        if reason == DenyReason::EpochAhead {
            out.push(Output::RevocationResync {
                have_epoch: self.state.epoch,
            });
        }
    }

    fn report(&mut self, now: u64, event: LockEvent, out: &mut Vec<Output>) {
        let r = LockReport {
            lock: self.cfg.lock.clone(),
            seq: 0,
            mono_ms: now,
            bolt: self.bolt,
            door: self.door,
            battery_pct: self.battery_pct,
            epoch: self.state.epoch,
            event,
            cycle: self.cycle_grant(),
        };
        self.last_report_ms = now;
        if self.queued.len() >= MAX_QUEUED_REPORTS {
            self.queued.pop_front();
        }
        self.queued.push_back(r);
        self.flush(out);
    }

    /// Sends queued reports for which a durably reserved sequence number exists.
    fn flush(&mut self, out: &mut Vec<Output>) {
        while self.next_seq < self.durable_seq_reserved {
            let Some(mut r) = self.queued.pop_front() else {
                break;
            };
            r.seq = self.next_seq;
            self.next_seq += 1;
            out.push(Output::Send(Envelope::signed(
                Body::LockReport(r),
                &self.cfg.key,
            )));
        }
        if self.next_seq.saturating_add(SEQ_BLOCK / 2) >= self.state.seq_reserved {
            // Reserve the next block while half of this one is left, so reports never wait.
            self.state.seq_reserved = self.state.seq_reserved.saturating_add(SEQ_BLOCK);
            self.persist(out);
        }
    }

    pub(crate) fn persist(&mut self, out: &mut Vec<Output>) -> u64 {
        self.version += 1;
        if self.inflight.len() >= MAX_INFLIGHT_PERSISTS {
            self.inflight.pop_front();
        }
        self.inflight
            .push_back((self.version, self.state.seq_reserved));
        self.dirty = false;
        out.push(Output::Persist {
            version: self.version,
            state: self.state.clone(),
        });
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Harness, PersistMode};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn limit_max_inflight_persists_is_bounded() {
        let mut h = Harness::new(rand_chacha::ChaCha20Rng::seed_from_u64(1));
        h.persist_mode = PersistMode::Hold;
        for epoch in 1..=(MAX_INFLIGHT_PERSISTS as u64 + 5) {
            let b = h.kit.revocation(epoch, vec![], 0);
            h.input(Input::Message(b));
        }
        assert_eq!(h.lock.epoch(), MAX_INFLIGHT_PERSISTS as u64 + 5);
        assert_eq!(h.lock.inflight.len(), MAX_INFLIGHT_PERSISTS);
        // The newest acknowledgement covers every forgotten one.
        let v = h.lock.version;
        h.input(Input::Persisted { version: v });
        assert!(h.lock.inflight.is_empty());
    }

    #[test]
    fn failed_writes_are_retried_after_persist_retry_ms() {
        let mut h = Harness::new(rand_chacha::ChaCha20Rng::seed_from_u64(2));
        h.persist_mode = PersistMode::Fail;
        let b = h.kit.revocation(1, vec![], 0);
        h.input(Input::Message(b));
        assert!(h.lock.dirty);
        h.persist_mode = PersistMode::Ack;
        let out = h.advance(PERSIST_RETRY_MS);
        assert!(out.iter().any(|o| matches!(o, Output::Persist { .. })));
        assert_eq!(h.disk.as_ref().unwrap().epoch, 1);
        assert!(!h.lock.dirty);
    }
}
