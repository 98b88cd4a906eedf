//! [`Control`]: the state, the entry point ([`Control::handle`]), administration, deadlines,
//! alarms and queries. Device messages are in `device.rs`, entries in `entry.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use doorward_proto::guard::{self, Guard};
use doorward_proto::{
    grant, Alarm, AlarmKind, Body, Bolt, Door, Envelope, GrantId, Id, KeyPair, PubKey, Revocation,
    Revoked, Signed, WitnessAttestation, MAX_TEXT_BYTES,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::*;
use crate::io::*;
use crate::registry::*;
use crate::stream::{FrameHistory, Supervision};
use crate::view::*;
use crate::wheel::TimerWheel;

/// A deadline in the wheel. Slots are indices into the device or delivery tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Timer {
    /// A device has not proved itself in time.
    Silence(u32),
    /// A lock's unlock or bolt movement is not confirmed.
    Actuation(u32),
    /// A lock's door closed and the bolt is not reported thrown.
    Relock(u32),
    /// A lock's maximum open time (plus `confirm_ms`) passed without a relock.
    MaxOpen(u32),
    /// A lock's door sensor and camera disagree.
    Scene(u32),
    /// A pending entry request's approval or witness deadline.
    Request(u64),
    /// A relocked delivery's egress is not witnessed yet.
    Egress(u32),
    /// A delivery's post-entry watch ends.
    Watch(u32),
    /// An unacknowledged alarm is due again.
    Resend(u64),
    /// A delivery's window ends: if nobody was let in, it is over.
    Expire(u32),
}

/// One delivery in flight.
pub(crate) struct Delivery {
    pub id: Id,
    pub home: u32,
    pub lock: u32,
    pub carrier: Id,
    pub driver: PubKey,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
    pub max_open_ms: u64,
    pub phase: Phase,
    pub alarms: Vec<(u64, AlarmKind)>,
    pub run: Option<EntryRun>,
}

/// What the server tracks for one authorised entry.
#[derive(Clone, Debug)]
pub(crate) struct EntryRun {
    pub grant: GrantId,
    pub base_in: u16,
    pub base_out: u16,
    pub door_was_open: bool,
    pub relocked_ms: u64,
    pub egress_ms: u64,
    pub egress_in: u16,
    pub egress_out: u16,
    /// Restored after a restart with a people count that is not on record (the counts at
    /// the egress, or at the authorisation in an older record): the first camera proof after
    /// the restart sets it.
    pub rebase: bool,
}

/// Where a pending entry request stands.
pub(crate) enum Stage {
    /// Waiting for the homeowner.
    Approval,
    /// Waiting for the camera's attestation.
    Witness,
    /// Attested; waiting for a proof fresh enough to receipt.
    Receipt(Signed<WitnessAttestation>),
}

/// A pending entry request.
pub(crate) struct Pending {
    pub delivery: u32,
    pub req: EntryRequest,
    pub stage: Stage,
}

/// What makes two alarms the same for de-duplication: kind, home, device and delivery
/// slots ([`NONE`] where there is none).
pub(crate) type AlarmKey = (AlarmKind, u32, u32, u32);

/// An alarm raised and not acknowledged.
pub(crate) struct OpenAlarm {
    pub notice: AlarmNotice,
    pub key: AlarmKey,
}

/// The server's decision core. See the crate documentation.
pub struct Control {
    pub(crate) cfg: Config,
    pub(crate) server_key: KeyPair,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) wheel: TimerWheel<Timer>,
    pub(crate) homes: Vec<Home>,
    pub(crate) home_ix: HashMap<Id, u32>,
    pub(crate) devices: Vec<Device>,
    pub(crate) dev_ix: HashMap<Id, u32>,
    pub(crate) drivers: HashMap<PubKey, Driver>,
    pub(crate) deliveries: Vec<Option<Delivery>>,
    pub(crate) free_deliveries: Vec<u32>,
    pub(crate) delivery_ix: HashMap<Id, u32>,
    pub(crate) finished: HashMap<Id, DeliveryView>,
    pub(crate) finished_order: VecDeque<Id>,
    pub(crate) requests: BTreeMap<u64, Pending>,
    pub(crate) next_request: u64,
    pub(crate) alarms: BTreeMap<u64, OpenAlarm>,
    pub(crate) alarm_keys: HashSet<AlarmKey>,
    pub(crate) next_alarm: u64,
    pub(crate) histories: HashMap<u32, FrameHistory>,
    /// Session keys agreed and not yet used, by session id.
    pub(crate) pending_sessions: HashMap<u64, PendingSession>,
    /// Session ids in the order agreed, with when each stops waiting: bounds the handshakes
    /// per `session_confirm_ms`.
    pub(crate) pending_order: VecDeque<(u64, u64)>,
    /// Short digests of recent hellos, with the session each one opened.
    pub(crate) recent_hellos: HashMap<u64, u64>,
    pub(crate) recent_order: VecDeque<u64>,
    /// What a restore from the record needs until [`Control::resume`].
    pub(crate) restoring: crate::restore::Restoring,
    fired: Vec<Timer>,
}

/// A session key agreed with a device and not yet used by it.
pub(crate) struct PendingSession {
    pub slot: u32,
    pub key: doorward_proto::session::SessionKey,
}

/// No device or delivery: the placeholder in alarm dedup keys.
pub(crate) const NONE: u32 = u32::MAX;

/// An alarm about to be raised.
pub(crate) struct Raise {
    pub kind: AlarmKind,
    pub home: u32,
    pub device: Option<u32>,
    pub delivery: Option<u32>,
    pub detail: String,
}

impl Control {
    /// A core with no homes, signing with `server_key`, drawing session and grant randomness
    /// from a ChaCha20 stream seeded with `seed` (from the OS in a process, from the run's
    /// seed in the simulator), with deadlines starting at `now_ms`.
    pub fn new(cfg: Config, server_key: KeyPair, seed: [u8; 32], now_ms: u64) -> Self {
        Control {
            wheel: TimerWheel::new(cfg.wheel_granularity_ms, now_ms),
            cfg,
            server_key,
            rng: ChaCha20Rng::from_seed(seed),
            homes: Vec::new(),
            home_ix: HashMap::new(),
            devices: Vec::new(),
            dev_ix: HashMap::new(),
            drivers: HashMap::new(),
            deliveries: Vec::new(),
            free_deliveries: Vec::new(),
            delivery_ix: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            alarms: BTreeMap::new(),
            alarm_keys: HashSet::new(),
            next_alarm: 1,
            histories: HashMap::new(),
            pending_sessions: HashMap::new(),
            pending_order: VecDeque::new(),
            recent_hellos: HashMap::new(),
            recent_order: VecDeque::new(),
            restoring: Default::default(),
            fired: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The server's public key (locks verify contexts, revocations and time with it).
    pub fn server_key(&self) -> PubKey {
        self.server_key.public()
    }

    /// Feeds one event at server time `now_ms`. Deadlines due at `now_ms` fire first, so an
    /// alarm is output on the first call whose `now_ms` reaches its deadline.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.run_timers(now_ms, &mut out);
        match input {
            Input::Device { from, bytes } => self.on_device(now_ms, from, bytes, &mut out),
            Input::DriverArrived { delivery } => self.on_arrived(now_ms, &delivery, &mut out),
            Input::EntryRequest(req) => self.on_entry_request(now_ms, req, &mut out),
            Input::Approve { request } => self.on_approval(now_ms, request, true, &mut out),
            Input::Deny { request } => self.on_approval(now_ms, request, false, &mut out),
            Input::AckAlarm { id } => self.on_ack(now_ms, id, &mut out),
            Input::Tick => {}
        }
        out
    }

    /// The earliest pending deadline: call [`Control::handle`] with [`Input::Tick`] then.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    // ----- administration -----

    /// Applies an administrative change at `now_ms`.
    pub fn admin(&mut self, now_ms: u64, op: Admin) -> Result<Vec<Output>, AdminError> {
        let mut out = Vec::new();
        self.run_timers(now_ms, &mut out);
        match op {
            Admin::AddHome(setup) => self.add_home(now_ms, setup, &mut out)?,
            Admin::PairDoor { home, door } => self.pair_door(now_ms, &home, door, &mut out)?,
            Admin::OptIn { home, carrier } => {
                let h = self.home_slot(&home)?;
                let home = &mut self.homes[h as usize];
                if !home.carriers.contains(&carrier) {
                    if home.carriers.len() >= MAX_CARRIERS_PER_HOME {
                        return Err(AdminError::Limit {
                            what: "carriers per home",
                            limit: MAX_CARRIERS_PER_HOME,
                        });
                    }
                    home.carriers.push(carrier.clone());
                }
                self.audit(
                    now_ms,
                    Some(h),
                    AuditKind::Registry(RegistryChange::CarrierOptedIn(carrier)),
                    &mut out,
                );
            }
            Admin::AddDriver { driver, carrier } => {
                if self.drivers.contains_key(&driver) {
                    return Err(AdminError::Exists(format!("driver {driver}")));
                }
                if self.drivers.len() >= self.cfg.max_drivers {
                    return Err(AdminError::Limit {
                        what: "drivers",
                        limit: self.cfg.max_drivers,
                    });
                }
                self.drivers.insert(
                    driver,
                    Driver {
                        carrier: carrier.clone(),
                        blocked: false,
                        suspended: false,
                    },
                );
                self.audit(
                    now_ms,
                    None,
                    AuditKind::Registry(RegistryChange::DriverAdded { driver, carrier }),
                    &mut out,
                );
            }
            Admin::SetDriverBlocked { driver, blocked } => {
                let d = self
                    .drivers
                    .get_mut(&driver)
                    .ok_or(AdminError::UnknownDriver)?;
                d.blocked = blocked;
                if !blocked {
                    d.suspended = false;
                }
                self.audit(
                    now_ms,
                    None,
                    AuditKind::Registry(RegistryChange::DriverBlocked { driver, blocked }),
                    &mut out,
                );
            }
            Admin::SetPolicy { home, policy } => {
                let h = self.home_slot(&home)?;
                check_windows(&policy.windows)?;
                let change = RegistryChange::PolicySet {
                    vacation: policy.vacation,
                    garage_only: policy.garage_only,
                    live_approval: policy.live_approval,
                    windows: policy
                        .windows
                        .iter()
                        .map(|w| (w.start_min, w.end_min))
                        .collect(),
                };
                self.homes[h as usize].policy = policy;
                self.audit(now_ms, Some(h), AuditKind::Registry(change), &mut out);
            }
            Admin::Schedule(setup) => self.schedule_delivery(now_ms, setup, &mut out)?,
            Admin::Cancel { home, delivery } => {
                self.cancel_delivery(now_ms, &home, &delivery, &mut out)?
            }
            Admin::Revoke { home, item } => self.revoke(now_ms, &home, item, &mut out)?,
        }
        Ok(out)
    }

    fn home_slot(&self, home: &Id) -> Result<u32, AdminError> {
        self.home_ix
            .get(home)
            .copied()
            .ok_or_else(|| AdminError::UnknownHome(home.clone()))
    }

    fn add_home(
        &mut self,
        now_ms: u64,
        s: HomeSetup,
        out: &mut Vec<Output>,
    ) -> Result<(), AdminError> {
        if self.home_ix.contains_key(&s.home) {
            return Err(AdminError::Exists(format!("home {}", s.home)));
        }
        if self.homes.len() >= self.cfg.max_homes {
            return Err(AdminError::Limit {
                what: "homes",
                limit: self.cfg.max_homes,
            });
        }
        let cert = grant::verify_cert(&s.cert, &s.root, &s.home, now_ms)
            .map_err(|_| AdminError::BadCert("not valid for this home and root key now"))?;
        if cert.issuer != s.issuer.public() {
            return Err(AdminError::BadCert("it delegates to another issuing key"));
        }
        check_windows(&s.policy.windows)?;
        let slot = self.homes.len() as u32;
        let change = RegistryChange::HomeAdded {
            root: s.root,
            issuer: s.issuer.public(),
        };
        self.home_ix.insert(s.home.clone(), slot);
        self.homes.push(Home {
            id: s.home,
            root: s.root,
            issuer_seed: s.issuer.seed(),
            cert: s.cert,
            policy: s.policy,
            carriers: Vec::new(),
            revoked_drivers: Vec::new(),
            epoch: 0,
            revocations: VecDeque::new(),
            locks: Vec::new(),
        });
        self.audit(now_ms, Some(slot), AuditKind::Registry(change), out);
        Ok(())
    }

    fn pair_door(
        &mut self,
        now_ms: u64,
        home: &Id,
        door: DoorSetup,
        out: &mut Vec<Output>,
    ) -> Result<(), AdminError> {
        let h = self.home_slot(home)?;
        for id in [&door.lock, &door.camera] {
            if self.dev_ix.contains_key(id) {
                return Err(AdminError::Exists(format!("device {id}")));
            }
        }
        if door.lock == door.camera {
            return Err(AdminError::Exists(format!("device {}", door.camera)));
        }
        if self.homes[h as usize].locks.len() >= MAX_DOORS_PER_HOME {
            return Err(AdminError::Limit {
                what: "doors per home",
                limit: MAX_DOORS_PER_HOME,
            });
        }
        if self.devices.len() + 2 > self.cfg.max_devices {
            return Err(AdminError::Limit {
                what: "devices",
                limit: self.cfg.max_devices,
            });
        }
        let lock = self.devices.len() as u32;
        let camera = lock + 1;
        self.devices.push(Device {
            id: door.lock.clone(),
            home: h,
            peer: camera,
            key: door.lock_key,
            sup: Supervision::default(),
            side: Side::Lock(LockSide {
                kind_garage: door.kind == DoorKind::Garage,
                ..LockSide::default()
            }),
        });
        self.devices.push(Device {
            id: door.camera.clone(),
            home: h,
            peer: lock,
            key: door.camera_key,
            sup: Supervision::default(),
            side: Side::Camera(CameraSide::default()),
        });
        self.dev_ix.insert(door.lock.clone(), lock);
        self.dev_ix.insert(door.camera.clone(), camera);
        self.homes[h as usize].locks.push(lock);
        // A device is supervised from pairing on: silence from the start is silence.
        for s in [lock, camera] {
            self.wheel
                .schedule(Timer::Silence(s), now_ms + self.cfg.idle_silent_ms);
        }
        let change = RegistryChange::DoorPaired {
            lock: door.lock,
            lock_key: door.lock_key,
            camera: door.camera,
            camera_key: door.camera_key,
            garage: door.kind == DoorKind::Garage,
        };
        self.audit(now_ms, Some(h), AuditKind::Registry(change), out);
        Ok(())
    }

    fn schedule_delivery(
        &mut self,
        now_ms: u64,
        s: DeliverySetup,
        out: &mut Vec<Output>,
    ) -> Result<(), AdminError> {
        let h = self.home_slot(&s.home)?;
        if self.delivery_ix.contains_key(&s.delivery) || self.finished.contains_key(&s.delivery) {
            return Err(AdminError::Exists(format!("delivery {}", s.delivery)));
        }
        let lock = match self.dev_ix.get(&s.lock) {
            Some(&l)
                if self.devices[l as usize].home == h
                    && self.devices[l as usize].lock().is_some() =>
            {
                l
            }
            _ => return Err(AdminError::UnknownLock(s.lock.clone())),
        };
        if s.not_after_ms <= s.not_before_ms {
            return Err(AdminError::EmptyWindow);
        }
        if self.delivery_ix.len() >= self.cfg.max_deliveries_in_flight {
            return Err(AdminError::Limit {
                what: "deliveries in flight",
                limit: self.cfg.max_deliveries_in_flight,
            });
        }
        let d = Delivery {
            id: s.delivery.clone(),
            home: h,
            lock,
            carrier: s.carrier.clone(),
            driver: s.driver,
            not_before_ms: s.not_before_ms,
            not_after_ms: s.not_after_ms,
            max_open_ms: s.max_open_ms.unwrap_or(self.cfg.default_max_open_ms),
            phase: Phase::Scheduled,
            alarms: Vec::new(),
            run: None,
        };
        let slot = match self.free_deliveries.pop() {
            Some(slot) => {
                self.deliveries[slot as usize] = Some(d);
                slot
            }
            None => {
                self.deliveries.push(Some(d));
                (self.deliveries.len() - 1) as u32
            }
        };
        self.delivery_ix.insert(s.delivery.clone(), slot);
        self.wheel.schedule(Timer::Expire(slot), s.not_after_ms);
        let change = RegistryChange::DeliveryScheduled {
            delivery: s.delivery,
            lock: s.lock,
            carrier: s.carrier,
            driver: s.driver,
            not_before_ms: s.not_before_ms,
            not_after_ms: s.not_after_ms,
        };
        self.audit(now_ms, Some(h), AuditKind::Registry(change), out);
        Ok(())
    }

    fn revoke(
        &mut self,
        now_ms: u64,
        home: &Id,
        item: Revoked,
        out: &mut Vec<Output>,
    ) -> Result<(), AdminError> {
        let h = self.home_slot(home)?;
        let home = &mut self.homes[h as usize];
        match &item {
            Revoked::Carrier(c) => home.carriers.retain(|x| x != c),
            Revoked::Driver(k) => {
                if !home.revoked_drivers.contains(k) {
                    if home.revoked_drivers.len() >= MAX_REVOKED_DRIVERS_PER_HOME {
                        return Err(AdminError::Limit {
                            what: "revoked drivers per home",
                            limit: MAX_REVOKED_DRIVERS_PER_HOME,
                        });
                    }
                    home.revoked_drivers.push(*k);
                }
            }
            Revoked::Grant(_) => {}
        }
        home.epoch += 1;
        let rev = Revocation {
            home: home.id.clone(),
            epoch: home.epoch,
            issued_ms: now_ms,
            items: vec![item.clone()],
        };
        let env = Envelope::signed(Body::Revocation(rev), &self.server_key);
        if home.revocations.len() >= MAX_REVOCATION_HISTORY {
            home.revocations.pop_front();
        }
        home.revocations.push_back((home.epoch, env.clone()));
        let epoch = home.epoch;
        for &l in &home.locks {
            out.push(Output::Send {
                device: self.devices[l as usize].id.clone(),
                envelope: env.clone(),
            });
        }
        self.audit(
            now_ms,
            Some(h),
            AuditKind::Revocation {
                epoch,
                items: vec![item],
            },
            out,
        );
        Ok(())
    }

    // ----- deadlines -----

    pub(crate) fn run_timers(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let mut fired = std::mem::take(&mut self.fired);
        fired.clear();
        self.wheel.expire(now_ms, &mut fired);
        for t in fired.drain(..) {
            self.on_timer(now_ms, t, out);
        }
        self.fired = fired;
    }

    fn on_timer(&mut self, now_ms: u64, t: Timer, out: &mut Vec<Output>) {
        match t {
            Timer::Silence(s) => self.on_silence(now_ms, s, out),
            Timer::Actuation(l) => {
                let home = self.devices[l as usize].home;
                let delivery = self.authorised_delivery(l);
                if guard::enabled(Guard::ConfirmedActuation) {
                    self.raise(
                        now_ms,
                        Raise {
                            kind: AlarmKind::UnconfirmedActuation,
                            home,
                            device: Some(l),
                            delivery,
                            detail: format!(
                                "Lock {} did not confirm the bolt's movement within {} ms.",
                                self.devices[l as usize].id, self.cfg.confirm_ms
                            ),
                        },
                        out,
                    );
                }
            }
            Timer::Relock(l) => {
                let home = self.devices[l as usize].home;
                if guard::enabled(Guard::LockSupervision) {
                    self.raise(
                        now_ms,
                        Raise {
                            kind: AlarmKind::NotRelocked,
                            home,
                            device: Some(l),
                            delivery: self.authorised_delivery(l),
                            detail: format!(
                                "The door at lock {} closed and no report shows the bolt thrown within {} ms.",
                                self.devices[l as usize].id, self.cfg.confirm_ms
                            ),
                        },
                        out,
                    );
                }
            }
            Timer::MaxOpen(l) => {
                let home = self.devices[l as usize].home;
                if guard::enabled(Guard::ConfirmedActuation) {
                    self.raise(
                        now_ms,
                        Raise {
                            kind: AlarmKind::UnconfirmedActuation,
                            home,
                            device: Some(l),
                            delivery: self.authorised_delivery(l),
                            detail: format!(
                                "Lock {} did not report a relock by the end of the maximum open time.",
                                self.devices[l as usize].id
                            ),
                        },
                        out,
                    );
                }
            }
            Timer::Scene(l) => {
                let disagree = self.devices[l as usize]
                    .lock()
                    .is_some_and(|x| x.scene_disagree);
                if disagree && guard::enabled(Guard::SceneCheck) {
                    let home = self.devices[l as usize].home;
                    let peer = self.devices[l as usize].peer;
                    self.raise(
                        now_ms,
                        Raise {
                            kind: AlarmKind::SceneMismatch,
                            home,
                            device: Some(l),
                            delivery: self.authorised_delivery(l),
                            detail: format!(
                                "The door sensor of lock {} and camera {} disagree about the door: the state is unknown.",
                                self.devices[l as usize].id, self.devices[peer as usize].id
                            ),
                        },
                        out,
                    );
                }
            }
            Timer::Request(r) => self.on_request_deadline(now_ms, r, out),
            Timer::Egress(d) => self.on_egress_deadline(now_ms, d, out),
            Timer::Watch(d) => self.finish(now_ms, d, out),
            Timer::Expire(d) => self.on_window_end(now_ms, d, out),
            Timer::Resend(id) => {
                if let Some(a) = self.alarms.get_mut(&id) {
                    a.notice.sent += 1;
                    out.push(Output::Alarm(a.notice.clone()));
                    self.wheel
                        .schedule(Timer::Resend(id), now_ms + self.cfg.alarm_resend_ms);
                }
            }
        }
    }

    fn on_silence(&mut self, now_ms: u64, s: u32, out: &mut Vec<Output>) {
        let dev = &self.devices[s as usize];
        let home = dev.home;
        let is_lock = dev.lock().is_some();
        let last = dev.sup.last_rx_ms;
        let (kind, delivery, guard_ok, detail) = if is_lock {
            match self.open_cycle(s) {
                Some(d) => (
                    AlarmKind::LockSilent,
                    Some(d),
                    guard::enabled(Guard::LockSupervision),
                    format!(
                        "Lock {} stopped reporting during an entry: its state is unknown.",
                        dev.id
                    ),
                ),
                None => (
                    AlarmKind::DeviceSilent,
                    None,
                    guard::enabled(Guard::LockSupervision),
                    format!(
                        "Lock {} has not reported for {} s.",
                        dev.id,
                        self.cfg.idle_silent_ms / 1000
                    ),
                ),
            }
        } else {
            match self.witnessed_entry(dev.peer) {
                Some(d) => (
                    AlarmKind::WitnessLost,
                    Some(d),
                    guard::enabled(Guard::WitnessSupervision),
                    format!(
                        "Camera {} sent no valid proof for {} ms during an entry: the entry is unwitnessed.",
                        dev.id, self.cfg.witness_gap_ms
                    ),
                ),
                None => (
                    AlarmKind::DeviceSilent,
                    None,
                    guard::enabled(Guard::WitnessSupervision),
                    format!("Camera {} has not sent a proof for {} s.", dev.id, self.cfg.idle_silent_ms / 1000),
                ),
            }
        };
        if delivery.is_some() {
            // Keep watching at the idle pace, so a camera or lock that never comes back is
            // still reported silent later; the entry alarm is not repeated.
            self.wheel.schedule(
                Timer::Silence(s),
                last.max(now_ms) + self.cfg.idle_silent_ms,
            );
        }
        if !guard_ok {
            return;
        }
        if kind == AlarmKind::WitnessLost {
            if let Some(d) = delivery.and_then(|d| self.deliveries[d as usize].as_ref()) {
                let driver = d.driver;
                if let Some(dr) = self.drivers.get_mut(&driver) {
                    // I4: the driver gets no further grants until the homeowner clears it.
                    dr.suspended = true;
                }
            }
        }
        self.raise(
            now_ms,
            Raise {
                kind,
                home,
                device: Some(s),
                delivery,
                detail,
            },
            out,
        );
    }

    // ----- alarms -----

    /// Raises an alarm unless the same kind is already raised for the same entry (or, outside
    /// entries, is open for the same device).
    pub(crate) fn raise(&mut self, now_ms: u64, r: Raise, out: &mut Vec<Output>) {
        self.raise_with(now_ms, r, None, out);
    }

    /// [`Control::raise`] resting on `evidence`, or (when `None`) on the newest message of the
    /// device the alarm names.
    pub(crate) fn raise_with(
        &mut self,
        now_ms: u64,
        r: Raise,
        evidence: Option<Evidence>,
        out: &mut Vec<Output>,
    ) {
        let key = (
            r.kind,
            r.home,
            r.device.unwrap_or(NONE),
            r.delivery.unwrap_or(NONE),
        );
        if let Some(d) = r
            .delivery
            .and_then(|d| self.deliveries[d as usize].as_ref())
        {
            if d.alarms.iter().any(|(_, k)| *k == r.kind) {
                return;
            }
        } else if self.alarm_keys.contains(&key) {
            return;
        }
        let id = self.next_alarm;
        self.next_alarm += 1;
        let mut detail = r.detail;
        if detail.len() > MAX_TEXT_BYTES {
            let mut cut = MAX_TEXT_BYTES;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let alarm = Alarm {
            id,
            home: self.homes[r.home as usize].id.clone(),
            kind: r.kind,
            raised_ms: now_ms,
            device: r.device.map(|d| self.devices[d as usize].id.clone()),
            evidence: None,
            detail,
        };
        let evidence = evidence.or_else(|| r.device.and_then(|d| self.evidence_of(d)));
        let notice = AlarmNotice {
            alarm: alarm.clone(),
            evidence: evidence.clone(),
            action: advice(r.kind),
            sent: 1,
        };
        if let Some(d) = r
            .delivery
            .and_then(|d| self.deliveries[d as usize].as_mut())
        {
            // Bounded without a limit of its own: one alarm per kind per delivery.
            d.alarms.push((id, r.kind));
        }
        self.audit(
            now_ms,
            Some(r.home),
            AuditKind::AlarmRaised { alarm, evidence },
            out,
        );
        out.push(Output::Alarm(notice.clone()));
        // Past the limit the alarm is still shown and recorded once; only its re-sending is
        // given up, so a flood cannot exhaust memory.
        if self.alarms.len() < self.cfg.max_open_alarms {
            self.alarm_keys.insert(key);
            self.alarms.insert(id, OpenAlarm { notice, key });
            self.wheel
                .schedule(Timer::Resend(id), now_ms + self.cfg.alarm_resend_ms);
        }
    }

    /// The server could not make its record durable (I8): raises `StorageFailure` for every
    /// home, once per home until it is acknowledged, and re-sends it every `alarm_resend_ms`
    /// like every other alarm (I14). Its own audit record may not become durable either; the
    /// alarm is shown all the same.
    pub fn storage_failure(&mut self, now_ms: u64, detail: &str) -> Vec<Output> {
        let mut out = Vec::new();
        self.run_timers(now_ms, &mut out);
        for home in 0..self.homes.len() as u32 {
            self.raise(
                now_ms,
                Raise {
                    kind: AlarmKind::StorageFailure,
                    home,
                    device: None,
                    delivery: None,
                    detail: detail.to_owned(),
                },
                &mut out,
            );
        }
        out
    }

    fn on_ack(&mut self, now_ms: u64, id: u64, out: &mut Vec<Output>) {
        if let Some(a) = self.alarms.remove(&id) {
            self.alarm_keys.remove(&a.key);
            self.wheel.cancel(&Timer::Resend(id));
            let home = self.home_ix.get(&a.notice.alarm.home).copied();
            self.audit(now_ms, home, AuditKind::AlarmAcked { id }, out);
        }
    }

    /// The newest message a device's view rests on.
    pub(crate) fn evidence_of(&self, d: u32) -> Option<Evidence> {
        let dev = &self.devices[d as usize];
        let seen = match &dev.side {
            Side::Lock(l) => l.report.as_ref().map(|r| &r.seen),
            Side::Camera(c) => c.proof.as_ref().map(|p| &p.seen),
        }?;
        Some(Evidence {
            device: dev.id.clone(),
            seq: seen.seq,
            digest: seen.digest,
        })
    }

    pub(crate) fn audit(
        &self,
        now_ms: u64,
        home: Option<u32>,
        what: AuditKind,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Audit(AuditEvent {
            at_ms: now_ms,
            home: home.map(|h| self.homes[h as usize].id.clone()),
            what,
        }));
    }

    // ----- where a door stands -----

    /// The delivery holding lock `l` once its unlock is authorised, until it finishes.
    pub(crate) fn authorised_delivery(&self, l: u32) -> Option<u32> {
        let d = self.devices[l as usize].lock()?.active?;
        match self.deliveries[d as usize].as_ref()?.phase {
            Phase::Scheduled | Phase::AtDoor => None,
            _ => Some(d),
        }
    }

    /// The delivery whose entry the camera of lock `l` must witness at the entry pace (I4):
    /// from the authorisation until the egress is witnessed.
    pub(crate) fn witnessed_entry(&self, l: u32) -> Option<u32> {
        let d = self.devices[l as usize].lock()?.active?;
        match self.deliveries[d as usize].as_ref()?.phase {
            Phase::Unlocking | Phase::Entry | Phase::Relocked => Some(d),
            _ => None,
        }
    }

    /// The delivery whose open cycle lock `l` is in (I12): from its unlock report to its
    /// relock report.
    pub(crate) fn open_cycle(&self, l: u32) -> Option<u32> {
        let d = self.devices[l as usize].lock()?.active?;
        match self.deliveries[d as usize].as_ref()?.phase {
            Phase::Entry => Some(d),
            _ => None,
        }
    }

    /// Moves a device's silence deadline to match its current pace.
    pub(crate) fn resupervise(&mut self, s: u32) {
        let dev = &self.devices[s as usize];
        let fast = match &dev.side {
            Side::Lock(_) => self.open_cycle(s).is_some(),
            Side::Camera(_) => self.witnessed_entry(dev.peer).is_some(),
        };
        let base = match &dev.side {
            Side::Lock(l) => l.report.as_ref().map(|r| r.seen.rx_ms),
            Side::Camera(c) => c
                .proof
                .as_ref()
                .filter(|_| c.receipt_ok)
                .map(|p| p.seen.rx_ms),
        };
        let Some(base) = base else { return };
        let gap = if fast {
            self.cfg.witness_gap_ms
        } else {
            self.cfg.idle_silent_ms
        };
        self.wheel.schedule(Timer::Silence(s), base + gap);
    }

    pub(crate) fn set_phase(&mut self, now_ms: u64, d: u32, phase: Phase, out: &mut Vec<Output>) {
        let Some(del) = self.deliveries[d as usize].as_mut() else {
            return;
        };
        if del.phase == phase {
            return;
        }
        del.phase = phase;
        let (id, home) = (del.id.clone(), del.home);
        self.audit(
            now_ms,
            Some(home),
            AuditKind::Phase {
                delivery: id,
                phase,
            },
            out,
        );
    }

    /// Ends a delivery: Done without alarms, Incident with them. Frees the lock.
    pub(crate) fn finish(&mut self, now_ms: u64, d: u32, out: &mut Vec<Output>) {
        let Some(del) = self.deliveries[d as usize].as_ref() else {
            return;
        };
        let phase = if del.alarms.is_empty() {
            Phase::Done
        } else {
            Phase::Incident
        };
        self.end(now_ms, d, phase, out);
    }

    /// Ends delivery `delivery` of `home` as `Cancelled`, unless somebody may be let in for
    /// it already (authorised, or a request awaiting its approval or witness).
    fn cancel_delivery(
        &mut self,
        now_ms: u64,
        home: &Id,
        delivery: &Id,
        out: &mut Vec<Output>,
    ) -> Result<(), AdminError> {
        let h = self.home_slot(home)?;
        let found = self
            .delivery_ix
            .get(delivery)
            .copied()
            .and_then(|d| Some((d, self.deliveries[d as usize].as_ref()?)))
            .filter(|(_, del)| del.home == h);
        let Some((d, del)) = found else {
            return Err(AdminError::UnknownDelivery(delivery.clone()));
        };
        if self.letting_in(d, del).is_some() {
            return Err(AdminError::EntryUnderWay(delivery.clone()));
        }
        self.end(now_ms, d, Phase::Cancelled, out);
        Ok(())
    }

    /// How far delivery `d` is on its way to letting somebody in: `None` before any request,
    /// `Some(false)` while a request awaits its approval or witness (the lock is reserved
    /// for it), `Some(true)` once authorised.
    fn letting_in(&self, d: u32, del: &Delivery) -> Option<bool> {
        if del.run.is_some() || !matches!(del.phase, Phase::Scheduled | Phase::AtDoor) {
            Some(true)
        } else if self.devices[del.lock as usize]
            .lock()
            .is_some_and(|l| l.active == Some(d))
        {
            Some(false)
        } else {
            None
        }
    }

    /// Delivery `d`'s window ended. Without an unlock it is over (Expired), so that missed
    /// deliveries do not pile up against `max_deliveries_in_flight`; a request still waiting
    /// for its approval or witness is given until its own deadline (checked again every
    /// second); an entry under way ends by its own course.
    fn on_window_end(&mut self, now_ms: u64, d: u32, out: &mut Vec<Output>) {
        let Some(del) = self.deliveries[d as usize].as_ref() else {
            return;
        };
        match self.letting_in(d, del) {
            None => self.end(now_ms, d, Phase::Expired, out),
            Some(false) => self.wheel.schedule(Timer::Expire(d), now_ms + 1_000),
            Some(true) => {}
        }
    }

    /// Ends delivery `d` in the finished `phase`: records it, frees its slot and its lock,
    /// and keeps its outcome among the recently finished.
    pub(crate) fn end(&mut self, now_ms: u64, d: u32, phase: Phase, out: &mut Vec<Output>) {
        self.set_phase(now_ms, d, phase, out);
        let Some(del) = self.deliveries[d as usize].take() else {
            return;
        };
        self.free_deliveries.push(d);
        self.delivery_ix.remove(&del.id);
        for t in [Timer::Egress(d), Timer::Watch(d), Timer::Expire(d)] {
            self.wheel.cancel(&t);
        }
        let l = del.lock;
        self.release_lock(l, d);
        if self.finished_order.len() >= self.cfg.max_finished_deliveries {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
        self.finished_order.push_back(del.id.clone());
        self.finished.insert(
            del.id.clone(),
            DeliveryView {
                delivery: del.id,
                phase,
                alarms: del.alarms.iter().map(|a| a.0).collect(),
                alarm_kinds: del.alarms.iter().map(|a| a.1).collect(),
            },
        );
    }

    /// Frees lock `l` from delivery `d` and returns both devices to the idle pace.
    pub(crate) fn release_lock(&mut self, l: u32, d: u32) {
        let peer = self.devices[l as usize].peer;
        if let Some(ls) = self.devices[l as usize].lock_mut() {
            if ls.active == Some(d) {
                ls.active = None;
                ls.unlocking_since = None;
            }
        }
        for t in [Timer::Actuation(l), Timer::Relock(l), Timer::MaxOpen(l)] {
            self.wheel.cancel(&t);
        }
        self.histories.remove(&peer);
        self.resupervise(l);
        self.resupervise(peer);
    }

    // ----- queries -----

    /// What is shown for `home` at `now_ms` (I5), or `None` for an unknown home.
    pub fn state(&self, home: &Id, now_ms: u64) -> Option<HomeState> {
        let h = *self.home_ix.get(home)?;
        let home = &self.homes[h as usize];
        let doors = home
            .locks
            .iter()
            .map(|&l| self.door_state(l, now_ms))
            .collect();
        let open_alarms = self
            .alarms
            .iter()
            .filter(|(_, a)| a.notice.alarm.home == home.id)
            .map(|(id, _)| *id)
            .collect();
        Some(HomeState {
            home: home.id.clone(),
            at_ms: now_ms,
            epoch: home.epoch,
            doors,
            open_alarms,
        })
    }

    fn door_state(&self, l: u32, now_ms: u64) -> DoorState {
        let lock_dev = &self.devices[l as usize];
        let cam_dev = &self.devices[lock_dev.peer as usize];
        let ls = lock_dev.lock().expect("door slots are locks");
        let cs = cam_dev.camera().expect("a lock's peer is its camera");
        let truthful = guard::enabled(Guard::TruthfulState);
        // The lock reports at the entry pace only during its open cycle (I12); before and
        // after it, at the idle pace, so the idle bound applies (the relock report is not
        // "stale" 1 s after the relock).
        let lock_fresh = if self.open_cycle(l).is_some() {
            self.cfg.lock_report_fresh_entry_ms
        } else {
            self.cfg.lock_report_fresh_idle_ms
        };
        let cam_fresh = if self.witnessed_entry(l).is_some() {
            self.cfg.witness_gap_ms
        } else {
            self.cfg.lock_report_fresh_idle_ms
        };
        let contradicted = truthful && ls.scene_disagree;
        // During an entry the door's state rests on two devices: the lock's report and the
        // camera watching the door (I4, I5). With the witness silent past its gap, what the
        // lock alone reports is unproved, so lock and door show Unknown until it is back.
        let unwitnessed = truthful
            && self.witnessed_entry(l).is_some()
            && cs
                .proof
                .as_ref()
                .is_none_or(|p| now_ms.saturating_sub(p.seen.rx_ms) > self.cfg.witness_gap_ms);

        let (lock, door) = match &ls.report {
            None => (unknown_view(None), unknown_view(None)),
            Some(r) => {
                let age = now_ms.saturating_sub(r.seen.rx_ms);
                let ev = Evidence {
                    device: lock_dev.id.clone(),
                    seq: r.seen.seq,
                    digest: r.seen.digest,
                };
                let reported = match (r.bolt, r.door) {
                    (Bolt::Thrown, Door::Closed) => LockValue::Locked,
                    (Bolt::Thrown, Door::Open) => LockValue::BoltThrownDoorOpen,
                    (Bolt::Retracted, _) => LockValue::Unlocked,
                    (Bolt::Moving, _) => LockValue::Moving,
                    (Bolt::Jammed, _) => LockValue::Jammed,
                };
                let door_v = match r.door {
                    Door::Closed => DoorValue::Closed,
                    Door::Open => DoorValue::Open,
                };
                let stale = truthful && age > lock_fresh;
                let lock_value = match ls.unlocking_since {
                    // Authorised and not confirmed: "unlocking" until confirm_ms, then Unknown
                    // (never the state the command asked for).
                    Some(t) if truthful && now_ms <= t + self.cfg.confirm_ms => {
                        Shown::Known(LockValue::Unlocking)
                    }
                    Some(_) if truthful => Shown::Unknown {
                        last: Some(reported),
                        age_ms: Some(age),
                    },
                    _ if stale || contradicted || unwitnessed => Shown::Unknown {
                        last: Some(reported),
                        age_ms: Some(age),
                    },
                    _ => Shown::Known(reported),
                };
                let door_value = if stale || contradicted || unwitnessed {
                    Shown::Unknown {
                        last: Some(door_v),
                        age_ms: Some(age),
                    }
                } else {
                    Shown::Known(door_v)
                };
                (
                    View {
                        value: lock_value,
                        evidence: Some(ev.clone()),
                        age_ms: Some(age),
                    },
                    View {
                        value: door_value,
                        evidence: Some(ev),
                        age_ms: Some(age),
                    },
                )
            }
        };
        let camera = match &cs.proof {
            None => unknown_view(None),
            Some(p) => {
                let age = now_ms.saturating_sub(p.seen.rx_ms);
                let v = if p.recording {
                    CameraValue::Recording {
                        seq: p.seen.seq,
                        head: cs.chain.head,
                    }
                } else {
                    CameraValue::NotRecording
                };
                View {
                    value: if truthful && age > cam_fresh {
                        Shown::Unknown {
                            last: Some(v),
                            age_ms: Some(age),
                        }
                    } else {
                        Shown::Known(v)
                    },
                    evidence: Some(Evidence {
                        device: cam_dev.id.clone(),
                        seq: p.seen.seq,
                        digest: p.seen.digest,
                    }),
                    age_ms: Some(age),
                }
            }
        };
        let delivery = ls
            .active
            .and_then(|d| self.deliveries[d as usize].as_ref())
            .map(|d| (d.id.clone(), d.phase));
        DoorState {
            lock_id: lock_dev.id.clone(),
            camera_id: cam_dev.id.clone(),
            lock,
            door,
            camera,
            delivery,
        }
    }

    /// A delivery's phase and alarms, in flight or recently finished.
    pub fn delivery(&self, id: &Id) -> Option<DeliveryView> {
        if let Some(&d) = self.delivery_ix.get(id) {
            let d = self.deliveries[d as usize].as_ref()?;
            return Some(DeliveryView {
                delivery: d.id.clone(),
                phase: d.phase,
                alarms: d.alarms.iter().map(|a| a.0).collect(),
                alarm_kinds: d.alarms.iter().map(|a| a.1).collect(),
            });
        }
        self.finished.get(id).cloned()
    }

    /// Alarms raised and not yet acknowledged, oldest first.
    pub fn open_alarms(&self) -> impl Iterator<Item = &AlarmNotice> {
        self.alarms.values().map(|a| &a.notice)
    }

    /// The revocation epoch of a home.
    pub fn epoch(&self, home: &Id) -> Option<u64> {
        self.home_ix
            .get(home)
            .map(|&h| self.homes[h as usize].epoch)
    }

    /// A paired device's home and long-term key: for the shell to check what the device
    /// sends outside the broker (footage uploads, which the core never sees).
    pub fn device_key(&self, device: &Id) -> Option<(Id, PubKey)> {
        let d = &self.devices[*self.dev_ix.get(device)? as usize];
        Some((self.homes[d.home as usize].id.clone(), d.key))
    }

    /// Whether `device` is a paired lock (the shell acknowledges a lock's reports).
    pub fn is_lock(&self, device: &Id) -> bool {
        self.dev_ix
            .get(device)
            .is_some_and(|&d| self.devices[d as usize].lock().is_some())
    }

    /// Number of deadlines scheduled (for capacity planning and tests).
    pub fn deadlines(&self) -> usize {
        self.wheel.len()
    }
}

fn unknown_view<T>(age: Option<u64>) -> View<T> {
    View {
        value: Shown::Unknown {
            last: None,
            age_ms: age,
        },
        evidence: None,
        age_ms: age,
    }
}

fn check_windows(windows: &[WeeklyWindow]) -> Result<(), AdminError> {
    if windows.len() > MAX_WINDOWS_PER_HOME {
        return Err(AdminError::Limit {
            what: "windows per home",
            limit: MAX_WINDOWS_PER_HOME,
        });
    }
    for w in windows {
        if w.start_min >= w.end_min || w.end_min > MINUTES_PER_WEEK {
            return Err(AdminError::BadWindow {
                start_min: w.start_min,
                end_min: w.end_min,
            });
        }
    }
    Ok(())
}

/// What the homeowner should do about an alarm of this kind.
pub fn advice(kind: AlarmKind) -> &'static str {
    use AlarmKind::*;
    match kind {
        WitnessLost => "Check the door now (live view or in person); the camera stopped proving it records. No further entry is allowed for this driver.",
        LockSilent => "The lock stopped reporting mid-entry: check the door in person; do not trust the last shown state.",
        UnconfirmedActuation => "The bolt did not confirm its movement: check the door in person and that the bolt is thrown.",
        FrozenFootage => "The camera's footage repeats itself: check the camera and its network; treat the entry as unwitnessed.",
        LoopedFootage => "The camera's footage replays earlier frames: check the camera and its network; treat the entry as unwitnessed.",
        BlindedCamera => "The camera sees nothing (covered or blinded): check the camera.",
        SceneMismatch => "The door sensor and the camera disagree: check the door and the sensor (a magnet can fool it).",
        ForgedReport => "Someone sent messages the paired devices did not sign: check the network; the messages were ignored.",
        ClockSkew => "A device's clock is off: check its time source; its messages were ignored.",
        BoltJammed => "The bolt is jammed: check the lock in person.",
        DoorHeldOpen => "The door is open past the allowed time: close it and check who is there.",
        ForcedOpen => "The door opened while locked: check the door now and call for help if needed.",
        ActivityAfterEntry => "Someone is in the entry zone after the entry ended: check the live view now.",
        MoreInThanOut => "More people went in than came out: check the house now.",
        StreamTampered => "A device's message stream was replayed, cut or forked: check the network; those messages were ignored.",
        DeviceSilent => "A device stopped reporting: check its power and network.",
        StorageFailure => "The server could not record: entries are refused until storage works again.",
        LowBattery => "Replace the lock's batteries: it refuses to unlock without charge for a relock.",
        NotRelocked => "The door is closed but the bolt is not confirmed thrown: lock the door and check the lock.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-device state the server keeps, without the wheel's entry (counted by the
    /// wheel), the id index and the identifier's heap bytes. Guards against growth; the
    /// figures are in ARCHITECTURE.md.
    #[test]
    fn per_device_state_is_small() {
        let device = std::mem::size_of::<Device>();
        let sup = std::mem::size_of::<Supervision>();
        let lock = std::mem::size_of::<LockSide>();
        let cam = std::mem::size_of::<CameraSide>();
        println!("Device {device} B (Supervision {sup} B, LockSide {lock} B, CameraSide {cam} B)");
        // 32 B of each are the running head of the device's message chain, against which
        // its signed checkpoints are checked.
        assert!(sup <= 120, "Supervision is {sup} bytes");
        assert!(device <= 312, "Device is {device} bytes");
    }
}
