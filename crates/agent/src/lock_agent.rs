//! The lock agent: the lock core ([`doorward_lock::Lock`]) run against MQTT, a
//! [`LockHardware`] adapter, the local channel and a real monotonic clock.
//!
//! It holds no security logic: every decision is the core's. It carries bytes between the
//! core and the world, writes the core's durable state before acknowledging it, ticks the core
//! by [`Lock::next_deadline_ms`] (so the lock relocks by itself with no server at all, I3),
//! sends each periodic report of an open cycle twice (docs/PROTOCOL.md §13), and keeps its
//! state-change reports until the server acknowledges them ([`crate::link::Outbox`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorward_lock::{Input, Lock, LockConfig, LockState, Output};
use doorward_proto::pairing::DeviceKind;
use doorward_proto::{Body, Bolt, Door, Envelope, Id, LockEvent};
use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot, watch};

use crate::files::{DataDir, Paired};
use crate::hardware::{LockHardware, LockSensor};
use crate::link::{Link, LinkEvent, Outbox};
use crate::local_channel::{self, LocalEvent, LocalReply};

/// How often the agent reads the hardware's sensors, milliseconds.
pub const HW_POLL_MS: u64 = 20;
/// The lock's monotonic clock reads this at agent start, milliseconds (the core treats 0 as
/// "never").
pub const MONO_START_MS: u64 = 1_000;
/// Local-channel requests waiting for the core.
pub const LOCAL_QUEUE: usize = 64;

/// Where a lock agent runs.
#[derive(Clone, Debug)]
pub struct LockAgentConfig {
    /// Data directory (key, id, pairing, spent grants).
    pub data: std::path::PathBuf,
    /// Broker host and port.
    pub mqtt: (String, u16),
    /// Device id (else the stored one, else generated).
    pub id: Option<Id>,
    /// Address of the local channel (loopback; port 0 picks a free one).
    pub local: SocketAddr,
}

/// What the agent shows about itself (for the CLI, tests and the demo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockStatus {
    /// The lock's id.
    pub device: Id,
    /// Paired with a home.
    pub paired: bool,
    /// The bolt sensor.
    pub bolt: Bolt,
    /// The door sensor.
    pub door: Door,
    /// An open cycle is in progress.
    pub in_cycle: bool,
    /// The lock refuses grants until its camera's checkpoints resume.
    pub witness_lockout: bool,
    /// The lock has the server's time.
    pub time_synced: bool,
    /// Connected to the broker.
    pub connected: bool,
    /// State-change reports waiting for the server's acknowledgement.
    pub outbox: usize,
    /// Where the local channel listens (once it does).
    pub local: Option<SocketAddr>,
    /// Unlocks confirmed by the bolt sensor since start.
    pub unlocks: u64,
    /// Relocks confirmed since start.
    pub relocks: u64,
    /// Unlocks the lock denied since start.
    pub denials: u64,
}

/// A progress printer.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

/// Runs a lock agent until `stop` turns true: pairs first if needed, then serves.
pub async fn run(
    cfg: LockAgentConfig,
    mut hw: Box<dyn LockHardware>,
    stop: watch::Receiver<bool>,
    status: watch::Sender<Option<LockStatus>>,
    say: Say,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let data = DataDir::open(&cfg.data)?;
    let key = data.key()?;
    let device = data.device_id(cfg.id.as_ref(), "lock")?;
    // The local channel listens from the start, so its address is known before pairing.
    let (local_tx, mut local_rx) = mpsc::channel(LOCAL_QUEUE);
    let (local_addr, local_task) = local_channel::serve(cfg.local, local_tx)
        .await
        .with_context(|| {
            format!(
                "the local channel cannot listen on {}: choose another with --local ADDR",
                cfg.local
            )
        })?;
    std::fs::write(data.file("local.addr"), format!("{local_addr}\n"))
        .context("cannot write local.addr in the data directory")?;
    say(format!("lock {device}: local channel on {local_addr}"));
    let paired = match data.pairing()? {
        Some(p) => p,
        None => {
            match crate::pairing::pair(
                &cfg.mqtt,
                &data,
                DeviceKind::Lock,
                &device,
                &key,
                say.as_ref(),
                stop.clone(),
            )
            .await
            {
                Ok(p) => p,
                Err(crate::pairing::PairError::Stopped) => {
                    local_task.abort();
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if paired.kind != DeviceKind::Lock || paired.device != device {
        anyhow::bail!(
            "{} holds the pairing of {} {}, not of lock {device}: use another --data directory",
            data.path().display(),
            paired.kind.as_str(),
            paired.device
        );
    }
    let r = serve(
        &cfg,
        &data,
        paired,
        key,
        &mut *hw,
        &mut local_rx,
        local_addr,
        stop,
        status,
        say,
    )
    .await;
    local_task.abort();
    r
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &LockAgentConfig,
    data: &DataDir,
    p: Paired,
    key: doorward_proto::KeyPair,
    hw: &mut dyn LockHardware,
    local_rx: &mut mpsc::Receiver<LocalEvent>,
    local_addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<Option<LockStatus>>,
    say: Say,
) -> anyhow::Result<()> {
    let device = p.device.clone();
    let lcfg = LockConfig::new(
        device.clone(),
        p.home.clone(),
        p.root,
        p.server,
        p.peer.clone(),
        p.peer_key,
        key,
    );
    let state = match data.state()? {
        Some(b) => LockState::from_bytes(&b).map_err(|e| {
            anyhow::anyhow!(
                "{}: the lock's state does not decode ({e}); it holds the spent grants, so \
                 the lock will not start without it",
                data.file(crate::files::STATE_FILE).display()
            )
        })?,
        None => LockState::default(),
    };
    let t0 = Instant::now();
    let mono = move || t0.elapsed().as_millis() as u64 + MONO_START_MS;
    let (mut lock, boot_out) = Lock::boot(lcfg, state, mono(), hw.sensors());
    say(format!(
        "lock {device}: home {}, camera {}; connecting to mqtt://{}:{}",
        p.home, p.peer, cfg.mqtt.0, cfg.mqtt.1
    ));
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let down = format!("doorward/v1/{}/{}/down", p.home, device);
    let up = format!("doorward/v1/{}/{}/up", p.home, device);
    let (link, mut events) = Link::start(
        &cfg.mqtt.0,
        cfg.mqtt.1,
        &format!("{device}-{}", hex::encode(r)),
        vec![down],
    );
    let mut sh = Shell {
        data,
        hw,
        link: &link,
        up,
        server: p.server,
        device: device.clone(),
        outbox: Outbox::default(),
        connected: false,
        waiters: VecDeque::new(),
        inputs: VecDeque::new(),
        say: say.clone(),
        unlocks: 0,
        relocks: 0,
        denials: 0,
    };
    sh.outputs(&lock, boot_out);
    let mut hw_tick = tokio::time::interval(Duration::from_millis(HW_POLL_MS));
    hw_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = lock.next_deadline_ms();
        let wait = Duration::from_millis(due.saturating_sub(mono()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => sh.inputs.push_back(Input::Tick),
            _ = hw_tick.tick() => {
                if sh.connected && sh.outbox.retry_due(Instant::now()) {
                    sh.republish();
                }
                for s in sh.hw.poll() {
                    sh.inputs.push_back(match s {
                        LockSensor::Bolt(b) => Input::Bolt(b),
                        LockSensor::Door(d) => Input::Door(d),
                        LockSensor::Battery(b) => Input::Battery(b),
                    });
                }
            }
            ev = events.recv() => match ev {
                None => anyhow::bail!("the MQTT connection task ended"),
                Some(LinkEvent::Connected) => {
                    sh.connected = true;
                    sh.say(format!("lock {device}: connected to the broker"));
                    sh.republish();
                    for bytes in sh.outbox.take_held() {
                        sh.link.publish(&sh.up, QoS::AtLeastOnce, bytes);
                    }
                }
                Some(LinkEvent::Disconnected(e)) => {
                    sh.connected = false;
                    sh.say(format!("lock {device}: lost the broker ({e}); reconnecting"));
                }
                Some(LinkEvent::Message { payload, .. }) => sh.on_down(payload),
            },
            ev = local_rx.recv() => match ev {
                Some(LocalEvent::Nonce(reply)) => {
                    sh.waiters.push_back(reply);
                    sh.inputs.push_back(Input::NonceRequest);
                }
                Some(LocalEvent::Checkpoint(b)) => sh.inputs.push_back(Input::Message(b)),
                None => {}
            },
            _ = stop.wait_for(|s| *s) => break,
        }
        while let Some(input) = sh.inputs.pop_front() {
            let out = lock.handle(mono(), input, &mut rand_core::OsRng);
            sh.outputs(&lock, out);
        }
        let st = LockStatus {
            device: device.clone(),
            paired: true,
            bolt: lock.bolt(),
            door: lock.door(),
            in_cycle: lock.in_cycle(),
            witness_lockout: lock.witness_lockout(),
            time_synced: lock.wall_ms(mono()).is_some(),
            connected: sh.connected,
            outbox: sh.outbox.len(),
            local: Some(local_addr),
            unlocks: sh.unlocks,
            relocks: sh.relocks,
            denials: sh.denials,
        };
        status.send_if_modified(|s| {
            if s.as_ref() != Some(&st) {
                *s = Some(st);
                true
            } else {
                false
            }
        });
    }
    say(format!("lock {device}: stopping"));
    drop(sh);
    link.close().await;
    Ok(())
}

struct Shell<'a> {
    data: &'a DataDir,
    hw: &'a mut dyn LockHardware,
    link: &'a Link,
    up: String,
    server: doorward_proto::PubKey,
    device: Id,
    outbox: Outbox,
    connected: bool,
    waiters: VecDeque<oneshot::Sender<LocalReply>>,
    inputs: VecDeque<Input>,
    say: Say,
    unlocks: u64,
    relocks: u64,
    denials: u64,
}

impl Shell<'_> {
    fn say(&self, s: String) {
        (self.say)(s)
    }

    /// Publishes every kept report again, oldest first.
    fn republish(&mut self) {
        for bytes in self.outbox.pending() {
            self.link
                .publish(&self.up, QoS::AtLeastOnce, bytes.to_vec());
        }
        self.outbox.sent(Instant::now());
    }

    /// A message on the down topic: the server's acknowledgement is the shell's (it only
    /// trims the outbox); everything else goes to the core, which verifies it.
    fn on_down(&mut self, payload: Vec<u8>) {
        if let Ok(env) = Envelope::decode(&payload) {
            if let Body::Ack(a) = &env.body {
                if a.device == self.device && env.verify_sig(&self.server).is_ok() {
                    self.outbox.ack(a.seq);
                }
                return;
            }
        }
        self.inputs.push_back(Input::Message(payload));
    }

    fn outputs(&mut self, lock: &Lock, out: Vec<Output>) {
        for o in out {
            match o {
                Output::LocalNonce(n) => {
                    if let Some(w) = self.waiters.pop_front() {
                        let _ = w.send(LocalReply::Nonce(n));
                    }
                }
                Output::Send(env) => self.send(lock, env),
                Output::Persist { version, state } => {
                    let input = match self.data.store_state(&state.to_bytes()) {
                        Ok(()) => Input::Persisted { version },
                        Err(e) => {
                            tracing::error!(error = %e, "the lock's state could not be written");
                            Input::PersistFailed { version }
                        }
                    };
                    self.inputs.push_back(input);
                }
                Output::Actuate(cmd) => self.hw.actuate(cmd),
                Output::RevocationResync { have_epoch } => {
                    tracing::warn!(have_epoch, "the lock missed revocation epochs");
                }
                Output::Rejected(e) => tracing::debug!(error = %e, "message refused"),
            }
        }
    }

    fn send(&mut self, lock: &Lock, env: Envelope) {
        let bytes = env.to_bytes();
        let (qos, copies, keep) = match &env.body {
            Body::LockReport(r) if r.event == LockEvent::Periodic => {
                // Sent twice during an open cycle (docs/PROTOCOL.md §13).
                let copies = if lock.in_cycle() { 2 } else { 1 };
                (QoS::AtMostOnce, copies, None)
            }
            Body::LockReport(r) => {
                self.narrate(&r.event, r.bolt, r.door);
                (QoS::AtLeastOnce, 1, Some(r.seq))
            }
            _ => (QoS::AtLeastOnce, 1, None),
        };
        if let Some(seq) = keep {
            if !self.outbox.keep(seq, bytes.clone()) {
                tracing::warn!("outbox full: the oldest unacknowledged report was dropped");
            }
        }
        if !self.connected {
            if keep.is_none() && qos == QoS::AtLeastOnce {
                self.outbox.hold(bytes);
            }
            return;
        }
        for _ in 0..copies {
            self.link.publish(&self.up, qos, bytes.clone());
        }
        if keep.is_some() {
            self.outbox.sent(Instant::now());
        }
    }

    fn narrate(&mut self, ev: &LockEvent, bolt: Bolt, door: Door) {
        let d = &self.device;
        let line = match ev {
            LockEvent::Unlocked(_) => {
                self.unlocks += 1;
                format!("lock {d}: UNLOCKED (bolt retracted, confirmed by its sensor)")
            }
            LockEvent::Relocked(_) => {
                self.relocks += 1;
                format!("lock {d}: relocked (bolt thrown, door {door:?})")
            }
            LockEvent::Denied(r) => {
                self.denials += 1;
                format!("lock {d}: unlock DENIED: {r:?}")
            }
            LockEvent::Boot => format!("lock {d}: booted (bolt {bolt:?}, door {door:?})"),
            LockEvent::DoorChanged => format!("lock {d}: door {door:?}"),
            LockEvent::WitnessLockout => {
                format!("lock {d}: WITNESS LOCKOUT: the camera's checkpoints stopped")
            }
            LockEvent::Jammed => format!("lock {d}: BOLT JAMMED"),
            LockEvent::HeldOpen => format!("lock {d}: door held open past its maximum"),
            LockEvent::ForcedOpen => format!("lock {d}: DOOR FORCED OPEN"),
            _ => return,
        };
        self.say(line);
    }
}
