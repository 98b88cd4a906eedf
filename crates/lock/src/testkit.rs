//! Builders for tests, benchmarks and the attack lab: a fully set-up lock, every key it trusts,
//! and valid unlock commands to tamper with.
//!
//! [`Kit`] holds the keys and identities of one home (root, issuing key with its certificate,
//! server, camera, driver, lock) and signs whatever a test needs. [`Harness`] runs a booted,
//! time-synchronised lock against a virtual disk, motor and server clock, so a test reads as a
//! sequence of events. Everything uses real cryptography; nothing here reads a clock or the OS
//! RNG.

use std::collections::VecDeque;

use doorward_proto::grant::{self, GrantSpec, Purpose};
use doorward_proto::{
    chain_next, driver_nonce_message, Body, Bolt, CameraReceipt, Checkpoint, DenyReason, Digest,
    Door, Envelope, GrantId, Id, IssuerCert, KeyPair, LockEvent, LockReport, Nonce, Revocation,
    Revoked, Sig, Signed, TimeSync, UnlockCommand, UnlockContext, WitnessAttestation,
    DRIVER_NONCE_CONTEXT,
};
use rand_core::CryptoRngCore;

use crate::{BoltCommand, Input, Lock, LockConfig, LockState, Output, Sensors};

/// Server (wall) time when the lock's monotonic clock reads zero, in the kit's world.
pub const WALL_AT_MONO_ZERO_MS: u64 = 1_750_000_000_000;
/// Monotonic time at which [`Harness::new`] boots the lock.
pub const BOOT_MONO_MS: u64 = 1_000;
/// The camera sequence number the server's receipt names by default.
pub const RECEIPT_SEQ: u64 = 100;
/// How old the server's camera receipt is, by default, when a context is signed.
pub const RECEIPT_AGE_MS: u64 = 200;
/// Maximum open time of the kit's grants.
pub const GRANT_MAX_OPEN_MS: u64 = 120_000;

/// The keys and identities of one home, and helpers that sign as each party.
#[derive(Clone, Debug)]
pub struct Kit {
    /// The home root key.
    pub home_root: KeyPair,
    /// The server's issuing key for this home, delegated by [`Kit::cert`].
    pub issuer: KeyPair,
    /// The server key.
    pub server: KeyPair,
    /// The paired camera's key.
    pub camera: KeyPair,
    /// The driver's key.
    pub driver: KeyPair,
    /// The lock's device key.
    pub lock_key: KeyPair,
    /// The home.
    pub home: Id,
    /// The lock.
    pub lock: Id,
    /// The paired camera.
    pub camera_id: Id,
    /// The carrier the kit's grants are issued to.
    pub carrier: Id,
    /// The issuing key's certificate, signed by the home root (serial 1).
    pub cert: Signed<IssuerCert>,
}

impl Kit {
    /// Generates every key from `rng`.
    pub fn new(rng: &mut impl CryptoRngCore) -> Kit {
        let home_root = KeyPair::generate(rng);
        let issuer = KeyPair::generate(rng);
        let server = KeyPair::generate(rng);
        let camera = KeyPair::generate(rng);
        let driver = KeyPair::generate(rng);
        let lock_key = KeyPair::generate(rng);
        let home = id("home-1");
        let cert = Signed::sign(
            IssuerCert {
                home: home.clone(),
                issuer: issuer.public(),
                not_before_ms: WALL_AT_MONO_ZERO_MS - 86_400_000,
                not_after_ms: WALL_AT_MONO_ZERO_MS + 30 * 86_400_000,
                serial: 1,
            },
            &home_root,
        );
        Kit {
            home_root,
            issuer,
            server,
            camera,
            driver,
            lock_key,
            home,
            lock: id("lock-1"),
            camera_id: id("cam-1"),
            carrier: id("acme"),
            cert,
        }
    }

    /// The lock's configuration, with default timing and limits.
    pub fn config(&self) -> LockConfig {
        LockConfig::new(
            self.lock.clone(),
            self.home.clone(),
            self.home_root.public(),
            self.server.public(),
            self.camera_id.clone(),
            self.camera.public(),
            self.lock_key.clone(),
        )
    }

    /// The server's wall time when the lock's monotonic clock reads `mono_ms`.
    pub fn server_ms(&self, mono_ms: u64) -> u64 {
        WALL_AT_MONO_ZERO_MS + mono_ms
    }

    /// A grant for the kit's driver at the kit's lock, valid from a minute before the server
    /// time at `mono_ms` to an hour after.
    pub fn spec(&self, grant: GrantId, mono_ms: u64) -> GrantSpec {
        let now = self.server_ms(mono_ms);
        GrantSpec {
            id: grant,
            home: self.home.clone(),
            lock: self.lock.clone(),
            purpose: Purpose::Delivery(id("delivery-1")),
            carrier: Some(self.carrier.clone()),
            driver: self.driver.public(),
            not_before_ms: now - 60_000,
            not_after_ms: now + 3_600_000,
            max_open_ms: GRANT_MAX_OPEN_MS,
        }
    }

    /// Issues `spec` with the kit's issuing key.
    pub fn grant(&self, spec: &GrantSpec, rng: &mut impl CryptoRngCore) -> Vec<u8> {
        grant::issue(spec, &self.issuer, rng).expect("the kit's grants are valid")
    }

    /// The camera chain head the kit's receipts and attestations name at `seq`.
    pub fn head(&self, seq: u64) -> Digest {
        chain_next(&Digest::ZERO, seq, &Digest::ZERO)
    }

    /// The server's context for `nonce` and `spec`, with a fresh receipt.
    pub fn context(
        &self,
        nonce: Nonce,
        spec: &GrantSpec,
        server_ms: u64,
        epoch: u64,
    ) -> UnlockContext {
        UnlockContext {
            lock: self.lock.clone(),
            nonce,
            server_ms,
            epoch,
            grant: spec.id,
            driver: spec.driver,
            receipt: CameraReceipt {
                camera: self.camera_id.clone(),
                seq: RECEIPT_SEQ,
                head: self.head(RECEIPT_SEQ),
                received_ms: server_ms - RECEIPT_AGE_MS,
            },
        }
    }

    /// The camera's attestation of `nonce`, one segment ahead of the receipt, recording.
    pub fn attestation(&self, nonce: Nonce) -> WitnessAttestation {
        WitnessAttestation {
            camera: self.camera_id.clone(),
            lock: self.lock.clone(),
            nonce,
            seq: RECEIPT_SEQ + 1,
            head: self.head(RECEIPT_SEQ + 1),
            recording: true,
        }
    }

    /// `driver`'s signature over the kit lock's `nonce`.
    pub fn driver_sig(&self, driver: &KeyPair, nonce: &Nonce) -> Sig {
        driver.sign(
            DRIVER_NONCE_CONTEXT,
            &driver_nonce_message(&self.lock, nonce),
        )
    }

    /// A complete, valid unlock command for `nonce` and the grant `token` issued from `spec`.
    pub fn command(
        &self,
        nonce: Nonce,
        token: &[u8],
        spec: &GrantSpec,
        server_ms: u64,
        epoch: u64,
    ) -> UnlockCommand {
        UnlockCommand {
            issuer: self.cert.clone(),
            grant: token.to_vec(),
            driver_sig: self.driver_sig(&self.driver, &nonce),
            context: Signed::sign(self.context(nonce, spec, server_ms, epoch), &self.server),
            witness: Signed::sign(self.attestation(nonce), &self.camera),
        }
    }

    /// Envelope bytes of `body` signed by the server key.
    pub fn from_server(&self, body: Body) -> Vec<u8> {
        Envelope::signed(body, &self.server).to_bytes()
    }

    /// Envelope bytes of an unlock command, as the server sends it.
    pub fn seal(&self, cmd: &UnlockCommand) -> Vec<u8> {
        self.from_server(Body::UnlockCommand(Box::new(cmd.clone())))
    }

    /// Envelope bytes of a camera checkpoint signed by the camera key.
    pub fn checkpoint(&self, seq: u64, mono_ms: u64) -> Vec<u8> {
        let body = Body::Checkpoint(Checkpoint {
            device: self.camera_id.clone(),
            seq,
            head: self.head(seq),
            mono_ms,
        });
        Envelope::signed(body, &self.camera).to_bytes()
    }

    /// Envelope bytes of a revocation bringing the home to `epoch`.
    pub fn revocation(&self, epoch: u64, items: Vec<Revoked>, issued_ms: u64) -> Vec<u8> {
        self.from_server(Body::Revocation(Revocation {
            home: self.home.clone(),
            epoch,
            issued_ms,
            items,
        }))
    }

    /// Envelope bytes of the server's time answer to the lock's request `nonce`.
    pub fn time_sync(&self, nonce: Nonce, server_ms: u64) -> Vec<u8> {
        self.from_server(Body::TimeSync(TimeSync {
            device: self.lock.clone(),
            nonce,
            server_ms,
        }))
    }
}

fn id(s: &str) -> Id {
    Id::new(s).expect("the kit's identifiers are valid")
}

/// How the harness's virtual disk answers [`Output::Persist`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistMode {
    /// Write and acknowledge at once.
    Ack,
    /// Answer every write with [`Input::PersistFailed`].
    Fail,
    /// Never answer (a hung disk).
    Hold,
}

/// How the harness's virtual motor answers [`Output::Actuate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoltMode {
    /// The bolt sensor reads the commanded position at once.
    Follow,
    /// The bolt never moves (a jam, or a radio-jammed motor).
    Stuck,
}

/// A booted, time-synchronised lock wired to a virtual disk, motor, server clock and camera.
#[derive(Clone, Debug)]
pub struct Harness<R> {
    /// The home's keys.
    pub kit: Kit,
    /// The lock under test.
    pub lock: Lock,
    /// The lock's monotonic clock.
    pub now_ms: u64,
    /// Randomness for the lock and for grant issuing.
    pub rng: R,
    /// The last state acknowledged as written.
    pub disk: Option<LockState>,
    /// How writes are answered.
    pub persist_mode: PersistMode,
    /// How the motor answers.
    pub bolt_mode: BoltMode,
    /// Whether the server answers the lock's time requests.
    pub answer_time: bool,
    /// Interval of signed camera checkpoints fed to the lock while time advances, if any.
    pub checkpoint_every_ms: Option<u64>,
    /// Sequence number of the last camera checkpoint fed.
    pub checkpoint_seq: u64,
    /// When the last camera checkpoint was fed.
    pub last_checkpoint_ms: u64,
    /// Every output so far, in order.
    pub log: Vec<Output>,
}

impl<R: CryptoRngCore> Harness<R> {
    /// A new home and a lock booted at [`BOOT_MONO_MS`] with its bolt thrown, door closed,
    /// battery full, state on disk and time synchronised.
    pub fn new(mut rng: R) -> Self {
        let kit = Kit::new(&mut rng);
        Self::with_kit(kit, rng)
    }

    /// As [`Harness::new`] with a given kit.
    pub fn with_kit(kit: Kit, rng: R) -> Self {
        let cfg = kit.config();
        Self::with_config(kit, cfg, rng)
    }

    /// As [`Harness::new`] with a given kit and lock configuration (other timing or limits).
    pub fn with_config(kit: Kit, cfg: LockConfig, rng: R) -> Self {
        let sensors = Sensors {
            bolt: Bolt::Thrown,
            door: Door::Closed,
            battery_pct: 100,
        };
        let (lock, out) = Lock::boot(cfg, LockState::default(), BOOT_MONO_MS, sensors);
        let mut h = Harness {
            kit,
            lock,
            now_ms: BOOT_MONO_MS,
            rng,
            disk: None,
            persist_mode: PersistMode::Ack,
            bolt_mode: BoltMode::Follow,
            answer_time: true,
            checkpoint_every_ms: Some(500),
            checkpoint_seq: 0,
            last_checkpoint_ms: BOOT_MONO_MS,
            log: Vec::new(),
        };
        h.react(out);
        h.input(Input::Tick);
        h
    }

    /// Feeds one input at the current time, lets the virtual disk, motor and server react,
    /// and returns everything the lock output (reactions included).
    pub fn input(&mut self, input: Input) -> Vec<Output> {
        let out = self.lock.handle(self.now_ms, input, &mut self.rng);
        self.react(out)
    }

    fn react(&mut self, first: Vec<Output>) -> Vec<Output> {
        let mut all = Vec::new();
        let mut pending: VecDeque<Input> = VecDeque::new();
        let mut batch = first;
        loop {
            for o in &batch {
                match o {
                    Output::Persist { version, state } => match self.persist_mode {
                        PersistMode::Ack => {
                            self.disk = Some(state.clone());
                            pending.push_back(Input::Persisted { version: *version });
                        }
                        PersistMode::Fail => {
                            pending.push_back(Input::PersistFailed { version: *version })
                        }
                        PersistMode::Hold => {}
                    },
                    Output::Send(env) if self.answer_time => {
                        if let Body::TimeRequest(tr) = &env.body {
                            let bytes = self
                                .kit
                                .time_sync(tr.nonce, self.kit.server_ms(self.now_ms));
                            pending.push_back(Input::Message(bytes));
                        }
                    }
                    Output::Actuate(c) if self.bolt_mode == BoltMode::Follow => {
                        pending.push_back(Input::Bolt(match c {
                            BoltCommand::Retract => Bolt::Retracted,
                            BoltCommand::Throw => Bolt::Thrown,
                        }));
                    }
                    _ => {}
                }
            }
            self.log.extend(batch.iter().cloned());
            all.extend(batch);
            let Some(next) = pending.pop_front() else {
                return all;
            };
            batch = self.lock.handle(self.now_ms, next, &mut self.rng);
        }
    }

    /// Advances the clock by `ms`, ticking the lock at each of its deadlines and feeding
    /// camera checkpoints on schedule. Returns every output on the way.
    pub fn advance(&mut self, ms: u64) -> Vec<Output> {
        let end = self.now_ms + ms;
        let mut all = Vec::new();
        loop {
            let mut next = self.lock.next_deadline_ms().max(self.now_ms);
            let cp_at = self
                .checkpoint_every_ms
                .map(|e| self.last_checkpoint_ms + e);
            if let Some(t) = cp_at {
                next = next.min(t.max(self.now_ms));
            }
            if next > end {
                self.now_ms = end;
                return all;
            }
            self.now_ms = next;
            if cp_at.is_some_and(|t| t <= next) {
                self.checkpoint_seq += 1;
                self.last_checkpoint_ms = next;
                let bytes = self.kit.checkpoint(self.checkpoint_seq, next);
                all.extend(self.input(Input::Message(bytes)));
            }
            all.extend(self.input(Input::Tick));
        }
    }

    /// Asks the lock for a nonce over the local channel.
    pub fn nonce(&mut self) -> Nonce {
        let out = self.input(Input::NonceRequest);
        out.iter()
            .find_map(|o| match o {
                Output::LocalNonce(n) => Some(n.body.nonce),
                _ => None,
            })
            .expect("a nonce request always yields a nonce")
    }

    /// A new grant (random id) for the kit's driver, valid now.
    pub fn fresh_grant(&mut self) -> (GrantSpec, Vec<u8>) {
        let mut gid = [0u8; 16];
        self.rng.fill_bytes(&mut gid);
        let spec = self.kit.spec(GrantId(gid), self.now_ms);
        let token = self.kit.grant(&spec, &mut self.rng);
        (spec, token)
    }

    /// A fresh nonce, a fresh grant and a valid command for them at the current time.
    pub fn valid_command(&mut self) -> (UnlockCommand, GrantSpec, Vec<u8>) {
        let nonce = self.nonce();
        let (spec, token) = self.fresh_grant();
        let cmd = self.command_for(nonce, &spec, &token);
        (cmd, spec, token)
    }

    /// A valid command for `nonce` and the grant `token` at the current time and epoch.
    pub fn command_for(&self, nonce: Nonce, spec: &GrantSpec, token: &[u8]) -> UnlockCommand {
        self.kit.command(
            nonce,
            token,
            spec,
            self.kit.server_ms(self.now_ms),
            self.lock.epoch(),
        )
    }

    /// Delivers `cmd` to the lock as the server would.
    pub fn send(&mut self, cmd: &UnlockCommand) -> Vec<Output> {
        let bytes = self.kit.seal(cmd);
        self.input(Input::Message(bytes))
    }

    /// Power-cycles the lock: it boots from the last state on disk at the current time
    /// (its monotonic clock keeps counting in the harness, as a new boot's clock would start
    /// anywhere), with the current sensor readings, and synchronises time again.
    pub fn reboot(&mut self) -> Vec<Output> {
        let sensors = Sensors {
            bolt: self.lock.bolt(),
            door: self.lock.door(),
            battery_pct: self.lock.battery_pct(),
        };
        let state = self.disk.clone().unwrap_or_default();
        let (lock, out) = Lock::boot(self.lock.config().clone(), state, self.now_ms, sensors);
        self.lock = lock;
        let mut all = self.react(out);
        all.extend(self.input(Input::Tick));
        all
    }
}

/// Every lock report among `outputs`, in order.
pub fn reports(outputs: &[Output]) -> Vec<LockReport> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(Envelope {
                body: Body::LockReport(r),
                ..
            }) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The events of every lock report among `outputs`, in order.
pub fn events(outputs: &[Output]) -> Vec<LockEvent> {
    reports(outputs).into_iter().map(|r| r.event).collect()
}

/// Every denial reported among `outputs`, in order.
pub fn denials(outputs: &[Output]) -> Vec<DenyReason> {
    events(outputs)
        .into_iter()
        .filter_map(|e| match e {
            LockEvent::Denied(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Every motor command among `outputs`, in order.
pub fn actuations(outputs: &[Output]) -> Vec<BoltCommand> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Actuate(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The lock's whole decision as a benchmark workload, shared by `cargo bench -p doorward-lock
/// --bench decision` and `doorward bench`: a booted, time-synchronised lock, one grant, and
/// for each sample a fresh lock clone with a nonce just issued and the sealed command for it.
#[derive(Clone, Debug)]
pub struct DecisionBench {
    kit: Kit,
    base: Lock,
    spec: GrantSpec,
    token: Vec<u8>,
    now_ms: u64,
    /// A complete command, for timing its parts alone.
    part: UnlockCommand,
}

impl DecisionBench {
    /// Sets up a home, a lock and a grant from `rng`.
    pub fn new(rng: impl CryptoRngCore) -> DecisionBench {
        let mut h = Harness::new(rng);
        let (spec, token) = h.fresh_grant();
        let part = h.command_for(Nonce([1; 32]), &spec, &token);
        DecisionBench {
            kit: h.kit,
            base: h.lock,
            spec,
            token,
            now_ms: h.now_ms,
            part,
        }
    }

    /// One sample's setup (not part of the decision): a clone of the lock that has just
    /// issued a nonce, and the server's sealed command for that nonce.
    pub fn prepare(&self, rng: &mut impl CryptoRngCore) -> (Lock, Input) {
        let mut lock = self.base.clone();
        let nonce = match &lock.handle(self.now_ms, Input::NonceRequest, rng)[..] {
            [Output::LocalNonce(n)] => n.body.nonce,
            other => panic!("expected a nonce, got {other:?}"),
        };
        let cmd = self.kit.command(
            nonce,
            &self.token,
            &self.spec,
            self.kit.server_ms(self.now_ms),
            lock.epoch(),
        );
        (lock, Input::Message(self.kit.seal(&cmd)))
    }

    /// The decision itself: `lock` handles the command `prepare` made for it. An accepted
    /// unlock emits exactly the write of its spent grant; anything else panics, so a
    /// benchmark never times a denial.
    pub fn decide(&self, lock: &mut Lock, input: Input, rng: &mut impl CryptoRngCore) {
        let out = lock.handle(self.now_ms, input, rng);
        assert!(
            matches!(out[..], [Output::Persist { .. }]),
            "the decision did not accept: {out:?}"
        );
    }

    /// The baseline part: one strict Ed25519 verification (the server's unlock context).
    pub fn verify_one(&self) -> bool {
        self.part.context.verify(&self.kit.server.public()).is_ok()
    }

    /// The other baseline part: the issuer certificate and the biscuit grant alone.
    pub fn grant_chain(&self) -> bool {
        let now = self.kit.server_ms(self.now_ms);
        let Ok(cert) = grant::verify_cert(
            &self.kit.cert,
            &self.kit.home_root.public(),
            &self.kit.home,
            now,
        ) else {
            return false;
        };
        grant::verify(
            &self.token,
            &cert.issuer,
            &self.kit.lock,
            &self.spec.driver,
            now,
        )
        .is_ok()
    }
}
