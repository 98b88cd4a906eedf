//! One home, one seed, one delivery (or, for the home-day, a [`Shape`] with several): the real
//! lock, camera and control cores, their virtual hardware and the network between them, driven
//! by a single-threaded event loop in true time.
//!
//! The world holds the physical truth (bolt, door angle, people, sensor magnet, lens, power)
//! and derives every device's inputs from it; it never asks a core what happened, it looks.

use std::collections::{BTreeMap, VecDeque};

use doorward_camera::testkit::interpolate;
use doorward_camera::{Camera, CameraConfig, CameraState, Frame, Person, Renderer, Scene};
use doorward_control::{
    Admin, AuditKind, Config, Control, DeliverySetup, DoorKind, DoorSetup, EntryDecision,
    EntryRequest, HomePolicy, HomeSetup, Input as CIn, LockValue, Output as COut, Shown,
};
use doorward_lock::testkit::{Kit, WALL_AT_MONO_ZERO_MS};
use doorward_lock::{BoltCommand, Input as LIn, Lock, LockState, Output as LOut, Sensors};
use doorward_proto::grant::{self, GrantSpec, Purpose};
use doorward_proto::session::Initiator;
use doorward_proto::{
    AlarmKind, Body, Bolt, CameraReceipt, DenyReason, Digest, Door, Envelope, GrantId, Id,
    IssuerCert, KeyPair, LockEvent, LockReport, Observations, Revoked, Signed, UnlockCommand,
    UnlockContext, UnlockNonce, WitnessAttestation, WitnessRequest,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::attack::{Capability, Forgery, Signal};
use crate::net::{Fate, Link, LinkId, Net, LINKS};
use crate::scenario::{Hook, Scenario};

/// True time the run lasts, ms.
pub const RUN_MS: u64 = 45_000;
/// Server wall time at true time zero (the kit's certificates are valid around it).
pub const WALL0_MS: u64 = WALL_AT_MONO_ZERO_MS + 3_600_000;
/// Camera frame period, ms (8 frames per second).
pub const FRAME_MS: u64 = 125;
/// Outside the watch spans of a [`Shape`], the one frame rendered for each idle proof is
/// captured this long before the proof is due (within the camera's `recording_timeout_ms`,
/// so the proof says "recording"), ms.
pub const IDLE_FRAME_LEAD_MS: u64 = FRAME_MS;
/// The door sensor reads open past this angle, degrees.
pub const DOOR_SENSOR_DEG: f32 = 2.0;
/// The server pushes the shown state and a heartbeat to the live view this often, ms.
pub const HEARTBEAT_MS: u64 = 250;
/// The live view says "connection lost" after this long without a heartbeat, ms (I14).
pub const LIVE_LOST_MS: u64 = 2_000;
/// Maximum open time of the delivery's grant, ms.
pub const MAX_OPEN_MS: u64 = 20_000;
/// When the driver arrives, ms.
pub const ARRIVE_MS: u64 = 2_000;
/// How long the driver (or an attacker) keeps trying a shut door, ms.
pub const TRY_DOOR_MS: u64 = 8_000;
/// Most true frames kept for freeze and loop attacks.
pub const MAX_RECENT_FRAMES: usize = 16;
/// Most events the loop handles in one run before it gives up (a core that never settles).
pub const MAX_EVENTS_PER_RUN: u64 = 2_000_000;

/// The shape of a run: how long it lasts, when drivers arrive, and when the camera's frames are
/// rendered and the homeowner's live view is open.
#[derive(Clone, Debug)]
pub struct Shape {
    /// True time the run lasts, ms.
    pub run_ms: u64,
    /// When each delivery's driver arrives (one scheduled delivery each), ms, in order.
    pub arrivals: Vec<u64>,
    /// Spans of true time `[from, to)` with rendered frames at 8 fps and the live view open;
    /// `None`: the whole run. Outside them (unless the camera is still in entry mode, which
    /// only a picture can end) the lab renders one frame [`IDLE_FRAME_LEAD_MS`] before each
    /// idle proof instead of 8 per second — the real camera sees all of them; a proof without
    /// a recent frame says "not recording", and the server rightly calls such a camera
    /// silent — and the homeowner's app is closed (alarms still reach it, as notifications).
    pub watch: Option<Vec<(u64, u64)>>,
    /// Overrides the camera's `idle_checkpoint_interval_ms` (the default: its own default).
    pub idle_checkpoint_ms: Option<u64>,
}

impl Shape {
    /// One delivery: [`RUN_MS`] of true time, the driver arriving at [`ARRIVE_MS`], frames and
    /// the live view throughout.
    pub fn delivery() -> Shape {
        Shape {
            run_ms: RUN_MS,
            arrivals: vec![ARRIVE_MS],
            watch: None,
            idle_checkpoint_ms: None,
        }
    }
}

/// A device clock: a reading at true time zero, a drift, and an optional forward jump.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Reading at true time zero, ms.
    pub offset_ms: u64,
    /// Drift, parts per million (|ppm| < 10^6).
    pub ppm: i64,
    /// True time of a jump.
    pub jump_at_ms: u64,
    /// Size of the jump, ms.
    pub jump_ms: u64,
}

impl Clock {
    fn new(offset_ms: u64, ppm: i64) -> Self {
        Clock {
            offset_ms,
            ppm,
            jump_at_ms: u64::MAX,
            jump_ms: 0,
        }
    }

    /// The reading at true time `t`.
    pub fn read(&self, t: u64) -> u64 {
        let drift = (t as i64).saturating_mul(self.ppm) / 1_000_000;
        let mut v = (self.offset_ms as i64 + t as i64 + drift).max(0) as u64;
        if t >= self.jump_at_ms {
            v += self.jump_ms;
        }
        v
    }

    /// The first true time at which the reading is at least `d`.
    pub fn true_at(&self, d: u64) -> u64 {
        if self.read(0) >= d {
            return 0;
        }
        let (mut lo, mut hi) = (0u64, 1u64 << 42);
        if self.read(hi) < d {
            return hi;
        }
        while hi - lo > 1 {
            let m = lo + (hi - lo) / 2;
            if self.read(m) >= d {
                hi = m;
            } else {
                lo = m;
            }
        }
        hi
    }
}

/// Who asked the lock for a nonce over the local channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The delivery's driver.
    Driver,
    /// The attacker at the door.
    Attacker,
}

/// A door opening, from the first degree to fully closed.
#[derive(Clone, Debug)]
pub struct DoorSession {
    /// When it started to open.
    pub opened_ms: u64,
    /// When it was fully closed again.
    pub closed_ms: Option<u64>,
    /// The lock's cycle grant when it opened.
    pub grant: Option<GrantId>,
    /// Another session already opened under the same grant.
    pub reused: bool,
    /// Who opened it.
    pub by: Who,
}

/// Someone stepping over the threshold into the house.
#[derive(Clone, Copy, Debug)]
pub struct Crossing {
    /// When.
    pub at_ms: u64,
    /// Which person (0 is the driver).
    pub person: usize,
}

/// What the run observed from outside the cores.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// When the first attack step ran.
    pub attack_start_ms: Option<u64>,
    /// What the customer saw, when (true time).
    pub seen: Vec<(u64, Signal)>,
    /// Alarms the server raised (first sending), when.
    pub raised: Vec<(u64, AlarmKind)>,
    /// When the homeowner's live connection was cut, and until when.
    pub live_cut: Option<(u64, u64)>,
    /// Door openings.
    pub sessions: Vec<DoorSession>,
    /// Entries over the threshold.
    pub crossings: Vec<Crossing>,
    /// True-time spans of genuine footage whose proofs reached the server.
    pub witnessed: Vec<(u64, u64)>,
    /// Grants the server's record says it authorised.
    pub authorised: Vec<GrantId>,
    /// Grants the server's record shows the lock confirmed unlocked.
    pub confirmed: Vec<GrantId>,
    /// Why the lock refused, in order.
    pub lock_denials: Vec<DenyReason>,
    /// Why the server refused, in order.
    pub server_denials: Vec<DenyReason>,
    /// Time shown "locked" while not locked, beyond the display lag, ms.
    pub false_locked_ms: u64,
    /// Audit records written.
    pub audit_events: u64,
    /// Frames rendered.
    pub frames: u64,
    /// Camera proofs that reached the server (copies included).
    pub proofs_received: u64,
    /// Messages from the lock's identity that reached the server (reports, time requests).
    pub lock_messages_received: u64,
    /// Periodic reports the lock sent (a doubled copy counts once).
    pub lock_periodic_sent: u64,
    /// Signed checkpoints the camera sent.
    pub checkpoints_sent: u64,
    /// Human-readable trace, when asked for.
    pub trace: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FeedMode {
    Live,
    Frozen,
    Loop { frames: usize },
    Covered,
    Blinded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DStep {
    Arrive,
    AtDoor,
    TryDoor,
    WalkIn,
    WalkOut,
    WalkOutNow,
    Close,
    CloseDoor,
    Done,
    Reenter,
}

#[allow(clippy::large_enum_variant)]
enum Ev {
    Server(CIn),
    ServerDevice {
        from: Id,
        bytes: Vec<u8>,
        cover: Option<(u64, u64, bool)>,
        proof: Option<(u64, Digest)>,
    },
    Lock(LIn),
    LockLocal(Who),
    CamEnv(Envelope),
    Nonce(Who, Signed<UnlockNonce>),
    Decision(EntryDecision),
    HomeAlarm {
        id: u64,
        kind: AlarmKind,
    },
    HomeHeartbeat {
        locked: bool,
    },
    Motor {
        to: Bolt,
    },
    Disk {
        gen: u64,
        version: u64,
        state: LockState,
    },
    DoorSense,
    Driver(DStep),
    Step(usize),
    Heartbeat,
    ViewCheck,
    LockPowerOn,
    ServerUp,
    AttackerTry {
        until_ms: u64,
    },
}

#[derive(Clone, Debug)]
struct Walker {
    lane: u8,
    keys: Vec<(u64, f32)>,
}

struct Driver {
    nonce_deadline_ms: u64,
    try_until_ms: u64,
    reenter: bool,
    prop: bool,
    stay: bool,
}

struct Forging {
    kind: Forgery,
    nonce: Option<Signed<UnlockNonce>>,
}

/// One home under one scenario and one seed.
pub struct World {
    sc: &'static Scenario,
    seed: u64,
    t: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    net: Net,
    rng_lock: ChaCha20Rng,
    rng_act: ChaCha20Rng,
    lock_clock: Clock,
    cam_clock: Clock,
    server_clock: Clock,
    motor_ms: u64,
    disk_ms: u64,
    run_ms: u64,
    watch: Option<Vec<(u64, u64)>>,
    // server
    control: Control,
    server_up: bool,
    home: Id,
    delivery: Id,
    deliveries: Vec<(u64, Id)>,
    // lock and its hardware
    kit: Kit,
    lock: Lock,
    lock_on: bool,
    lock_gen: u64,
    disk: Option<LockState>,
    nonce_waiters: VecDeque<Who>,
    bolt: Bolt,
    jam_relock: bool,
    jam_hit: bool,
    jam_bolt: bool,
    magnet: bool,
    door_keys: Vec<(u64, f32)>,
    door_sensor: Door,
    // camera
    camera: Camera,
    cam_on: bool,
    cam_state: CameraState,
    renderer: Renderer,
    scene: Scene,
    frame: Frame,
    recent: VecDeque<Frame>,
    loop_frames: Vec<Frame>,
    loop_ix: usize,
    feed: FeedMode,
    next_frame_ms: u64,
    idle_frame_for: Option<u64>,
    seg_first_ms: Option<u64>,
    seg_true: bool,
    initiator: Option<Initiator>,
    // people
    walkers: Vec<Walker>,
    driver: Driver,
    // the attacker's loot
    captured_cmd: Option<Vec<u8>>,
    captured_req: Option<EntryRequest>,
    captured_time: Option<Vec<u8>>,
    captured_grant: Option<(GrantId, Vec<u8>)>,
    captured_locked: Option<Vec<u8>>,
    attestations: Vec<Signed<WitnessAttestation>>,
    server_receipt: Option<(u64, Digest, u64)>,
    forging: Vec<Forging>,
    fired: Vec<bool>,
    // the homeowner's view
    view_hb_ms: u64,
    view_open: bool,
    view_connected: bool,
    view_locked: bool,
    view_seen: Vec<u64>,
    truth_locked: bool,
    truth_since_ms: u64,
    lag_ms: u64,
    last_tick: [u64; 3],
    trace: bool,
    /// What was observed.
    pub rec: Records,
}

fn id(s: &str) -> Id {
    Id::new(s).expect("the lab's identifiers are valid")
}

fn rng_for(seed: u64, stream: u64) -> ChaCha20Rng {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

fn range(rng: &mut ChaCha20Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

impl World {
    /// Builds the home for `sc` from `seed`: keys, clocks, links, devices booted, the
    /// delivery scheduled, and the scenario's timed steps queued.
    pub fn new(sc: &'static Scenario, seed: u64, trace: bool) -> World {
        World::shaped(sc, seed, trace, Shape::delivery())
    }

    /// Builds the home for `sc` from `seed` with the run's `shape`: one delivery scheduled
    /// per arrival.
    pub fn shaped(sc: &'static Scenario, seed: u64, trace: bool, shape: Shape) -> World {
        let mut rng_setup = rng_for(seed, 1);
        let kit = Kit::new(&mut rng_setup);
        let mut links = [Link::default(); LINKS];
        for l in LinkId::ALL {
            let (lo, hi) = match l {
                LinkId::CamUp | LinkId::CamDown | LinkId::LockUp | LinkId::LockDown => (5, 20),
                LinkId::CamLock => (2, 5),
                LinkId::DriverUp | LinkId::DriverDown => (30, 80),
                LinkId::LocalUp | LinkId::LocalDown => (10, 30),
                LinkId::LiveDown | LinkId::LiveUp => (20, 60),
                LinkId::Attacker => (5, 5),
            };
            let link = &mut links[l as usize];
            link.delay_ms = range(&mut rng_setup, lo, hi);
            if l.via_broker() {
                link.jitter_ms = range(&mut rng_setup, 0, 10);
                if sc.noise {
                    link.jitter_ms = 50;
                    link.loss_ppm = 10_000;
                }
            }
        }
        let stall = if sc.noise {
            let which = [
                LinkId::CamUp,
                LinkId::CamDown,
                LinkId::LockUp,
                LinkId::LockDown,
            ][range(&mut rng_setup, 0, 3) as usize];
            Some((which, range(&mut rng_setup, 4_000, 16_000)))
        } else {
            None
        };
        let net = Net::new(links, rng_for(seed, 2));
        let ppm = |r: &mut ChaCha20Rng| range(r, 0, 200) as i64 - 100;
        let lock_clock = Clock::new(range(&mut rng_setup, 1_000, 1_000_000), ppm(&mut rng_setup));
        let cam_clock = Clock::new(range(&mut rng_setup, 1_000, 1_000_000), ppm(&mut rng_setup));
        let server_clock = Clock::new(WALL0_MS, ppm(&mut rng_setup) / 5);
        let motor_ms = range(&mut rng_setup, 80, 300);
        let disk_ms = range(&mut rng_setup, 2, 20);
        let scene_seed = rng_setup.next_u64();
        let mut ctl_seed = [0u8; 32];
        rng_setup.fill_bytes(&mut ctl_seed);

        let now_s = server_clock.read(0);
        let cfg = Config::default();
        let lag_ms = cfg.lock_report_fresh_entry_ms;
        let mut control = Control::new(cfg, kit.server.clone(), ctl_seed, now_s);
        let home = kit.home.clone();
        let deliveries: Vec<(u64, Id)> = shape
            .arrivals
            .iter()
            .enumerate()
            .map(|(i, &a)| (a, id(&format!("delivery-{}", i + 1))))
            .collect();
        let delivery = deliveries
            .first()
            .map(|d| d.1.clone())
            .unwrap_or_else(|| id("delivery-1"));
        let mut ops = vec![
            Admin::AddHome(HomeSetup {
                home: home.clone(),
                root: kit.home_root.public(),
                issuer: kit.issuer.clone(),
                cert: kit.cert.clone(),
                policy: HomePolicy::default(),
            }),
            Admin::PairDoor {
                home: home.clone(),
                door: DoorSetup {
                    lock: kit.lock.clone(),
                    lock_key: kit.lock_key.public(),
                    camera: kit.camera_id.clone(),
                    camera_key: kit.camera.public(),
                    kind: DoorKind::Front,
                },
            },
            Admin::OptIn {
                home: home.clone(),
                carrier: kit.carrier.clone(),
            },
            Admin::AddDriver {
                driver: kit.driver.public(),
                carrier: kit.carrier.clone(),
            },
        ];
        for (arrive, d) in &deliveries {
            // The window opens a minute before the run's usual lead to the driver's arrival.
            let base = server_clock.read(arrive.saturating_sub(ARRIVE_MS));
            ops.push(Admin::Schedule(DeliverySetup {
                delivery: d.clone(),
                home: home.clone(),
                lock: kit.lock.clone(),
                carrier: kit.carrier.clone(),
                driver: kit.driver.public(),
                not_before_ms: base - 60_000,
                not_after_ms: base + 7_200_000,
                max_open_ms: Some(MAX_OPEN_MS),
            }));
        }
        let mut setup_out = Vec::new();
        for op in ops {
            setup_out.extend(
                control
                    .admin(now_s, op)
                    .expect("the lab's registry set-up is valid"),
            );
        }
        let sensors = Sensors {
            bolt: Bolt::Thrown,
            door: Door::Closed,
            battery_pct: 100,
        };
        let (lock, lock_out) = Lock::boot(
            kit.config(),
            LockState::default(),
            lock_clock.read(0),
            sensors,
        );
        let mut cam_cfg = CameraConfig::new(
            kit.camera_id.clone(),
            kit.camera.clone(),
            kit.lock.clone(),
            kit.lock_key.public(),
        );
        if let Some(ms) = shape.idle_checkpoint_ms {
            cam_cfg.idle_checkpoint_interval_ms = ms;
        }
        let cam_state = CameraState::default();
        let camera = Camera::new(cam_cfg, cam_state, cam_clock.read(0));
        let mut w = World {
            sc,
            seed,
            t: 0,
            seq: 0,
            queue: BTreeMap::new(),
            net,
            rng_lock: rng_for(seed, 3),
            rng_act: rng_for(seed, 4),
            lock_clock,
            cam_clock,
            server_clock,
            motor_ms,
            disk_ms,
            run_ms: shape.run_ms,
            watch: shape.watch,
            control,
            server_up: true,
            home,
            delivery,
            deliveries,
            kit,
            lock,
            lock_on: true,
            lock_gen: 0,
            disk: None,
            nonce_waiters: VecDeque::new(),
            bolt: Bolt::Thrown,
            jam_relock: false,
            jam_hit: false,
            jam_bolt: false,
            magnet: false,
            door_keys: vec![(0, 0.0)],
            door_sensor: Door::Closed,
            camera,
            cam_on: true,
            cam_state,
            renderer: Renderer::new(scene_seed),
            scene: Scene::new(scene_seed, 0),
            frame: Frame::black(),
            recent: VecDeque::new(),
            loop_frames: Vec::new(),
            loop_ix: 0,
            feed: FeedMode::Live,
            next_frame_ms: 0,
            idle_frame_for: None,
            seg_first_ms: None,
            seg_true: true,
            initiator: None,
            walkers: vec![Walker {
                lane: 1,
                keys: vec![(0, -1.5)],
            }],
            driver: Driver {
                nonce_deadline_ms: 0,
                try_until_ms: 0,
                reenter: false,
                prop: false,
                stay: false,
            },
            captured_cmd: None,
            captured_req: None,
            captured_time: None,
            captured_grant: None,
            captured_locked: None,
            attestations: Vec::new(),
            server_receipt: None,
            forging: Vec::new(),
            fired: vec![false; sc.steps.len()],
            view_hb_ms: 0,
            view_open: true,
            view_connected: true,
            view_locked: false,
            view_seen: Vec::new(),
            truth_locked: true,
            truth_since_ms: 0,
            lag_ms,
            last_tick: [u64::MAX; 3],
            trace,
            rec: Records::default(),
        };
        w.server_out(setup_out);
        w.lock_out(lock_out);
        // The camera agent opens its session with the server.
        let (init, hello) = Initiator::start(w.kit.camera_id.clone(), &mut w.rng_act);
        w.initiator = Some(init);
        let env = Envelope::signed(Body::SessionHello(hello), &w.kit.camera);
        w.cam_send(env, None);
        if let Some((link, at)) = stall {
            w.net.stall(link, at, 300);
        }
        for (i, s) in sc.steps.iter().enumerate() {
            if let Hook::At(ms) = s.hook {
                w.fired[i] = true;
                w.at(ms + s.after_ms, Ev::Step(i));
            }
        }
        for a in shape.arrivals {
            w.at(a, Ev::Driver(DStep::Arrive));
        }
        w.at(0, Ev::Heartbeat);
        w
    }
}

impl World {
    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t.max(self.t), self.seq), ev);
    }

    fn note(&mut self, s: impl FnOnce() -> String) {
        if self.trace {
            let line = format!("{:>6} {}", self.t, s());
            self.rec.trace.push(line);
        }
    }

    fn send(&mut self, link: LinkId, qos1: bool, ev: Ev) {
        match self.net.send(link, self.t, qos1) {
            Fate::At(t) => self.at(t, ev),
            Fate::Lost => {}
        }
    }

    fn now_lock(&self) -> u64 {
        self.lock_clock.read(self.t)
    }

    fn now_cam(&self) -> u64 {
        self.cam_clock.read(self.t)
    }

    fn now_server(&self) -> u64 {
        self.server_clock.read(self.t)
    }

    // ----- the loop ---------------------------------------------------------------------

    /// Runs to the end of its [`Shape`] and returns what was observed.
    pub fn run(mut self) -> Records {
        let mut events = 0u64;
        loop {
            events += 1;
            if events > MAX_EVENTS_PER_RUN {
                let dl = (
                    self.lock.next_deadline_ms(),
                    self.now_lock(),
                    self.camera.next_deadline_ms(),
                    self.now_cam(),
                    self.control.next_deadline_ms(),
                    self.now_server(),
                    self.queue.keys().next().copied(),
                    self.next_frame_ms,
                );
                self.note(|| format!("event budget exhausted {dl:?}"));
                break;
            }
            let q = self.queue.keys().next().map(|k| k.0);
            let now = self.t;
            let due = |last: u64, t: u64| {
                let t = t.max(now);
                if last != u64::MAX && t <= last {
                    last + 1
                } else {
                    t
                }
            };
            let lock_t = self.lock_on.then(|| {
                due(
                    self.last_tick[0],
                    self.lock_clock.true_at(self.lock.next_deadline_ms()),
                )
            });
            let cam_t = self.cam_on.then(|| {
                due(
                    self.last_tick[1],
                    self.cam_clock.true_at(self.camera.next_deadline_ms()),
                )
            });
            let srv_t = if self.server_up {
                self.control
                    .next_deadline_ms()
                    .map(|d| due(self.last_tick[2], self.server_clock.true_at(d)))
            } else {
                None
            };
            let frame_t = if self.cam_on {
                self.frame_due(now)
            } else {
                None
            };
            let next = [q, frame_t, lock_t, cam_t, srv_t]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX)
                .max(self.t);
            if next > self.run_ms {
                let end = self.run_ms;
                self.advance(end);
                break;
            }
            self.advance(next);
            if q == Some(next) {
                let key = *self.queue.keys().next().expect("just seen");
                let ev = self.queue.remove(&key).expect("just seen");
                self.event(ev);
            } else if frame_t == Some(next) {
                self.next_frame_ms = if self.watch.is_some() {
                    self.idle_frame_for = Some(self.camera.next_deadline_ms());
                    next + FRAME_MS
                } else {
                    self.next_frame_ms + FRAME_MS
                };
                self.frame_tick();
            } else if lock_t == Some(next) {
                self.last_tick[0] = next;
                self.lock_in(LIn::Tick);
            } else if cam_t == Some(next) {
                self.last_tick[1] = next;
                let out = self
                    .camera
                    .handle(self.now_cam(), doorward_camera::Input::Tick);
                self.cam_out(out);
            } else {
                self.last_tick[2] = next;
                self.server_in(CIn::Tick);
            }
            self.update_truth();
        }
        self.rec
    }

    /// When the next frame is captured: every [`FRAME_MS`] inside the watch spans and while
    /// the camera is in entry mode; otherwise one frame before each idle proof (see
    /// [`Shape::watch`]).
    fn frame_due(&self, now: u64) -> Option<u64> {
        let t = self.next_frame_ms.max(now);
        let Some(spans) = &self.watch else {
            return Some(t);
        };
        if self.camera.mode() == doorward_camera::camera::Mode::Entry
            || spans.iter().any(|&(a, b)| a <= t && t < b)
        {
            return Some(t);
        }
        let due = self.camera.next_deadline_ms();
        let idle = (self.idle_frame_for != Some(due)).then(|| {
            self.cam_clock
                .true_at(due.saturating_sub(IDLE_FRAME_LEAD_MS))
                .max(t)
        });
        let window = spans.iter().map(|&(a, _)| a).filter(|&a| a > t).min();
        idle.into_iter().chain(window).min()
    }

    /// Whether the homeowner's live view is open at `t`, and if not, when it opens next.
    fn view_open_at(&self, t: u64) -> Result<(), Option<u64>> {
        let Some(spans) = &self.watch else {
            return Ok(());
        };
        if spans.iter().any(|&(a, b)| a <= t && t < b) {
            return Ok(());
        }
        Err(spans.iter().map(|&(a, _)| a).filter(|&a| a > t).min())
    }

    /// Moves true time to `t`, accounting what the customer was shown meanwhile.
    fn advance(&mut self, t: u64) {
        if t > self.t {
            let shown_locked = self.view_connected && self.view_locked;
            if shown_locked && !self.truth_locked {
                let from = self.t.max(self.truth_since_ms + self.lag_ms);
                if t > from {
                    self.rec.false_locked_ms += t - from;
                }
            }
            self.t = t;
        }
    }

    fn update_truth(&mut self) {
        let locked = self.bolt == Bolt::Thrown && self.door_angle(self.t) <= 0.0;
        if locked != self.truth_locked {
            self.truth_locked = locked;
            self.truth_since_ms = self.t;
        }
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Server(input) => self.server_in(input),
            Ev::ServerDevice {
                from,
                bytes,
                cover,
                proof,
            } => {
                if !self.server_up {
                    return;
                }
                if let Some((a, b, true)) = cover {
                    self.rec.witnessed.push((a, b));
                }
                if proof.is_some() {
                    self.rec.proofs_received += 1;
                }
                if from == self.kit.lock {
                    self.rec.lock_messages_received += 1;
                }
                if let Some((seq, head)) = proof {
                    // A redundant copy is no newer receipt.
                    if self.server_receipt.is_none_or(|(s, _, _)| seq > s) {
                        self.server_receipt = Some((seq, head, self.now_server()));
                    }
                }
                self.server_in(CIn::Device { from, bytes });
            }
            Ev::Lock(input) => self.lock_in(input),
            Ev::LockLocal(who) => {
                if self.lock_on {
                    self.nonce_waiters.push_back(who);
                    self.lock_in(LIn::NonceRequest);
                }
            }
            Ev::CamEnv(env) => self.cam_env(env),
            Ev::Nonce(who, n) => self.on_nonce(who, n),
            Ev::Decision(d) => {
                if let EntryDecision::Denied { reason, .. } = &d {
                    self.rec.server_denials.push(*reason);
                }
                self.note(|| format!("driver told {d:?}"));
            }
            Ev::HomeAlarm { id, kind } => {
                if !self.view_seen.contains(&id) {
                    self.view_seen.push(id);
                    self.rec.seen.push((self.t, Signal::Alarm(kind)));
                    self.note(|| format!("customer sees alarm {kind:?}"));
                    self.send(LinkId::LiveUp, true, Ev::Server(CIn::AckAlarm { id }));
                }
            }
            Ev::HomeHeartbeat { locked } => {
                if !self.view_open {
                    return;
                }
                self.view_hb_ms = self.t;
                self.view_connected = true;
                self.view_locked = locked;
                self.at(self.t + LIVE_LOST_MS, Ev::ViewCheck);
            }
            Ev::ViewCheck => {
                if self.view_connected && self.t >= self.view_hb_ms + LIVE_LOST_MS {
                    self.view_connected = false;
                    self.rec.seen.push((self.t, Signal::ConnectionLost));
                    self.note(|| "customer sees connection lost".into());
                }
            }
            Ev::Motor { to } => {
                if to != Bolt::Jammed {
                    self.bolt = to;
                }
                self.note(|| format!("bolt sensor {to:?}"));
                self.lock_in(LIn::Bolt(to));
            }
            Ev::Disk {
                gen,
                version,
                state,
            } => {
                if gen == self.lock_gen && self.lock_on {
                    self.disk = Some(state);
                    self.lock_in(LIn::Persisted { version });
                }
            }
            Ev::DoorSense => self.door_sense(),
            Ev::Driver(step) => self.driver_step(step),
            Ev::Step(i) => self.attack(i),
            Ev::Heartbeat => {
                if let Err(reopen) = self.view_open_at(self.t) {
                    // The homeowner closed the app: nothing is shown, nothing is missed.
                    self.view_open = false;
                    self.view_connected = false;
                    if let Some(at) = reopen {
                        self.at(at, Ev::Heartbeat);
                    }
                    return;
                }
                self.view_open = true;
                if self.server_up {
                    let now = self.now_server();
                    let locked = self.control.state(&self.home, now).is_some_and(|s| {
                        s.doors
                            .first()
                            .is_some_and(|d| d.lock.value == Shown::Known(LockValue::Locked))
                    });
                    self.send(LinkId::LiveDown, true, Ev::HomeHeartbeat { locked });
                }
                self.at(self.t + HEARTBEAT_MS, Ev::Heartbeat);
            }
            Ev::LockPowerOn => self.lock_boot(),
            Ev::ServerUp => {
                self.server_up = true;
                self.note(|| "server restarts".into());
                self.server_in(CIn::Tick);
            }
            Ev::AttackerTry { until_ms } => {
                if !self.try_open(Who::Attacker) && self.t < until_ms {
                    self.at(self.t + 250, Ev::AttackerTry { until_ms });
                }
            }
        }
    }

    // ----- server ------------------------------------------------------------------------

    fn server_in(&mut self, input: CIn) {
        if !self.server_up {
            return;
        }
        let now = self.now_server();
        let out = self.control.handle(now, input);
        self.server_out(out);
    }

    fn server_out(&mut self, out: Vec<COut>) {
        for o in out {
            match o {
                COut::Send { device, envelope } => {
                    if device == self.kit.lock {
                        match &envelope.body {
                            Body::UnlockCommand(c) => {
                                self.captured_cmd = Some(envelope.to_bytes());
                                self.captured_grant = Some((c.context.body.grant, c.grant.clone()));
                            }
                            Body::TimeSync(_) if self.captured_time.is_none() => {
                                self.captured_time = Some(envelope.to_bytes());
                            }
                            _ => {}
                        }
                        let bytes = envelope.to_bytes();
                        self.send(LinkId::LockDown, true, Ev::Lock(LIn::Message(bytes)));
                    } else {
                        self.send(LinkId::CamDown, true, Ev::CamEnv(envelope));
                    }
                }
                COut::Alarm(n) => {
                    if n.sent == 1 {
                        self.rec.raised.push((self.t, n.alarm.kind));
                        self.note(|| {
                            format!("server raises {:?}: {}", n.alarm.kind, n.alarm.detail)
                        });
                    }
                    self.send(
                        LinkId::LiveDown,
                        true,
                        Ev::HomeAlarm {
                            id: n.alarm.id,
                            kind: n.alarm.kind,
                        },
                    );
                }
                COut::Decision(d) => self.send(LinkId::DriverDown, true, Ev::Decision(d)),
                COut::Audit(a) => {
                    self.rec.audit_events += 1;
                    match a.what {
                        AuditKind::Authorised { grant, .. } => self.rec.authorised.push(grant),
                        AuditKind::Accepted { envelope, .. } => {
                            if let Ok(env) = Envelope::decode(&envelope) {
                                if let Body::LockReport(r) = env.body {
                                    if let LockEvent::Unlocked(g) = r.event {
                                        self.rec.confirmed.push(g);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                COut::ApprovalRequest(_) => {}
            }
        }
    }

    // ----- lock --------------------------------------------------------------------------

    fn lock_in(&mut self, input: LIn) {
        if !self.lock_on {
            return;
        }
        let now = self.now_lock();
        let out = self.lock.handle(now, input, &mut self.rng_lock);
        self.lock_out(out);
    }

    fn lock_out(&mut self, out: Vec<LOut>) {
        for o in out {
            match o {
                LOut::LocalNonce(n) => {
                    let who = self.nonce_waiters.pop_front().unwrap_or(Who::Driver);
                    self.send(LinkId::LocalDown, true, Ev::Nonce(who, n));
                }
                LOut::Send(env) => {
                    let mut qos1 = true;
                    let bytes = env.to_bytes();
                    if let Body::LockReport(r) = &env.body {
                        if r.bolt == Bolt::Thrown && r.door == Door::Closed {
                            // What a broker keeps to replay later: an authentic "locked".
                            self.captured_locked = Some(bytes.clone());
                        }
                        qos1 = r.event != LockEvent::Periodic;
                        if !qos1 {
                            self.rec.lock_periodic_sent += 1;
                        }
                        if let LockEvent::Denied(d) = r.event {
                            self.rec.lock_denials.push(d);
                        }
                        if r.event != LockEvent::Periodic {
                            let (e, b, d) = (r.event.clone(), r.bolt, r.door);
                            self.note(|| format!("lock reports {e:?} bolt {b:?} door {d:?}"));
                        }
                    }
                    // A periodic report during an open cycle goes out twice, as the camera's
                    // entry proofs do (docs/PROTOCOL.md §13).
                    let copies = if !qos1 && self.lock.in_cycle() { 2 } else { 1 };
                    let from = self.kit.lock.clone();
                    for _ in 0..copies {
                        self.send(
                            LinkId::LockUp,
                            qos1,
                            Ev::ServerDevice {
                                from: from.clone(),
                                bytes: bytes.clone(),
                                cover: None,
                                proof: None,
                            },
                        );
                    }
                }
                LOut::Persist { version, state } => {
                    let gen = self.lock_gen;
                    self.at(
                        self.t + self.disk_ms,
                        Ev::Disk {
                            gen,
                            version,
                            state,
                        },
                    );
                }
                LOut::Actuate(cmd) => self.actuate(cmd),
                LOut::RevocationResync { .. } | LOut::Rejected(_) => {}
            }
        }
    }

    fn actuate(&mut self, cmd: BoltCommand) {
        self.note(|| format!("motor told {cmd:?}"));
        if self.jam_relock && cmd == BoltCommand::Throw {
            // The radio carrying the command is jammed: the bolt never hears it. The attack
            // takes effect (and its latency is measured) from the first command it swallows.
            if !self.jam_hit {
                self.jam_hit = true;
                self.rec.attack_start_ms = Some(self.t);
            }
            return;
        }
        if self.jam_bolt {
            self.at(self.t + self.motor_ms, Ev::Motor { to: Bolt::Jammed });
            return;
        }
        let to = match cmd {
            BoltCommand::Retract => Bolt::Retracted,
            BoltCommand::Throw => Bolt::Thrown,
        };
        if self.bolt != to {
            self.bolt = Bolt::Moving;
        }
        self.at(self.t + self.motor_ms, Ev::Motor { to });
    }

    fn lock_boot(&mut self) {
        self.lock_on = true;
        self.lock_gen += 1;
        self.last_tick[0] = u64::MAX;
        self.nonce_waiters.clear();
        let sensors = Sensors {
            bolt: self.bolt,
            door: self.door_sensor,
            battery_pct: 100,
        };
        let state = self.disk.clone().unwrap_or_default();
        let (lock, out) = Lock::boot(self.lock.config().clone(), state, self.now_lock(), sensors);
        self.lock = lock;
        self.note(|| "lock boots from its disk".into());
        self.lock_out(out);
    }

    // ----- door and people ---------------------------------------------------------------

    fn door_angle(&self, t: u64) -> f32 {
        interpolate(&self.door_keys, t).unwrap_or(0.0)
    }

    fn move_door(&mut self, to: f32, dur_ms: u64) {
        let from = self.door_angle(self.t);
        self.door_keys.retain(|k| k.0 < self.t);
        self.door_keys.push((self.t, from));
        self.door_keys.push((self.t + dur_ms, to));
        if from <= 0.0 && to > 0.0 {
            self.rec.sessions.push(DoorSession {
                opened_ms: self.t,
                closed_ms: None,
                grant: None,
                reused: false,
                by: Who::Driver,
            });
        }
        // The sensor flips where the leaf crosses its threshold, and the truth settles at
        // the end of the swing.
        let cross = if to > from {
            (DOOR_SENSOR_DEG - from) / (to - from)
        } else {
            (from - DOOR_SENSOR_DEG) / (from - to)
        };
        if (0.0..=1.0).contains(&cross) {
            let at = self.t + (cross * dur_ms as f32).ceil() as u64;
            self.at(at, Ev::DoorSense);
        }
        self.at(self.t + dur_ms, Ev::DoorSense);
    }

    fn door_sense(&mut self) {
        let angle = self.door_angle(self.t);
        if angle <= 0.0 {
            if let Some(s) = self.rec.sessions.last_mut() {
                if s.closed_ms.is_none() {
                    s.closed_ms = Some(self.t);
                }
            }
        }
        let reading = if self.magnet || angle <= DOOR_SENSOR_DEG {
            Door::Closed
        } else {
            Door::Open
        };
        if reading != self.door_sensor {
            self.door_sensor = reading;
            self.note(|| format!("door sensor {reading:?} at {angle:.1} deg"));
            self.lock_in(LIn::Door(reading));
        }
    }

    /// Pushes the door: it opens only if the bolt is really retracted.
    fn try_open(&mut self, who: Who) -> bool {
        if self.bolt != Bolt::Retracted || self.door_angle(self.t) > 0.0 {
            return false;
        }
        let grant = if self.lock_on {
            self.lock.cycle_grant()
        } else {
            None
        };
        self.move_door(80.0, 1_500);
        let reused = grant.is_some()
            && self
                .rec
                .sessions
                .iter()
                .rev()
                .skip(1)
                .any(|s| s.grant == grant);
        if let Some(s) = self.rec.sessions.last_mut() {
            s.grant = grant;
            s.reused = reused;
            s.by = who;
        }
        self.note(|| format!("{who:?} opens the door (grant {})", grant.is_some()));
        true
    }

    fn walk(&mut self, person: usize, keys: &[(u64, f32)]) {
        let t = self.t;
        let w = &mut self.walkers[person];
        let from = interpolate(&w.keys, t).unwrap_or(-1.5);
        w.keys.retain(|k| k.0 < t);
        w.keys.push((t, from));
        let mut prev = (t, from);
        for &(dt, p) in keys {
            let k = (t + dt, p);
            if prev.1 <= 0.0 && k.1 > 0.0 {
                let a = (0.0 - prev.1) / (k.1 - prev.1);
                let at_ms = prev.0 + (a * (k.0 - prev.0) as f32) as u64;
                self.rec.crossings.push(Crossing { at_ms, person });
            }
            self.walkers[person].keys.push(k);
            prev = k;
        }
    }

    fn hook(&mut self, h: Hook) {
        for i in 0..self.sc.steps.len() {
            let s = self.sc.steps[i];
            if !self.fired[i] && s.hook == h {
                self.fired[i] = true;
                self.at(self.t + s.after_ms, Ev::Step(i));
            }
        }
    }

    fn driver_step(&mut self, step: DStep) {
        match step {
            DStep::Arrive => {
                if let Some((_, d)) = self.deliveries.iter().rev().find(|(a, _)| *a <= self.t) {
                    self.delivery = d.clone();
                }
                self.walk(0, &[(2_000, -0.3)]);
                let delivery = self.delivery.clone();
                self.send(
                    LinkId::DriverUp,
                    true,
                    Ev::Server(CIn::DriverArrived { delivery }),
                );
                self.at(self.t + 2_000, Ev::Driver(DStep::AtDoor));
            }
            DStep::AtDoor => {
                self.hook(Hook::AtDoor);
                self.driver.nonce_deadline_ms = self.t + TRY_DOOR_MS;
                self.driver.try_until_ms = self.t + TRY_DOOR_MS;
                self.send(LinkId::LocalUp, true, Ev::LockLocal(Who::Driver));
                self.at(self.t + 500, Ev::Driver(DStep::TryDoor));
            }
            DStep::TryDoor => {
                if self.try_open(Who::Driver) {
                    self.hook(Hook::DoorOpened);
                    self.at(self.t + 1_500, Ev::Driver(DStep::WalkIn));
                } else if self.t < self.driver.try_until_ms {
                    self.at(self.t + 200, Ev::Driver(DStep::TryDoor));
                } else {
                    // Denied: the driver walks away.
                    self.note(|| "driver gives up".into());
                    self.walk(0, &[(1_200, -1.5)]);
                    self.at(self.t + 1_200, Ev::Driver(DStep::Done));
                }
            }
            DStep::WalkIn => {
                self.walk(0, &[(2_000, 0.6)]);
                self.at(self.t + 2_000, Ev::Driver(DStep::WalkOut));
            }
            DStep::WalkOut => {
                self.hook(Hook::Inside);
                // Drop-off; then steps tied to the walk out run before the driver moves.
                self.at(self.t + 3_000, Ev::Driver(DStep::WalkOutNow));
            }
            DStep::WalkOutNow => {
                self.hook(Hook::WalkingOut);
                self.at(self.t, Ev::Driver(DStep::Close));
            }
            DStep::Close => {
                if self.driver.stay {
                    // Closes the door from inside, lingers in view, then goes deeper in.
                    self.walk(0, &[(8_000, 0.6), (9_000, 1.0), (9_200, 1.5)]);
                    self.hook(Hook::DoorClosing);
                    self.move_door(0.0, 1_500);
                    self.at(self.t + 2_000, Ev::Driver(DStep::Done));
                    return;
                }
                self.walk(0, &[(3_000, -1.0), (3_400, -1.5)]);
                if self.driver.prop {
                    self.at(self.t + 3_400, Ev::Driver(DStep::Done));
                    return;
                }
                self.at(self.t + 3_000, Ev::Driver(DStep::CloseDoor));
            }
            DStep::CloseDoor => {
                self.hook(Hook::DoorClosing);
                self.move_door(0.0, 1_500);
                self.at(self.t + 1_900, Ev::Driver(DStep::Done));
            }
            DStep::Reenter => {
                // The 2017 driver comes back to the door left "unlocked" and pushes it.
                self.walk(0, &[(2_000, -0.3)]);
                self.driver.try_until_ms = self.t + 2_000 + 5_000;
                self.at(self.t + 2_000, Ev::Driver(DStep::TryDoor));
            }
            DStep::Done => {
                self.hook(Hook::EntryDone);
                if self.driver.reenter {
                    self.driver.reenter = false;
                    self.at(self.t + 3_000, Ev::Driver(DStep::Reenter));
                }
            }
        }
    }

    fn on_nonce(&mut self, who: Who, n: Signed<UnlockNonce>) {
        match who {
            Who::Driver => {
                if self.t > self.driver.nonce_deadline_ms {
                    return;
                }
                let sig = self.kit.driver_sig(&self.kit.driver, &n.body.nonce);
                let req = EntryRequest {
                    delivery: self.delivery.clone(),
                    driver: self.kit.driver.public(),
                    nonce: n,
                    driver_sig: sig,
                };
                if self.captured_req.is_none() {
                    self.captured_req = Some(req.clone());
                }
                self.send(LinkId::DriverUp, true, Ev::Server(CIn::EntryRequest(req)));
            }
            Who::Attacker => self.forge_with(n),
        }
    }
}

impl World {
    // ----- camera ------------------------------------------------------------------------

    fn frame_tick(&mut self) {
        let t = self.t;
        let now = self.now_cam();
        self.scene.time_ms = now;
        self.scene.door_angle_deg = self.door_angle(t);
        self.scene.people.clear();
        for w in &self.walkers {
            if let Some(p) = interpolate(&w.keys, t) {
                if (-1.0..=1.0).contains(&p) {
                    self.scene.people.push(Person {
                        position: p,
                        lane: w.lane,
                    });
                }
            }
        }
        let genuine = self.feed == FeedMode::Live;
        match self.feed {
            FeedMode::Live => {
                self.renderer.render(&self.scene, &mut self.frame);
                if self.recent.len() >= MAX_RECENT_FRAMES {
                    self.recent.pop_front();
                }
                self.recent.push_back(self.frame.clone());
            }
            FeedMode::Frozen => {
                if let Some(f) = self.recent.back() {
                    self.frame = f.clone();
                }
            }
            FeedMode::Loop { frames } => {
                let n = frames.min(self.loop_frames.len()).max(1);
                if let Some(f) = self.loop_frames.get(self.loop_ix % n) {
                    self.frame = f.clone();
                }
                self.loop_ix += 1;
            }
            FeedMode::Covered => {
                let seed = self.scene.seed;
                self.renderer.render_covered(seed, now, &mut self.frame);
            }
            FeedMode::Blinded => {
                let seed = self.scene.seed;
                self.renderer.render_blinded(seed, now, &mut self.frame);
            }
        }
        self.rec.frames += 1;
        if self.seg_first_ms.is_none() {
            self.seg_first_ms = Some(t);
            self.seg_true = true;
        }
        self.seg_true &= genuine;
        let out = self.camera.on_frame(now, &self.frame);
        self.cam_out(out);
    }

    fn cam_env(&mut self, env: Envelope) {
        if !self.cam_on || env.verify_sig(&self.kit.server.public()).is_err() {
            return;
        }
        match env.body {
            Body::WitnessRequest(req) => {
                let now = self.now_cam();
                let out = self
                    .camera
                    .handle(now, doorward_camera::Input::WitnessRequest(req));
                self.cam_out(out);
            }
            Body::SessionAccept(a) => {
                if let Some(init) = self.initiator.take() {
                    if let Ok(key) = init.finish(&a) {
                        let now = self.now_cam();
                        let out = self
                            .camera
                            .handle(now, doorward_camera::Input::Session(key));
                        self.cam_out(out);
                    }
                }
            }
            _ => {}
        }
    }

    fn cam_out(&mut self, out: Vec<doorward_camera::Output>) {
        for o in out {
            match o {
                doorward_camera::Output::Send(env) => {
                    let cover = match &env.body {
                        Body::CameraProof(_) => {
                            let first = self.seg_first_ms.take();
                            Some(match first {
                                Some(a) => (a, self.t, self.seg_true),
                                None => (self.t, self.t, false),
                            })
                        }
                        _ => None,
                    };
                    self.cam_send(env, cover);
                }
                doorward_camera::Output::Persist(s) => self.cam_state = s,
                doorward_camera::Output::Refused { reason, .. } => {
                    self.note(|| format!("camera refuses to attest: {reason:?}"));
                }
                doorward_camera::Output::Segment { .. } => {}
            }
        }
    }

    fn cam_send(&mut self, env: Envelope, cover: Option<(u64, u64, bool)>) {
        let mut qos1 = true;
        let mut proof = None;
        match &env.body {
            Body::CameraProof(p) => {
                qos1 = false;
                proof = Some((p.seq, p.head));
            }
            Body::Checkpoint(_) => {
                self.rec.checkpoints_sent += 1;
                let bytes = env.to_bytes();
                self.send(LinkId::CamLock, true, Ev::Lock(LIn::Message(bytes)));
            }
            Body::WitnessAttestation(a) => {
                self.attestations.push(a.clone());
                self.forge_attested(a.clone());
            }
            _ => {}
        }
        // During an entry a routine proof goes out twice (docs/PROTOCOL.md §13): one lost
        // message next to a benign stall would otherwise exhaust `witness_gap_ms`. The server
        // drops the identical copy, which can never move a supervision deadline.
        let copies =
            if proof.is_some() && self.camera.mode() == doorward_camera::camera::Mode::Entry {
                2
            } else {
                1
            };
        let from = self.kit.camera_id.clone();
        let bytes = env.to_bytes();
        for _ in 0..copies {
            self.send(
                LinkId::CamUp,
                qos1,
                Ev::ServerDevice {
                    from: from.clone(),
                    bytes: bytes.clone(),
                    cover,
                    proof,
                },
            );
        }
    }

    // ----- attacks ------------------------------------------------------------------------

    fn attack(&mut self, i: usize) {
        let cap = self.sc.steps[i].cap;
        if self.rec.attack_start_ms.is_none() {
            self.rec.attack_start_ms = Some(self.t);
        }
        self.note(|| format!("attack: {cap:?}"));
        let t = self.t;
        match cap {
            Capability::Deauth { for_ms } => {
                self.net.cut(LinkId::CamUp, t, for_ms);
                self.net.cut(LinkId::CamDown, t, for_ms);
                if self.sc.lock_via_camera {
                    self.net.cut(LinkId::LockUp, t, for_ms);
                    self.net.cut(LinkId::LockDown, t, for_ms);
                }
                // The complicit driver means to come back in.
                self.driver.reenter = true;
            }
            Capability::JamRelock => self.jam_relock = true,
            Capability::JamBolt => self.jam_bolt = true,
            Capability::Replay => {
                if let Some(b) = self.captured_cmd.clone() {
                    self.send(LinkId::Attacker, true, Ev::Lock(LIn::Message(b)));
                }
                if let Some(r) = self.captured_req.clone() {
                    self.send(LinkId::Attacker, true, Ev::Server(CIn::EntryRequest(r)));
                }
                self.at(
                    t + 500,
                    Ev::AttackerTry {
                        until_ms: t + TRY_DOOR_MS,
                    },
                );
            }
            Capability::Delay { for_ms } => {
                for l in [
                    LinkId::CamUp,
                    LinkId::CamDown,
                    LinkId::LockUp,
                    LinkId::LockDown,
                ] {
                    self.net.stall(l, t, for_ms);
                }
            }
            Capability::Inject => self.inject(),
            Capability::Forge(kind) => {
                self.forging.push(Forging { kind, nonce: None });
                self.send(LinkId::Attacker, true, Ev::LockLocal(Who::Attacker));
                self.at(
                    t + 1_000,
                    Ev::AttackerTry {
                        until_ms: t + TRY_DOOR_MS,
                    },
                );
            }
            Capability::PropDoor => self.driver.prop = true,
            Capability::Magnet => {
                self.magnet = true;
                self.driver.prop = true;
                self.door_sense();
            }
            Capability::CoverLens { blind } => {
                self.feed = if blind {
                    FeedMode::Blinded
                } else {
                    FeedMode::Covered
                };
            }
            Capability::FreezeFeed => self.feed = FeedMode::Frozen,
            Capability::LoopFeed { frames } => {
                let n = if frames > 0 {
                    frames as usize
                } else if self.seed % 2 == 1 {
                    2
                } else {
                    MAX_RECENT_FRAMES
                };
                let skip = self.recent.len().saturating_sub(n);
                self.loop_frames = self.recent.iter().skip(skip).cloned().collect();
                self.loop_ix = 0;
                self.feed = FeedMode::Loop { frames: n };
            }
            Capability::CameraPowerCut => self.cam_on = false,
            Capability::LockPowerCycle { off_ms } => {
                self.lock_on = false;
                self.lock_gen += 1;
                self.at(t + off_ms, Ev::LockPowerOn);
            }
            Capability::Follow => {
                self.walkers.push(Walker {
                    lane: 2,
                    keys: vec![(t, -1.5)],
                });
                let p = self.walkers.len() - 1;
                self.walk(
                    p,
                    &[
                        (500, -1.0),
                        (2_000, -0.3),
                        (4_000, 0.6),
                        (5_000, 1.0),
                        (5_200, 1.5),
                    ],
                );
            }
            Capability::StayInside => self.driver.stay = true,
            Capability::ClockJump { by_ms } => {
                self.lock_clock.jump_at_ms = t;
                self.lock_clock.jump_ms = by_ms;
                self.last_tick[0] = u64::MAX;
                if let Some(b) = self.captured_time.clone() {
                    self.send(LinkId::Attacker, true, Ev::Lock(LIn::Message(b)));
                }
            }
            Capability::ServerCrash { for_ms } => {
                self.server_up = false;
                self.at(t + for_ms, Ev::ServerUp);
            }
            Capability::CutCameraUplink => {
                self.net.cut(LinkId::CamUp, t, u64::MAX);
                self.net.cut(LinkId::CamDown, t, u64::MAX);
            }
            Capability::CutLiveLink { for_ms } => {
                self.rec.live_cut = Some((t, t.saturating_add(for_ms)));
                self.net.cut(LinkId::LiveDown, t, for_ms);
                self.net.cut(LinkId::LiveUp, t, for_ms);
            }
            Capability::BrokerReplay => {
                if let Some(bytes) = self.captured_locked.clone() {
                    let from = self.kit.lock.clone();
                    self.note(|| "broker replays an old \"locked\" report".into());
                    self.send(
                        LinkId::Attacker,
                        true,
                        Ev::ServerDevice {
                            from,
                            bytes,
                            cover: None,
                            proof: None,
                        },
                    );
                }
            }
            Capability::RevokeDriver => {
                if self.server_up {
                    let now = self.now_server();
                    let op = Admin::Revoke {
                        home: self.home.clone(),
                        item: Revoked::Driver(self.kit.driver.public()),
                    };
                    if let Ok(out) = self.control.admin(now, op) {
                        self.server_out(out);
                    }
                }
            }
        }
    }

    /// Forged device messages injected at the broker: a lock report signed by a wrong key and
    /// a camera proof signed by a wrong key.
    fn inject(&mut self) {
        let rogue = KeyPair::generate(&mut self.rng_act);
        let report = LockReport {
            lock: self.kit.lock.clone(),
            seq: 1_000_000,
            mono_ms: self.now_lock(),
            bolt: Bolt::Thrown,
            door: Door::Closed,
            battery_pct: 100,
            epoch: 0,
            event: LockEvent::Relocked(GrantId([0; 16])),
            cycle: None,
        };
        let env = Envelope::signed(Body::LockReport(report), &rogue);
        let from = self.kit.lock.clone();
        self.send(
            LinkId::Attacker,
            true,
            Ev::ServerDevice {
                from,
                bytes: env.to_bytes(),
                cover: None,
                proof: None,
            },
        );
        let proof = doorward_proto::CameraProof {
            camera: self.kit.camera_id.clone(),
            seq: 1_000_000,
            mono_ms: self.now_cam(),
            segment: Digest::ZERO,
            head: Digest::ZERO,
            recording: true,
            frames: vec![],
            obs: Observations::default(),
        };
        let env = Envelope::signed(Body::CameraProof(proof), &rogue);
        let from = self.kit.camera_id.clone();
        self.send(
            LinkId::Attacker,
            true,
            Ev::ServerDevice {
                from,
                bytes: env.to_bytes(),
                cover: None,
                proof: None,
            },
        );
    }

    /// The attacker got a nonce at the door: ask the camera to attest it (a request signed
    /// with the stolen server key, over the broker or the camera's local link), or build the
    /// command at once when the camera cannot be reached.
    fn forge_with(&mut self, n: Signed<UnlockNonce>) {
        let Some(ix) = self.forging.iter().position(|f| f.nonce.is_none()) else {
            return;
        };
        self.forging[ix].nonce = Some(n.clone());
        if self.forging[ix].kind == Forgery::DeadCamera {
            let att = self.attestations.last().cloned().unwrap_or_else(|| {
                // Nothing captured: the best the attacker has is a signature by a wrong key.
                let rogue = KeyPair::generate(&mut self.rng_act);
                Signed::sign(
                    WitnessAttestation {
                        camera: self.kit.camera_id.clone(),
                        lock: self.kit.lock.clone(),
                        nonce: n.body.nonce,
                        seq: 1,
                        head: Digest::ZERO,
                        recording: true,
                    },
                    &rogue,
                )
            });
            let f = self.forging.remove(ix);
            self.forge_send(f.kind, &n, att);
            return;
        }
        let req = WitnessRequest {
            camera: self.kit.camera_id.clone(),
            nonce: n,
        };
        let env = Envelope::signed(Body::WitnessRequest(req), &self.kit.server);
        self.send(LinkId::Attacker, true, Ev::CamEnv(env));
    }

    fn forge_attested(&mut self, a: Signed<WitnessAttestation>) {
        let Some(ix) = self.forging.iter().position(|f| {
            f.nonce
                .as_ref()
                .is_some_and(|n| n.body.nonce == a.body.nonce)
        }) else {
            return;
        };
        let f = self.forging.remove(ix);
        let n = f.nonce.expect("matched on it");
        self.forge_send(f.kind, &n, a);
    }

    fn forge_send(
        &mut self,
        kind: Forgery,
        n: &Signed<UnlockNonce>,
        att: Signed<WitnessAttestation>,
    ) {
        let server_ms = self.now_server();
        let kit = self.kit.clone();
        let mut gid = [0u8; 16];
        self.rng_act.fill_bytes(&mut gid);
        let mut spec = GrantSpec {
            id: GrantId(gid),
            home: kit.home.clone(),
            lock: kit.lock.clone(),
            purpose: Purpose::Delivery(self.delivery.clone()),
            carrier: Some(kit.carrier.clone()),
            driver: kit.driver.public(),
            not_before_ms: server_ms - 60_000,
            not_after_ms: server_ms + 3_600_000,
            max_open_ms: MAX_OPEN_MS,
        };
        let mut issuer = kit.issuer.clone();
        let mut cert = kit.cert.clone();
        let mut signer = kit.driver.clone();
        let mut epoch = n.body.epoch;
        let mut token = None;
        match kind {
            Forgery::SpentGrant => {
                if let Some((g, tok)) = self.captured_grant.clone() {
                    spec.id = g;
                    token = Some(tok);
                }
            }
            Forgery::OutsideWindow => {
                spec.not_before_ms = server_ms - 7_200_000;
                spec.not_after_ms = server_ms - 3_600_000;
            }
            Forgery::OtherLock => spec.lock = id("lock-2"),
            Forgery::OtherDriver => signer = KeyPair::generate(&mut self.rng_act),
            Forgery::CarrierMinted => {
                let carrier_key = KeyPair::generate(&mut self.rng_act);
                cert = Signed::sign(
                    IssuerCert {
                        home: kit.home.clone(),
                        issuer: carrier_key.public(),
                        not_before_ms: server_ms - 86_400_000,
                        not_after_ms: server_ms + 86_400_000,
                        serial: 2,
                    },
                    &carrier_key,
                );
                issuer = carrier_key;
            }
            Forgery::RevokedDriver | Forgery::DeadCamera | Forgery::StaleReceipt => {}
            Forgery::StaleEpoch => epoch = epoch.saturating_sub(1),
        }
        let token = match token {
            Some(t) => t,
            None => match grant::issue(&spec, &issuer, &mut self.rng_act) {
                Ok(t) => t,
                Err(_) => return,
            },
        };
        let receipt = if kind == Forgery::StaleReceipt {
            // What an honest server holds: the newest proof it really received, and when.
            let (seq, head, rx) = self.server_receipt.unwrap_or((0, Digest::ZERO, 0));
            CameraReceipt {
                camera: kit.camera_id.clone(),
                seq,
                head,
                received_ms: rx,
            }
        } else {
            // The attested segment, claimed received just now.
            CameraReceipt {
                camera: kit.camera_id.clone(),
                seq: att.body.seq,
                head: att.body.head,
                received_ms: server_ms.saturating_sub(50),
            }
        };
        let ctx = UnlockContext {
            lock: kit.lock.clone(),
            nonce: n.body.nonce,
            server_ms,
            epoch,
            grant: spec.id,
            driver: spec.driver,
            receipt,
        };
        let cmd = UnlockCommand {
            issuer: cert,
            grant: token,
            driver_sig: kit.driver_sig(&signer, &n.body.nonce),
            context: Signed::sign(ctx, &kit.server),
            witness: att,
        };
        let bytes = kit.seal(&cmd);
        self.note(|| format!("attacker sends a forged command ({kind:?})"));
        self.send(LinkId::Attacker, true, Ev::Lock(LIn::Message(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_recent_frames_is_bounded() {
        let sc = crate::scenario::find("benign").expect("benign exists");
        let mut w = World::new(sc, 5, false);
        for _ in 0..(MAX_RECENT_FRAMES as u64 + 10) {
            w.frame_tick();
            w.t += FRAME_MS;
        }
        assert_eq!(w.recent.len(), MAX_RECENT_FRAMES);
    }

    #[test]
    fn clock_true_at_inverts_read() {
        let mut c = Clock::new(12_345, -87);
        c.jump_at_ms = 5_000;
        c.jump_ms = 10_000;
        for d in [12_345u64, 13_000, 17_000, 30_000, 100_000] {
            let t = c.true_at(d);
            assert!(c.read(t) >= d);
            assert!(t == 0 || c.read(t - 1) < d);
        }
    }
}
