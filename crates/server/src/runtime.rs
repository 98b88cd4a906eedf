//! The control task: the one owner of [`doorward_control::Control`]. Everything reaches it
//! through a bounded queue of [`Command`]s ([`CONTROL_QUEUE_CAPACITY`]; full means the
//! request is denied, I8); it sleeps until the core's next deadline or the next command,
//! with the OS wall clock in milliseconds.
//!
//! The core's outputs are carried out in order by a second task, the effects task, each
//! batch only once the audit records it rests on are durable: `Audit` records are appended
//! to the home's hash chain here and queued to the store at once (the store commits many
//! queued writes in one transaction), and the effects task awaits those writes before it
//! publishes an envelope, shows an alarm or answers a caller. If a write fails, nothing that
//! depended on it happens: envelopes are not sent, entries are denied `StorageFailure`, and a
//! `StorageFailure` alarm goes to every live view (I8).
//!
//! Routine idle proofs are collapsed into per-device checkpoint entries
//! ([`doorward_control::audit::ProofCollapser`]) so the log does not grow with heartbeats.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use doorward_control::audit::{
    AuditChain, AuditConfig, CollapseConfig, Collapsed, EntryKind, ProofCollapser,
};
use doorward_control::{
    Admin, AdminError, AlarmNotice, AuditEvent, AuditKind, Control, EntryDecision, EntryRequest,
    HomeState, Input, Output, RejectReason,
};
use doorward_proto::{DenyReason, Id, KeyPair};
use doorward_store::{Pending, Store};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{Gateway, Routes};
use crate::hub::{alarm_event, approval_event, Hub};
use crate::metrics::{label, Metrics};

/// Commands waiting for the control task; one more is refused at once (I8: a request is
/// denied, a device message is dropped and counted as `queue_full`).
pub const CONTROL_QUEUE_CAPACITY: usize = 4096;
/// Batches of effects waiting for their audit writes; when full the control task waits,
/// which in turn fills [`CONTROL_QUEUE_CAPACITY`].
pub const EFFECTS_QUEUE_CAPACITY: usize = 1024;
/// Entry requests waiting for a decision (the camera's attestation, the homeowner's
/// approval); one more is denied `QueueFull`.
pub const MAX_WAITING_DECISIONS: usize = 10_000;
/// How often the control task signs due audit checkpoints and writes long collapsed runs.
pub const AUDIT_TICK_MS: u64 = 250;
/// Most collapsed runs written per audit tick.
pub const MAX_COLLAPSED_PER_TICK: usize = 1024;
/// The text of the server's `StorageFailure` alarm.
pub const STORAGE_FAILURE_DETAIL: &str =
    "the server could not make its record durable; entries are refused";
/// The audit chain of events that concern no home (driver registrations, server starts).
/// Home ids starting with `:` are refused at provisioning, so it cannot clash with a home.
pub const SERVER_CHAIN: &str = ":server";

/// Milliseconds since the Unix epoch, from the OS clock.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a request through the control task failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The core refused the change.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The control queue is full: try again later.
    #[error("the server is busy (control queue of {CONTROL_QUEUE_CAPACITY} full)")]
    Busy,
    /// The audit record could not be made durable, so the change was not acknowledged.
    #[error("storage failure: the change was not recorded")]
    Storage,
    /// The server is shutting down.
    #[error("the server is stopping")]
    Stopped,
    /// Something the request needs is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] crate::keystore::KeystoreError),
}

/// What reaches the control task.
// Commands are built, sent once and consumed; boxing the large variants would only add an
// allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// A device message from the gateway.
    Device {
        /// The device the topic names.
        from: Id,
        /// The payload, at most an envelope's size.
        bytes: Vec<u8>,
    },
    /// An administrative change; answered once its audit records are durable.
    Admin {
        /// The change.
        op: Admin,
        /// The answer.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// A driver's entry request; answered with the decision.
    Entry {
        /// The request.
        req: EntryRequest,
        /// The decision.
        reply: oneshot::Sender<EntryDecision>,
    },
    /// Any other input (arrival, approval, alarm acknowledgement).
    Input {
        /// The input.
        input: Input,
        /// Answered once processed and recorded.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// A home's state with its evidence.
    State {
        /// The home.
        home: Id,
        /// The answer.
        reply: oneshot::Sender<Option<HomeState>>,
    },
    /// Flush the audit record (collapsed runs, checkpoints) and stop.
    Shutdown {
        /// Answered once everything is durable.
        reply: oneshot::Sender<()>,
    },
    /// An entry of the server's own for `home`'s audit chain (a webhook endpoint), answered
    /// once it is durable.
    RecordAcked {
        /// The chain.
        home: Id,
        /// The entry kind.
        kind: EntryKind,
        /// The details.
        payload: Vec<u8>,
        /// The answer.
        reply: oneshot::Sender<Result<(), ServerError>>,
    },
    /// An entry of the server's own (a webhook dead letter) for `home`'s audit chain.
    Record {
        /// The chain.
        home: Id,
        /// The entry kind.
        kind: EntryKind,
        /// The details.
        payload: Vec<u8>,
    },
}

/// Something to do once a batch's audit writes are durable.
enum Action {
    Publish {
        device: Id,
        bytes: Vec<u8>,
    },
    Alarm(AlarmNotice),
    Hub(Id, crate::hub::HubEvent),
    Decision(EntryDecision, Option<oneshot::Sender<EntryDecision>>),
    Reply(
        oneshot::Sender<Result<(), ServerError>>,
        Result<(), ServerError>,
    ),
    Done(oneshot::Sender<()>),
}

/// The outputs of one step of the core and the writes they wait for.
#[derive(Default)]
struct Batch {
    pending: Vec<Pending>,
    storage_failed: bool,
    actions: Vec<Action>,
}

/// What the effects task needs.
pub(crate) struct Effects {
    pub gateway: Gateway,
    pub routes: Arc<Routes>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub webhooks: Arc<crate::webhook::Webhooks>,
}

/// The control task's state.
pub(crate) struct Runtime {
    control: Control,
    key: KeyPair,
    store: Arc<dyn Store>,
    chains: HashMap<Id, AuditChain>,
    /// Homes whose chain has entries no checkpoint covers yet.
    uncovered: HashSet<Id>,
    collapser: ProofCollapser<(Id, Id)>,
    waiting: HashMap<u64, oneshot::Sender<EntryDecision>>,
    routes: Arc<Routes>,
    gateway: Gateway,
    metrics: Arc<Metrics>,
    last_ms: u64,
    /// Key sealing device state in the store ([`crate::devstate`]); `None` keeps none.
    state_key: Option<[u8; 32]>,
    /// The device state last written, per device (bounded by the core's paired devices).
    kept: HashMap<Id, doorward_control::DeviceSnapshot>,
}

impl Runtime {
    pub fn new(
        control: Control,
        key: KeyPair,
        store: Arc<dyn Store>,
        routes: Arc<Routes>,
        gateway: Gateway,
        metrics: Arc<Metrics>,
    ) -> Runtime {
        Runtime {
            control,
            key,
            store,
            chains: HashMap::new(),
            uncovered: HashSet::new(),
            collapser: ProofCollapser::new(CollapseConfig::default()),
            waiting: HashMap::new(),
            routes,
            gateway,
            metrics,
            last_ms: 0,
            state_key: None,
            kept: HashMap::new(),
        }
    }

    /// Writes each device's stream state, sealed under `key`, whenever a message moves it.
    pub fn keep_device_state(mut self, key: [u8; 32]) -> Runtime {
        self.state_key = Some(key);
        self
    }

    /// Queues `device`'s stream state if it changed, in this batch: what the batch's effects
    /// rest on includes where the stream stood.
    fn keep_state(&mut self, device: &Id, now: u64, batch: &mut Batch) {
        let Some(key) = self.state_key else { return };
        let Some(snap) = self.control.device_snapshot(device) else {
            return;
        };
        if self.kept.get(device) == Some(&snap) {
            return;
        }
        let Some(home) = self.routes.home_of(device) else {
            return;
        };
        let row = crate::devstate::wrap(&key, &home, device, &snap, now);
        match self.store.put_device_state(&row) {
            Ok(p) => {
                batch.pending.push(p);
                self.kept.insert(device.clone(), snap);
            }
            Err(e) => {
                tracing::error!(%device, error = %e, "device state write failed");
                batch.storage_failed = true;
            }
        }
    }

    /// Server time, never going backwards even if the OS clock does.
    fn now(&mut self) -> u64 {
        self.last_ms = self.last_ms.max(wall_ms());
        self.last_ms
    }

    /// Runs the control task until [`Command::Shutdown`] or until every sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, effects: Effects) {
        let (etx, erx) = mpsc::channel::<Batch>(EFFECTS_QUEUE_CAPACITY);
        // The effects task reports a write that did not become durable here, so the core
        // raises `StorageFailure` like any alarm: recorded, re-sent until acknowledged.
        let (failed_tx, mut failed) = mpsc::channel::<()>(1);
        let effects_task = tokio::spawn(run_effects(erx, effects, failed_tx));
        let mut audit_tick = tokio::time::interval(Duration::from_millis(AUDIT_TICK_MS));
        audit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        {
            let now = self.now();
            let mut batch = Batch::default();
            // Supervision again from now: the entries and alarms restored from the record, and
            // every paired device (see `Control::resume`).
            let outs = self.control.resume(now);
            self.outputs(outs, None, &mut batch);
            self.cover_tails(&mut batch);
            self.append(
                Id::new(SERVER_CHAIN).expect("a valid id"),
                now,
                EntryKind::SERVER_START,
                None,
                doorward_proto::codec::encode(&self.key.public()),
                &mut batch,
            );
            let _ = etx.send(batch).await;
        }
        loop {
            let sleep = match self.control.next_deadline_ms() {
                Some(d) => Duration::from_millis(d.saturating_sub(wall_ms())),
                None => Duration::from_secs(3600),
            };
            let mut batch = Batch::default();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(reply) = self.command(cmd, &mut batch) {
                        self.shutdown(&mut batch);
                        batch.actions.push(Action::Done(reply));
                        let _ = etx.send(batch).await;
                        break;
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    let now = self.now();
                    let outs = self.control.handle(now, Input::Tick);
                    self.outputs(outs, None, &mut batch);
                }
                _ = audit_tick.tick() => self.audit_tick(&mut batch),
                Some(()) = failed.recv() => {
                    // The chains in memory may be ahead of what was stored: each resumes from
                    // the store's head at its next append.
                    self.chains.clear();
                    let now = self.now();
                    let outs = self.control.storage_failure(now, STORAGE_FAILURE_DETAIL);
                    self.outputs(outs, None, &mut batch);
                }
            }
            if batch.pending.is_empty() && batch.actions.is_empty() && !batch.storage_failed {
                continue;
            }
            if etx.send(batch).await.is_err() {
                break;
            }
        }
        drop(etx);
        let _ = effects_task.await;
    }

    /// Signs a checkpoint over every stored chain whose end no checkpoint covers: after a
    /// crash (SIGKILL, power loss) the entries written since the last checkpoint are durable
    /// but unsigned, and the record would not verify until the home's next event.
    fn cover_tails(&mut self, batch: &mut Batch) {
        let store = self.store.clone();
        let homes = tokio::task::block_in_place(|| {
            let mut homes = vec![Id::new(SERVER_CHAIN).expect("a valid id")];
            let mut after: Option<Id> = None;
            loop {
                let page = store.home_ids(after.as_ref(), doorward_store::MAX_READ_ROWS)?;
                let done = page.len() < doorward_store::MAX_READ_ROWS;
                after = page.last().cloned();
                homes.extend(page);
                if done {
                    return Ok::<_, doorward_store::StoreError>(homes);
                }
            }
        });
        let homes = match homes {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the homes to cover their records");
                batch.storage_failed = true;
                return;
            }
        };
        for home in homes {
            let head = tokio::task::block_in_place(|| store.audit_head(&home));
            let covered = match &head {
                Ok(h) => h
                    .last_checkpoint
                    .as_ref()
                    .map_or(h.next_index == 0, |c| c.body.count == h.next_index),
                Err(_) => false,
            };
            if covered {
                continue;
            }
            let now = self.now();
            let key = self.key.clone();
            match self.chain(&home) {
                Ok(chain) => {
                    let cp = chain.checkpoint(now, &key);
                    self.checkpoint(home, cp, batch);
                }
                Err(e) => {
                    tracing::error!(%home, error = %e, "cannot resume the record");
                    batch.storage_failed = true;
                }
            }
        }
    }

    /// Handles one command; returns the reply of a shutdown.
    fn command(&mut self, cmd: Command, batch: &mut Batch) -> Option<oneshot::Sender<()>> {
        let now = self.now();
        match cmd {
            Command::Device { from, bytes } => {
                let outs = self.control.handle(
                    now,
                    Input::Device {
                        from: from.clone(),
                        bytes,
                    },
                );
                self.outputs(outs, None, batch);
                self.keep_state(&from, now, batch);
            }
            Command::Admin { op, reply } => {
                let paired = match &op {
                    Admin::PairDoor { home, door } => {
                        Some((home.clone(), [door.lock.clone(), door.camera.clone()]))
                    }
                    _ => None,
                };
                let home_added = match &op {
                    Admin::AddHome(h) => Some(h.home.clone()),
                    _ => None,
                };
                // Deadlines first, in a step of their own: an admin change the core refuses
                // returns only its error, and alarms due at this instant must not go with it.
                let due = self.control.handle(now, Input::Tick);
                self.outputs(due, None, batch);
                let journal = crate::journal::Op::of(&op);
                match self.control.admin(now, op) {
                    Ok(outs) => {
                        if let Some((home, devices)) = paired {
                            for d in devices {
                                self.routes.insert(d, home.clone());
                            }
                            self.metrics
                                .supervised_devices
                                .store(self.routes.len() as u64, Ordering::Relaxed);
                        }
                        if let Some(home) = home_added {
                            self.gateway.subscribe_home(&home);
                        }
                        self.outputs(outs, None, batch);
                        self.journal(now, journal, batch);
                        batch.actions.push(Action::Reply(reply, Ok(())));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Entry { req, reply } => {
                let delivery = req.delivery.clone();
                let outs = self.control.handle(now, Input::EntryRequest(req));
                let decided = outs.iter().any(|o| matches!(o, Output::Decision(_)));
                let numbered = outs.iter().find_map(|o| match o {
                    Output::Audit(AuditEvent {
                        what: AuditKind::EntryRequested { request, .. },
                        ..
                    }) => Some(*request),
                    _ => None,
                });
                if decided {
                    self.outputs(outs, Some(reply), batch);
                } else {
                    match numbered {
                        Some(n) if self.waiting.len() < MAX_WAITING_DECISIONS => {
                            self.waiting.insert(n, reply);
                        }
                        _ => {
                            self.metrics
                                .decision("denied", label(&DenyReason::QueueFull));
                            let _ = reply.send(EntryDecision::Denied {
                                request: numbered.unwrap_or(0),
                                delivery,
                                reason: DenyReason::QueueFull,
                            });
                        }
                    }
                    self.outputs(outs, None, batch);
                }
            }
            Command::Input { input, reply } => {
                let outs = self.control.handle(now, input);
                self.outputs(outs, None, batch);
                batch.actions.push(Action::Reply(reply, Ok(())));
            }
            Command::State { home, reply } => {
                let _ = reply.send(self.control.state(&home, now));
            }
            Command::Shutdown { reply } => return Some(reply),
            Command::Record {
                home,
                kind,
                payload,
            } => self.append(home, now, kind, None, payload, batch),
            Command::RecordAcked {
                home,
                kind,
                payload,
                reply,
            } => {
                self.append(home, now, kind, None, payload, batch);
                batch.actions.push(Action::Reply(reply, Ok(())));
            }
        }
        None
    }

    /// Records an accepted administrative change so a restart can replay it; the reply
    /// waits for this write like for the core's own record of the change.
    fn journal(&mut self, now: u64, op: crate::journal::Op, batch: &mut Batch) {
        let home = op
            .home()
            .cloned()
            .unwrap_or_else(|| Id::new(SERVER_CHAIN).expect("a valid id"));
        if let crate::journal::Op::AddHome { home, root, .. } = &op {
            // The home's registry row: how a restart finds the homes to replay.
            let row = doorward_store::Record::Home(doorward_store::Home {
                id: home.clone(),
                name: home.to_string(),
                root_key: *root,
                created_ms: now,
            });
            match self.store.put_record(&row) {
                Ok(p) => batch.pending.push(p),
                Err(e) => {
                    tracing::error!(%home, error = %e, "home record failed");
                    batch.storage_failed = true;
                }
            }
        }
        let payload = doorward_proto::codec::encode(&op);
        self.append(home, now, crate::journal::REGISTRY_OP, None, payload, batch);
    }

    /// Sorts the core's outputs into audit writes (now) and actions (once durable).
    /// `caller` is the reply of the entry request these outputs answer, if any.
    fn outputs(
        &mut self,
        outs: Vec<Output>,
        mut caller: Option<oneshot::Sender<EntryDecision>>,
        batch: &mut Batch,
    ) {
        for o in outs {
            match o {
                Output::Audit(ev) => self.record(ev, batch),
                Output::Send { device, envelope } => batch.actions.push(Action::Publish {
                    device,
                    bytes: envelope.to_bytes(),
                }),
                Output::Alarm(a) => batch.actions.push(Action::Alarm(a)),
                Output::ApprovalRequest(r) => batch
                    .actions
                    .push(Action::Hub(r.home.clone(), approval_event(&r))),
                Output::Decision(d) => {
                    let request = match &d {
                        EntryDecision::Denied { request, .. }
                        | EntryDecision::Authorised { request, .. } => *request,
                    };
                    let reply = caller.take().or_else(|| self.waiting.remove(&request));
                    batch.actions.push(Action::Decision(d, reply));
                }
            }
        }
    }

    /// A lock's state-change report is acknowledged (`Ack`, docs/PROTOCOL.md §6.11) with this
    /// batch's effects, i.e. once it is durable here: the lock keeps it in its outbox until
    /// then and sends it again after a reconnect. Routine messages are not acknowledged. A
    /// lock's newest report received again (its acknowledgement was lost) is acknowledged
    /// again, or the lock would send it every second until its next state change.
    fn ack(&mut self, ev: &AuditEvent, batch: &mut Batch) {
        let (device, seq) = match &ev.what {
            AuditKind::Accepted {
                device,
                seq,
                envelope,
                routine: false,
                ..
            } if doorward_proto::Envelope::decode(envelope)
                .is_ok_and(|e| matches!(e.body, doorward_proto::Body::LockReport(_))) =>
            {
                (device, *seq)
            }
            AuditKind::Rejected {
                from,
                reason: RejectReason::Duplicate,
                seq: Some(seq),
                ..
            } if self.control.is_lock(from) => (from, *seq),
            _ => return,
        };
        if seq == 0 {
            return;
        }
        let ack = doorward_proto::Ack {
            device: device.clone(),
            seq,
        };
        let env = doorward_proto::Envelope::signed(doorward_proto::Body::Ack(ack), &self.key);
        batch.actions.push(Action::Publish {
            device: device.clone(),
            bytes: env.to_bytes(),
        });
    }

    /// Appends one core audit event to its home's chain (collapsing routine idle proofs).
    fn record(&mut self, ev: AuditEvent, batch: &mut Batch) {
        // A recording proof's segment: what its footage upload must match (crate::footage).
        match crate::footage::expect(&self.control, self.store.as_ref(), &ev) {
            Some(Ok(p)) => batch.pending.push(p),
            Some(Err(e)) => {
                tracing::error!(error = %e, "footage expectation write failed");
                batch.storage_failed = true;
            }
            None => {}
        }
        if let AuditKind::Rejected { reason, .. } = &ev.what {
            self.metrics.dropped(label(reason));
        }
        self.ack(&ev, batch);
        let home = ev
            .home
            .clone()
            .unwrap_or_else(|| Id::new(SERVER_CHAIN).expect("a valid id"));
        let device = match &ev.what {
            AuditKind::Accepted { device, .. }
            | AuditKind::StreamLoss { device, .. }
            | AuditKind::SessionOpened { device, .. }
            | AuditKind::CheckpointMismatch { device, .. }
            | AuditKind::Reanchored { device, .. }
            | AuditKind::SessionActive { device, .. }
            | AuditKind::TimeServed { device } => Some(device.clone()),
            AuditKind::Rejected { from, .. } => Some(from.clone()),
            _ => None,
        };
        if let AuditKind::Accepted {
            device,
            seq,
            digest,
            routine: true,
            ..
        } = &ev.what
        {
            let key = (home.clone(), device.clone());
            if let Ok(flushed) = self.collapser.idle_proof(ev.at_ms, key, *seq, *digest) {
                if let Some(c) = flushed {
                    self.append_collapsed(c, batch);
                }
                return;
            }
            // Not increasing: the stream checks already said why; keep the event itself.
        }
        if let Some(d) = &device {
            // The record keeps the order things happened in: a device's idle run first.
            if let Some(c) = self.collapser.flush(&(home.clone(), d.clone())) {
                self.append_collapsed(c, batch);
            }
        }
        let at = ev.at_ms;
        self.append(home, at, EntryKind::EVENT, device, ev.to_bytes(), batch);
    }

    fn append_collapsed(&mut self, c: Collapsed<(Id, Id)>, batch: &mut Batch) {
        let (home, device) = c.device;
        self.append(
            home,
            c.run.last_ms,
            EntryKind::DEVICE_CHECKPOINT,
            Some(device),
            doorward_proto::codec::encode(&c.run),
            batch,
        );
    }

    /// The chain of `home`, resumed from the store on first use.
    fn chain(&mut self, home: &Id) -> Result<&mut AuditChain, String> {
        if !self.chains.contains_key(home) {
            let store = self.store.clone();
            let h = home.clone();
            // A rare blocking read (first event of a home since start): not worth a round
            // trip through the blocking pool and an await inside the core's step.
            let head =
                tokio::task::block_in_place(|| store.audit_head(&h)).map_err(|e| e.to_string())?;
            self.chains.insert(
                home.clone(),
                AuditChain::resume(
                    home.clone(),
                    head.next_index,
                    head.head,
                    AuditConfig::default(),
                ),
            );
        }
        Ok(self.chains.get_mut(home).expect("inserted above"))
    }

    fn append(
        &mut self,
        home: Id,
        at_ms: u64,
        kind: EntryKind,
        device: Option<Id>,
        payload: Vec<u8>,
        batch: &mut Batch,
    ) {
        let key = self.key.clone();
        let appended = match self.chain(&home) {
            Ok(chain) => chain
                .append(at_ms, kind, device, payload, &key)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let queued = appended.and_then(|a| {
            self.store
                .append_audit(&home, a.entry, a.checkpoint)
                .map_err(|e| e.to_string())
        });
        match queued {
            Ok(p) => {
                batch.pending.push(p);
                self.uncovered.insert(home);
            }
            Err(e) => {
                tracing::error!(%home, error = %e, "audit append failed");
                batch.storage_failed = true;
                // The in-memory head may now be ahead of the store: resume from the store.
                self.chains.remove(&home);
            }
        }
    }

    /// Signs due checkpoints and writes collapsed runs that grew too long.
    fn audit_tick(&mut self, batch: &mut Batch) {
        let now = self.now();
        let mut runs = Vec::new();
        self.collapser
            .flush_due(now, MAX_COLLAPSED_PER_TICK, &mut runs);
        for c in runs {
            self.append_collapsed(c, batch);
        }
        let homes: Vec<Id> = self.uncovered.iter().cloned().collect();
        for home in homes {
            let key = self.key.clone();
            let Some(chain) = self.chains.get_mut(&home) else {
                self.uncovered.remove(&home);
                continue;
            };
            if let Some(cp) = chain.checkpoint_if_due(now, &key) {
                self.uncovered.remove(&home);
                self.checkpoint(home, cp, batch);
            }
        }
    }

    fn checkpoint(
        &mut self,
        home: Id,
        cp: doorward_proto::Signed<doorward_store::AuditCheckpoint>,
        batch: &mut Batch,
    ) {
        match self.store.append_checkpoint(&home, cp) {
            Ok(p) => batch.pending.push(p),
            Err(e) => {
                tracing::error!(%home, error = %e, "audit checkpoint failed");
                batch.storage_failed = true;
                self.chains.remove(&home);
            }
        }
    }

    /// Writes every collapsed run and a checkpoint of every chain that needs one.
    fn shutdown(&mut self, batch: &mut Batch) {
        let mut runs = Vec::new();
        self.collapser.flush_all(&mut runs);
        for c in runs {
            self.append_collapsed(c, batch);
        }
        let now = self.now();
        let homes: Vec<Id> = self.uncovered.drain().collect();
        for home in homes {
            let key = self.key.clone();
            if let Some(chain) = self.chains.get_mut(&home) {
                let cp = chain.checkpoint(now, &key);
                self.checkpoint(home, cp, batch);
            }
        }
    }
}

/// Carries out batches in order, each once its writes are durable; tells `failed` when one
/// did not become durable.
async fn run_effects(mut rx: mpsc::Receiver<Batch>, fx: Effects, failed: mpsc::Sender<()>) {
    while let Some(batch) = rx.recv().await {
        let mut durable = !batch.storage_failed;
        for p in batch.pending {
            if let Err(e) = p.await {
                tracing::error!(error = %e, "audit write failed");
                durable = false;
            }
        }
        if !durable {
            // One report waiting is enough: the core raises one alarm per home until it is
            // acknowledged.
            let _ = failed.try_send(());
        }
        for a in batch.actions {
            perform(&fx, a, durable);
        }
    }
}

fn perform(fx: &Effects, action: Action, durable: bool) {
    match action {
        Action::Publish { device, bytes } => {
            // Nothing leaves for a device unless the decision behind it is on record (I8).
            if !durable {
                return;
            }
            match fx.routes.home_of(&device) {
                Some(home) => {
                    fx.gateway.publish(&home, &device, bytes);
                }
                None => tracing::warn!(%device, "no route to device"),
            }
        }
        Action::Alarm(a) => {
            if a.sent == 1 {
                fx.metrics.alarm(label(&a.alarm.kind));
            }
            fx.hub.publish(&a.alarm.home, alarm_event(&a));
            fx.webhooks.alarm(&a);
        }
        Action::Hub(home, ev) => fx.hub.publish(&home, ev),
        Action::Decision(d, reply) => {
            let d = match d {
                EntryDecision::Authorised {
                    request, delivery, ..
                } if !durable => EntryDecision::Denied {
                    request,
                    delivery,
                    reason: DenyReason::StorageFailure,
                },
                d => d,
            };
            match &d {
                EntryDecision::Authorised { .. } => fx.metrics.decision("authorised", ""),
                EntryDecision::Denied { reason, .. } => {
                    fx.metrics.decision("denied", label(reason))
                }
            }
            if let Some(r) = reply {
                let _ = r.send(d);
            }
        }
        Action::Reply(r, res) => {
            let _ = r.send(if durable {
                res
            } else {
                Err(ServerError::Storage)
            });
        }
        Action::Done(r) => {
            let _ = r.send(());
        }
    }
}
