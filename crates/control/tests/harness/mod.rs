//! A small world for the decision core: one home with one door, a lock and a camera played by
//! hand (real keys, real envelopes, real chains), a carrier, a driver and a delivery.

#![allow(dead_code)]

use doorward_control::*;
use doorward_proto::session::{Initiator, SessionKey};
use doorward_proto::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Server time at the start: Tuesday 2023-11-14 22:13:20 UTC.
pub const T0: u64 = 1_700_000_000_000;

/// The lock, played by hand.
pub struct LockSim {
    pub id: Id,
    pub key: KeyPair,
    pub seq: u64,
    pub boot_ms: u64,
    pub bolt: Bolt,
    pub door: Door,
    pub epoch: u64,
    pub cycle: Option<GrantId>,
}

/// The camera, played by hand.
pub struct CamSim {
    pub id: Id,
    pub key: KeyPair,
    pub seq: u64,
    pub head: Digest,
    /// The chain of every proof sent, as the camera chains it into its checkpoints.
    pub msg_head: Digest,
    pub frame: u64,
    pub obs: Observations,
    pub recording: bool,
    pub session: Option<SessionKey>,
    /// When set, every proof repeats these frames instead of fresh ones.
    pub fixed_frames: Option<Vec<Digest>>,
}

pub struct World {
    pub c: Control,
    pub rng: ChaCha20Rng,
    pub now: u64,
    pub home: Id,
    pub root: KeyPair,
    pub server_pub: PubKey,
    pub lock: LockSim,
    pub cam: CamSim,
    pub carrier: Id,
    pub driver: KeyPair,
    pub delivery: Id,
    /// Every output so far.
    pub log: Vec<Output>,
    /// The nonce of the newest entry request.
    pub last_nonce: Option<Signed<UnlockNonce>>,
    /// The camera's newest signed session hello, as an eavesdropper on the broker keeps it.
    pub last_hello: Option<Envelope>,
    /// The server key, for a restarted core.
    pub server: KeyPair,
    /// Every administrative change applied, in order, for a restarted core.
    pub ops: Vec<Admin>,
}

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

impl World {
    pub fn new() -> World {
        Self::with(Config::default(), HomePolicy::default(), DoorKind::Front)
    }

    pub fn with(cfg: Config, policy: HomePolicy, kind: DoorKind) -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let root = KeyPair::generate(&mut rng);
        let server = KeyPair::generate(&mut rng);
        let issuer = KeyPair::generate(&mut rng);
        let home = id("home-1");
        let cert = Signed::sign(
            IssuerCert {
                home: home.clone(),
                issuer: issuer.public(),
                not_before_ms: 0,
                not_after_ms: T0 + 365 * 86_400_000,
                serial: 1,
            },
            &root,
        );
        let server_pub = server.public();
        let server_kp = server.clone();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut c = Control::new(cfg, server, seed, T0);
        let lock = LockSim {
            id: id("lock-1"),
            key: KeyPair::generate(&mut rng),
            seq: 0,
            boot_ms: T0 - 1_000_000,
            bolt: Bolt::Thrown,
            door: Door::Closed,
            epoch: 0,
            cycle: None,
        };
        let cam = CamSim {
            id: id("cam-1"),
            key: KeyPair::generate(&mut rng),
            seq: 0,
            head: Digest::ZERO,
            msg_head: Digest::ZERO,
            frame: 0,
            obs: Observations::default(),
            recording: true,
            session: None,
            fixed_frames: None,
        };
        let driver = KeyPair::generate(&mut rng);
        let carrier = id("acme");
        let delivery = id("d-1");
        let ops = vec![
            Admin::AddHome(HomeSetup {
                home: home.clone(),
                root: root.public(),
                issuer,
                cert,
                policy,
            }),
            Admin::PairDoor {
                home: home.clone(),
                door: DoorSetup {
                    lock: lock.id.clone(),
                    lock_key: lock.key.public(),
                    camera: cam.id.clone(),
                    camera_key: cam.key.public(),
                    kind,
                },
            },
            Admin::OptIn {
                home: home.clone(),
                carrier: carrier.clone(),
            },
            Admin::AddDriver {
                driver: driver.public(),
                carrier: carrier.clone(),
            },
            Admin::Schedule(DeliverySetup {
                delivery: delivery.clone(),
                home: home.clone(),
                lock: lock.id.clone(),
                carrier: carrier.clone(),
                driver: driver.public(),
                not_before_ms: T0,
                not_after_ms: T0 + 4 * 3_600_000,
                max_open_ms: None,
            }),
        ];
        let mut log = Vec::new();
        for op in ops.clone() {
            log.extend(c.admin(T0, op).unwrap());
        }
        let mut w = World {
            c,
            rng,
            now: T0,
            home,
            root,
            server_pub,
            lock,
            cam,
            carrier,
            driver,
            delivery,
            log,
            last_nonce: None,
            last_hello: None,
            server: server_kp,
            ops,
        };
        w.open_camera_session();
        // Both devices have reported once: the state rests on evidence from the start.
        w.lock_report(LockEvent::Boot);
        w.proof();
        w
    }

    /// Feeds an input at the current time and keeps its outputs.
    pub fn feed(&mut self, input: Input) -> Vec<Output> {
        let out = self.c.handle(self.now, input);
        self.log.extend(out.iter().cloned());
        out
    }

    pub fn admin(&mut self, op: Admin) -> Vec<Output> {
        self.ops.push(op.clone());
        let out = self.c.admin(self.now, op).unwrap();
        self.log.extend(out.iter().cloned());
        out
    }

    pub fn device(&mut self, from: &Id, env: &Envelope) -> Vec<Output> {
        self.feed(Input::Device {
            from: from.clone(),
            bytes: env.to_bytes(),
        })
    }

    /// Moves time forward by `ms` with nothing sent (deadlines fire).
    pub fn idle(&mut self, ms: u64) -> Vec<Output> {
        self.now += ms;
        self.feed(Input::Tick)
    }

    /// Moves time forward by `ms` in proof intervals, the camera and (if `lock`) the lock
    /// reporting at the entry pace.
    pub fn run(&mut self, ms: u64, camera: bool, lock: bool) -> Vec<Output> {
        let mut out = Vec::new();
        let mut left = ms;
        while left > 0 {
            let step = left.min(125);
            self.now += step;
            left -= step;
            out.extend(self.feed(Input::Tick));
            if camera {
                out.extend(self.proof());
                // Like the camera during an entry: a signed checkpoint every second.
                if self.cam.seq.is_multiple_of(8) {
                    out.extend(self.checkpoint());
                }
            }
            if lock {
                out.extend(self.lock_report(LockEvent::Periodic));
            }
        }
        out
    }

    /// The camera opens a new session; its proofs are MAC'd under the new key from now on.
    pub fn open_camera_session(&mut self) -> Vec<Output> {
        let (init, hello) = Initiator::start(self.cam.id.clone(), &mut self.rng);
        let env = Envelope::signed(Body::SessionHello(hello), &self.cam.key);
        self.last_hello = Some(env.clone());
        let cam_id = self.cam.id.clone();
        let out = self.device(&cam_id, &env);
        let accept = out
            .iter()
            .find_map(|o| match o {
                Output::Send { envelope, .. } => match &envelope.body {
                    Body::SessionAccept(a) => {
                        envelope.verify_sig(&self.server_pub).unwrap();
                        Some(a.clone())
                    }
                    _ => None,
                },
                _ => None,
            })
            .expect("the server accepts the session");
        self.cam.session = Some(init.finish(&accept).unwrap());
        out
    }

    pub fn report_body(&mut self, event: LockEvent) -> LockReport {
        self.lock.seq += 1;
        LockReport {
            lock: self.lock.id.clone(),
            seq: self.lock.seq,
            mono_ms: self.now - self.lock.boot_ms,
            bolt: self.lock.bolt,
            door: self.lock.door,
            battery_pct: 90,
            epoch: self.lock.epoch,
            event,
            cycle: self.lock.cycle,
        }
    }

    /// The lock sends a signed report of its sensors.
    pub fn lock_report(&mut self, event: LockEvent) -> Vec<Output> {
        let body = self.report_body(event);
        let env = Envelope::signed(Body::LockReport(body), &self.lock.key);
        let lock_id = self.lock.id.clone();
        self.device(&lock_id, &env)
    }

    /// Sets the sensors and reports the change.
    pub fn set_lock(&mut self, bolt: Bolt, door: Door, event: LockEvent) -> Vec<Output> {
        self.lock.bolt = bolt;
        self.lock.door = door;
        self.lock_report(event)
    }

    pub fn proof_body(&mut self) -> CameraProof {
        self.cam.seq += 1;
        let frames = match &self.cam.fixed_frames {
            Some(f) => f.clone(),
            None => (0..4)
                .map(|_| {
                    self.cam.frame += 1;
                    frame_digest(&self.cam.frame.to_le_bytes())
                })
                .collect(),
        };
        let segment = segment_digest(&frames);
        self.cam.head = chain_next(&self.cam.head, self.cam.seq, &segment);
        CameraProof {
            camera: self.cam.id.clone(),
            seq: self.cam.seq,
            mono_ms: self.now - T0 + 5_000,
            segment,
            head: self.cam.head,
            recording: self.cam.recording,
            frames,
            obs: self.cam.obs,
        }
    }

    /// The camera sends a proof under its session key.
    pub fn proof(&mut self) -> Vec<Output> {
        let body = self.proof_body();
        self.send_proof(body)
    }

    pub fn send_proof(&mut self, body: CameraProof) -> Vec<Output> {
        let env = self.proof_envelope(body);
        let cam_id = self.cam.id.clone();
        self.device(&cam_id, &env)
    }

    /// A proof MAC'd under the session key and chained into the camera's message chain, as
    /// the camera does, without sending it (to lose it, reorder it or replace it).
    pub fn proof_envelope(&mut self, body: CameraProof) -> Envelope {
        let body = Body::CameraProof(body);
        self.cam.msg_head = chain_next(&self.cam.msg_head, self.cam.seq, &message_digest(&body));
        Envelope::maced(body, self.cam.session.as_ref().unwrap())
    }

    /// The camera's signed checkpoint over every proof it sent, as the camera makes it.
    pub fn checkpoint_envelope(&self) -> Envelope {
        let body = Body::Checkpoint(Checkpoint {
            device: self.cam.id.clone(),
            seq: self.cam.seq,
            head: self.cam.msg_head,
            mono_ms: self.now - T0 + 5_000,
        });
        Envelope::signed(body, &self.cam.key)
    }

    /// The camera sends its signed checkpoint.
    pub fn checkpoint(&mut self) -> Vec<Output> {
        let env = self.checkpoint_envelope();
        let cam_id = self.cam.id.clone();
        self.device(&cam_id, &env)
    }

    /// The driver reads a fresh nonce from the lock and asks to enter.
    pub fn request_entry(&mut self) -> Vec<Output> {
        let driver = self.driver.clone();
        self.request_entry_as(&driver, self.delivery.clone())
    }

    pub fn request_entry_as(&mut self, driver: &KeyPair, delivery: Id) -> Vec<Output> {
        let mut n = [0u8; 32];
        self.rng.fill_bytes(&mut n);
        let nonce = Signed::sign(
            UnlockNonce {
                lock: self.lock.id.clone(),
                nonce: Nonce(n),
                mono_ms: self.now - self.lock.boot_ms,
                epoch: self.lock.epoch,
            },
            &self.lock.key,
        );
        let driver_sig = driver.sign(
            DRIVER_NONCE_CONTEXT,
            &driver_nonce_message(&self.lock.id, &nonce.body.nonce),
        );
        self.last_nonce = Some(nonce.clone());
        self.feed(Input::EntryRequest(EntryRequest {
            delivery,
            driver: driver.public(),
            nonce,
            driver_sig,
        }))
    }

    /// The camera attests the newest nonce.
    pub fn attest(&mut self) -> Vec<Output> {
        let nonce = self.last_nonce.clone().unwrap();
        let att = Signed::sign(
            WitnessAttestation {
                camera: self.cam.id.clone(),
                lock: self.lock.id.clone(),
                nonce: nonce.body.nonce,
                seq: self.cam.seq,
                head: self.cam.head,
                recording: self.cam.recording,
            },
            &self.cam.key,
        );
        let env = Envelope::signed(Body::WitnessAttestation(att), &self.cam.key);
        let cam_id = self.cam.id.clone();
        self.device(&cam_id, &env)
    }

    /// Request, fresh proof, attestation: returns the unlock command sent to the lock.
    pub fn authorise(&mut self) -> Box<UnlockCommand> {
        let out = self.request_entry();
        assert!(
            sent(&out)
                .iter()
                .any(|(_, b)| matches!(b, Body::WitnessRequest(_))),
            "no witness request: {:?}",
            decisions(&out)
        );
        self.proof();
        let out = self.attest();
        command(&out).unwrap_or_else(|| panic!("no unlock command: {:?}", decisions(&out)))
    }

    /// The whole entry up to the relock, with the camera and lock at the entry pace.
    pub fn enter_and_relock(&mut self) {
        let cmd = self.authorise();
        let grant = cmd.context.body.grant;
        self.run(125, true, false);
        self.lock.cycle = Some(grant);
        self.set_lock(Bolt::Retracted, Door::Closed, LockEvent::Unlocked(grant));
        self.run(250, true, true);
        // The driver opens the door and walks in.
        self.cam.obs.door_open = true;
        self.cam.obs.people_in_zone = 1;
        self.cam.obs.entered = self.cam.obs.entered.wrapping_add(1);
        self.set_lock(Bolt::Retracted, Door::Open, LockEvent::DoorChanged);
        self.proof();
        self.run(2_000, true, true);
        // Out again; the door closes and the lock relocks.
        self.cam.obs.exited = self.cam.obs.exited.wrapping_add(1);
        self.cam.obs.people_in_zone = 0;
        self.cam.obs.door_open = false;
        self.set_lock(Bolt::Retracted, Door::Closed, LockEvent::DoorChanged);
        self.proof();
        self.run(250, true, true);
        self.lock.cycle = None;
        self.set_lock(Bolt::Thrown, Door::Closed, LockEvent::Relocked(grant));
    }

    /// The server restarts now, as `doorward serve` does: a fresh core, the registry
    /// replayed, then (with `restore`) every audit record so far fed back in order, the
    /// devices' stream state put back, and supervision resumed. Returns what the resume
    /// output.
    pub fn restart(&mut self, restore: bool) -> Vec<Output> {
        let snaps: Vec<_> = [self.lock.id.clone(), self.cam.id.clone()]
            .into_iter()
            .filter_map(|d| self.c.device_snapshot(&d).map(|s| (d, s)))
            .collect();
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let mut c = Control::new(self.c.config().clone(), self.server.clone(), seed, self.now);
        for op in self.ops.clone() {
            c.admin(self.now, op).unwrap();
        }
        if restore {
            for ev in audits(&self.log) {
                c.restore(&ev);
            }
        }
        for (d, s) in snaps {
            assert!(c.restore_device(&d, s));
        }
        self.c = c;
        let out = self.c.resume(self.now);
        self.log.extend(out.iter().cloned());
        out
    }

    pub fn alarm_kinds(&self) -> Vec<AlarmKind> {
        alarms(&self.log)
    }

    pub fn phase(&self) -> Phase {
        self.c.delivery(&self.delivery).unwrap().phase
    }

    pub fn door(&self) -> DoorState {
        self.c.state(&self.home, self.now).unwrap().doors[0].clone()
    }
}

/// Kinds of alarms first raised (not re-sent) in `out`.
pub fn alarms(out: &[Output]) -> Vec<AlarmKind> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alarm(a) if a.sent == 1 => Some(a.alarm.kind),
            _ => None,
        })
        .collect()
}

pub fn decisions(out: &[Output]) -> Vec<EntryDecision> {
    out.iter()
        .filter_map(|o| match o {
            Output::Decision(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

pub fn denied(out: &[Output]) -> Option<DenyReason> {
    decisions(out).into_iter().find_map(|d| match d {
        EntryDecision::Denied { reason, .. } => Some(reason),
        _ => None,
    })
}

pub fn sent(out: &[Output]) -> Vec<(Id, Body)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { device, envelope } => Some((device.clone(), envelope.body.clone())),
            _ => None,
        })
        .collect()
}

pub fn command(out: &[Output]) -> Option<Box<UnlockCommand>> {
    sent(out).into_iter().find_map(|(_, b)| match b {
        Body::UnlockCommand(c) => Some(c),
        _ => None,
    })
}

pub fn audits(out: &[Output]) -> Vec<AuditEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Audit(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

pub fn rejected(out: &[Output]) -> Vec<RejectReason> {
    audits(out)
        .into_iter()
        .filter_map(|a| match a.what {
            AuditKind::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}
