//! Silent witness loss → the customer's alarm, beside MQTT keep-alive / last will for the
//! same silent cut at 60 s and 5 s, through the same broker.
//!
//! **Witness loss.** One server in this process (SQLite, the embedded broker on a free port)
//! and N homes on it, each brought up as the demo brings up its one home
//! ([`Demo::join`]): its own homeowner, lock and camera agents as child processes, carrier
//! and driver. Each round, every home runs a delivery under the demo's S1
//! ([`attack::run`]): once the parcel is inside, the camera agent is stopped with SIGSTOP —
//! its traffic stops, its connections stay open, nothing says goodbye. A sample is the time
//! from the SIGSTOP to the `witness_lost` alarm's arrival on that homeowner's live event
//! stream (the real SSE endpoint). The homes start a little apart, so their cuts do not all
//! fall in the same instant. A `witness_lost` raised in a round before its cut fails the run.
//!
//! **Baseline.** Through the same broker, MQTT clients with a last will and keep-alive 60 s
//! or 5 s, each behind its own loopback relay ([`Relay`]), publish a small message every
//! [`PUBLISH_EVERY_MS`] (the camera's proof cadence during an entry). The cut is the same
//! silence: the relay drops every byte both ways and the client stops (its event loop is no
//! longer polled: nothing sent, nothing closed). A subscriber on the same broker timestamps
//! each will; a setting's figure is the median over its clients. The cuts happen at the end
//! of [`start`]; [`Pending::finish`] waits for the wills (the broker gives up on a silent
//! client 1.5 × keep-alive after its last packet), so the other sections run meanwhile.
//!
//! With the environment variable [`SMOKE_ENV`] set, the section runs reduced for tests: 2
//! homes, one round, one client each at keep-alive 3 s and 2 s standing in for 60 s and 5 s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use doorward_agent::scene::wall_ms;
use doorward_server::{ApiSettings, Database, Mqtt, ServeConfig, Server};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{percentile, round, Opts, Row};
use crate::demo::attack::{self, Scenario};
use crate::demo::procs::{Echo, Relay};
use crate::demo::setup::{self, Demo, HomeNames, ServerAt};

/// Homes in an entry at once, `--quick`. Each home's owner logs in once, and the API takes
/// at most `LOGIN_MAX_PER_IP` (20) logins a minute from one address.
pub const QUICK_HOMES: usize = 16;
/// Rounds per home, `--quick` (32 samples). A home's next round waits for the server's
/// post-entry watch (30 s) to end, so more homes are cheaper than more rounds.
pub const QUICK_ROUNDS: usize = 2;
/// Homes in an entry at once, full run.
pub const FULL_HOMES: usize = 20;
/// Rounds per home, full run (100 samples).
pub const FULL_ROUNDS: usize = 5;
/// Keep-alive clients per setting, `--quick`.
pub const QUICK_CLIENTS: usize = 3;
/// Keep-alive clients per setting, full run.
pub const FULL_CLIENTS: usize = 5;
/// The common MQTT keep-alive and a tight one, s.
pub const KEEP_ALIVES_S: [u16; 2] = [60, 5];
/// How often a keep-alive client publishes: the camera's proof interval during an entry, ms.
pub const PUBLISH_EVERY_MS: u64 = 125;
/// How long the keep-alive clients talk before the cut, ms.
pub const TALK_BEFORE_CUT_MS: u64 = 1_000;
/// How long the clients and the will subscriber get to connect, ms.
pub const CONNECT_WAIT_MS: u64 = 10_000;
/// How long past 1.5 × keep-alive a will may come before the run fails, ms.
pub const WILL_MARGIN_MS: u64 = 15_000;
/// The homes' first rounds start spread over this long, so their cuts do not all fall in the
/// same instant, ms.
pub const HOMES_SPREAD_MS: u64 = 3_000;
/// Pause after each round before the home is checked idle and locked again, ms.
pub const SETTLE_MS: u64 = 1_000;
/// Requests queued per MQTT client.
pub const MQTT_CAPACITY: usize = 64;
/// Set (to anything) to run the section reduced, for tests.
pub const SMOKE_ENV: &str = "DOORWARD_BENCH_WITNESS_SMOKE";
/// The topic filter the will subscriber listens to.
pub const WILL_FILTER: &str = "doorward-bench/will/#";
/// Target: witness loss → alarm, p99 (BRIEF §7), ms.
pub const TARGET_P99_MS: f64 = 650.0;
/// Target: how many times faster than a 60 s keep-alive.
pub const TARGET_RATIO60: f64 = 100.0;
/// Target: how many times faster than a 5 s keep-alive.
pub const TARGET_RATIO5: f64 = 10.0;

/// `witness_loss` in the JSON.
#[derive(Debug, Default, Serialize)]
pub struct WitnessLoss {
    pub p99_ms: f64,
    pub lwt60_ms: f64,
    pub lwt5_ms: f64,
    pub ratio60: f64,
    pub ratio5: f64,
}

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Plan {
    homes: usize,
    rounds: usize,
    clients: usize,
    /// The keep-alives standing for 60 s and 5 s (the same except in the smoke run), s.
    keep_alive_s: [u16; 2],
}

impl Plan {
    fn of(opts: Opts) -> Plan {
        if std::env::var_os(SMOKE_ENV).is_some() {
            Plan {
                homes: 2,
                rounds: 1,
                clients: 1,
                keep_alive_s: [3, 2],
            }
        } else if opts.quick {
            Plan {
                homes: QUICK_HOMES,
                rounds: QUICK_ROUNDS,
                clients: QUICK_CLIENTS,
                keep_alive_s: KEEP_ALIVES_S,
            }
        } else {
            Plan {
                homes: FULL_HOMES,
                rounds: FULL_ROUNDS,
                clients: FULL_CLIENTS,
                keep_alive_s: KEEP_ALIVES_S,
            }
        }
    }
}

/// A keep-alive client, cut and waiting for the broker to notice.
struct KeepAlive {
    name: String,
    /// Index into [`Plan::keep_alive_s`].
    setting: usize,
    keep_alive_s: u16,
    relay: Relay,
    /// Set at the cut: the client stops publishing and its event loop stops being polled.
    stop: watch::Sender<bool>,
    /// The polling task; it hands the (still open) event loop back when stopped.
    task: JoinHandle<EventLoop>,
    publisher: JoinHandle<()>,
    cut_at: Option<Instant>,
}

/// What runs between [`start`] and [`Pending::finish`]; dropping it stops everything.
#[derive(Default)]
struct Inner {
    server: Option<Server>,
    samples_ms: Vec<f64>,
    clients: Vec<KeepAlive>,
    /// Will topic → arrival.
    wills: Arc<Mutex<HashMap<String, Instant>>>,
    subscriber: Option<JoinHandle<()>>,
    /// Event loops of cut clients, held open so nothing is closed before the broker decides.
    held: Vec<EventLoop>,
}

/// The part still running after `start`: keep-alive clients waiting to be noticed.
pub struct Pending {
    rt: tokio::runtime::Runtime,
    plan: Plan,
    dir: PathBuf,
    inner: Inner,
    /// Whether the section failed (its data directory is kept then, for the logs).
    failed: bool,
}

/// Measures witness loss and leaves the keep-alive measurement running.
pub fn start(opts: Opts) -> Result<Pending> {
    let plan = Plan::of(opts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut r = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let dir = std::env::temp_dir().join(format!("doorward-bench-witness-{}", hex::encode(r)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // From here on, dropping `pending` stops what was started.
    let mut pending = Pending {
        rt,
        plan,
        dir,
        inner: Inner::default(),
        failed: false,
    };
    let Pending {
        rt,
        plan,
        dir,
        inner,
        ..
    } = &mut pending;
    if let Err(e) = rt.block_on(inner.start(*plan, dir)) {
        let e = e.context(format!(
            "the server's and agents' data and logs are in {}",
            dir.display()
        ));
        pending.failed = true;
        return Err(e);
    }
    Ok(pending)
}

impl Inner {
    async fn start(&mut self, plan: Plan, dir: &Path) -> Result<()> {
        let server_dir = dir.join("server");
        let cfg = ServeConfig {
            database: Database::Sqlite(server_dir.join(doorward_server::config::SQLITE_FILE)),
            data_dir: server_dir,
            // Port 0: a free port (Mosquitto may hold 1883).
            mqtt: Mqtt::Embedded {
                listen: "127.0.0.1:0".parse().expect("a valid address"),
            },
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            webhook_roots: None,
        };
        let server = Server::start_with(cfg, ApiSettings::default())
            .await
            .context("starting the server")?;
        let at = ServerAt::of(&server);
        self.server = Some(server);
        self.samples_ms = witness_samples(&at, plan, dir).await?;
        self.cut_keep_alives(&at.broker, plan).await
    }

    /// Connects the keep-alive clients and the will subscriber, lets them talk, then cuts
    /// every client silently.
    async fn cut_keep_alives(&mut self, broker: &(String, u16), plan: Plan) -> Result<()> {
        let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
        self.subscriber = Some(subscribe_wills(
            broker,
            self.wills.clone(),
            ready_tx.clone(),
        ));
        for (setting, &k) in plan.keep_alive_s.iter().enumerate() {
            for c in 0..plan.clients {
                let name = format!("bench-ka{k}-{c}");
                self.clients.push(
                    keep_alive_client(broker, name, setting, k, ready_tx.clone())
                        .await
                        .context("starting a keep-alive client")?,
                );
            }
        }
        let expected = self.clients.len() + 1;
        let deadline = Instant::now() + Duration::from_millis(CONNECT_WAIT_MS);
        for n in 0..expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, ready.recv()).await.is_err() {
                bail!(
                    "only {n} of {expected} MQTT clients (keep-alive clients and the will \
                     subscriber) were connected to the embedded broker within {} s",
                    CONNECT_WAIT_MS / 1000
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(TALK_BEFORE_CUT_MS)).await;
        for c in &mut self.clients {
            // The same silence as a stopped camera: bytes dropped, nothing closed.
            c.relay.set_cut(true);
            let _ = c.stop.send(true);
            c.cut_at = Some(Instant::now());
        }
        for c in &mut self.clients {
            self.held
                .push((&mut c.task).await.context("a keep-alive client's task")?);
        }
        Ok(())
    }

    /// Waits for every will (or its ceiling) and returns the median per setting, ms.
    async fn wills(&mut self) -> Result<[f64; 2]> {
        loop {
            let now = Instant::now();
            let wills = self.wills.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut waiting = false;
            for c in &self.clients {
                if wills.contains_key(&will_topic(&c.name)) {
                    continue;
                }
                let cut = c.cut_at.expect("every client is cut in start");
                let ceiling = will_ceiling(c.keep_alive_s);
                if now.duration_since(cut) > ceiling {
                    bail!(
                        "the broker did not publish the last will of {} (keep-alive {} s) within \
                         {} s of its silent cut (1.5 × keep-alive + {} s): is the broker \
                         enforcing keep-alive?",
                        c.name,
                        c.keep_alive_s,
                        ceiling.as_secs(),
                        WILL_MARGIN_MS / 1000
                    );
                }
                waiting = true;
            }
            if !waiting {
                let mut out = [0.0; 2];
                for (setting, o) in out.iter_mut().enumerate() {
                    let mut ms: Vec<f64> = self
                        .clients
                        .iter()
                        .filter(|c| c.setting == setting)
                        .map(|c| {
                            let at = wills[&will_topic(&c.name)];
                            let cut = c.cut_at.expect("cut in start");
                            at.saturating_duration_since(cut).as_secs_f64() * 1e3
                        })
                        .collect();
                    *o = super::median(&mut ms);
                }
                return Ok(out);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The longest a will may take after the cut before the run fails.
fn will_ceiling(keep_alive_s: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive_s) * 1_500 + WILL_MARGIN_MS)
}

fn will_topic(client: &str) -> String {
    format!("doorward-bench/will/{client}")
}

/// Brings up the homes, runs the rounds, and returns every sample, ms. The homes' agents are
/// stopped before it returns (the other sections want a quiet machine).
async fn witness_samples(at: &ServerAt, plan: Plan, dir: &Path) -> Result<Vec<f64>> {
    let t0 = Instant::now();
    let quiet: setup::Say = Arc::new(|_| {});
    let mut set = tokio::task::JoinSet::new();
    for i in 0..plan.homes {
        let data = dir.join(format!("home-{i}"));
        let o = setup::Opts {
            data: data.clone(),
            listen: None,
            default_http: None,
            mqtt_port: None,
            echo: Echo::File(data.join("agents.log")),
            keep: false,
            say: quiet.clone(),
        };
        let at = at.clone();
        set.spawn(async move {
            let names = HomeNames {
                owner_email: format!("owner-{i}@bench.doorward.example"),
                lock: format!("lock-{i}"),
                camera: format!("cam-{i}"),
            };
            Demo::join(at, o, &names, t0)
                .await
                .with_context(|| format!("bringing up home {i}"))
        });
    }
    let mut demos = Vec::new();
    while let Some(r) = set.join_next().await {
        demos.push(r.context("a home's setup task")??);
    }
    // Dropping the set aborts the others' tasks, and a dropped demo stops its agents.
    let mut set = tokio::task::JoinSet::new();
    for (i, mut demo) in demos.into_iter().enumerate() {
        set.spawn(async move {
            let offset = HOMES_SPREAD_MS * i as u64 / plan.homes as u64;
            tokio::time::sleep(Duration::from_millis(offset)).await;
            let r = rounds(&mut demo, plan.rounds)
                .await
                .with_context(|| format!("home {} ({})", i, demo.home));
            // Stopping the agents blocks for up to `CHILD_STOP_MS` each.
            let _ = tokio::task::spawn_blocking(move || drop(demo)).await;
            r
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        samples.extend(r.context("a home's task")??);
    }
    Ok(samples)
}

/// Runs `n` S1 deliveries at one home; each gives the time from the camera's SIGSTOP to the
/// `witness_lost` alarm on the homeowner's live stream, ms.
async fn rounds(demo: &mut Demo, n: usize) -> Result<Vec<f64>> {
    let (heard, listener) = attack::hear_alarms(demo, true).await?;
    let _stop = AbortOnDrop(listener);
    let mut out = Vec::with_capacity(n);
    for r in 0..n {
        let round_ms = wall_ms();
        let a = attack::run(demo, Scenario::S1)
            .await
            .with_context(|| format!("round {r}: the delivery under S1"))?;
        let heard = heard.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let lost = || {
            heard
                .iter()
                .filter(|h| h.kind == "witness_lost" && h.raised_ms >= round_ms)
        };
        if let Some(h) = lost().find(|h| h.raised_ms < a.started_ms) {
            bail!(
                "round {r}: witness_lost was raised {} ms before the camera was stopped: the \
                 sample would not measure the cut",
                a.started_ms - h.raised_ms
            );
        }
        let Some(first) = lost().map(|h| h.at).min() else {
            bail!(
                "round {r}: no witness_lost reached the homeowner's live stream after the \
                 camera was stopped (delivery: {:?})",
                a.ending
            );
        };
        if first < a.started {
            bail!("round {r}: the witness_lost alarm arrived before the camera was stopped");
        }
        out.push(first.duration_since(a.started).as_secs_f64() * 1e3);
        // After the last round nothing waits for the server's post-entry watch.
        if r + 1 == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
        demo.wait_idle().await?;
        demo.wait_locked().await?;
    }
    Ok(out)
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A subscriber on `WILL_FILTER`, straight to the broker; it records each will's arrival and
/// says `ready` once subscribed.
fn subscribe_wills(
    broker: &(String, u16),
    wills: Arc<Mutex<HashMap<String, Instant>>>,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> JoinHandle<()> {
    let mut o = MqttOptions::new("bench-will-subscriber", broker.0.clone(), broker.1);
    o.set_keep_alive(Duration::from_secs(u64::from(KEEP_ALIVES_S[0])));
    let (client, mut el) = AsyncClient::new(o, MQTT_CAPACITY);
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(WILL_FILTER, QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    wills
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(p.topic.clone())
                        .or_insert(at);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

/// A client with keep-alive `keep_alive_s` and a last will, through its own relay,
/// publishing every [`PUBLISH_EVERY_MS`]; says `ready` once connected.
async fn keep_alive_client(
    broker: &(String, u16),
    name: String,
    setting: usize,
    keep_alive_s: u16,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<KeepAlive> {
    let relay = Relay::start(broker.clone()).await?;
    let mut o = MqttOptions::new(
        name.clone(),
        relay.addr().ip().to_string(),
        relay.addr().port(),
    );
    o.set_keep_alive(Duration::from_secs(u64::from(keep_alive_s)));
    o.set_last_will(LastWill::new(
        will_topic(&name),
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (client, mut el) = AsyncClient::new(o, MQTT_CAPACITY);
    let (stop, mut stopped) = watch::channel(false);
    let mut stopped2 = stopped.clone();
    let task = tokio::spawn(async move {
        let mut told = false;
        loop {
            tokio::select! {
                _ = stopped.changed() => return el,
                ev = el.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !told => {
                        told = true;
                        let _ = ready.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
            }
        }
    });
    let topic = format!("doorward-bench/talk/{name}");
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(PUBLISH_EVERY_MS));
        loop {
            tokio::select! {
                _ = stopped2.changed() => return,
                _ = tick.tick() => {
                    let _ = client.try_publish(topic.as_str(), QoS::AtMostOnce, false, &b"proof"[..]);
                }
            }
        }
    });
    Ok(KeepAlive {
        name,
        setting,
        keep_alive_s,
        relay,
        stop,
        task,
        publisher,
        cut_at: None,
    })
}

impl Pending {
    /// Waits for the keep-alive verdicts and returns the section's figures.
    pub fn finish(mut self) -> Result<(WitnessLoss, Vec<Row>)> {
        let plan = self.plan;
        let wills = self.rt.block_on(self.inner.wills());
        self.failed = wills.is_err();
        let [lwt60, lwt5] =
            wills.with_context(|| format!("the data and logs are in {}", self.dir.display()))?;
        let mut xs = self.inner.samples_ms.clone();
        let (p50, p99) = (percentile(&mut xs, 50.0), percentile(&mut xs, 99.0));
        let ratio = |lwt: f64| if p99 > 0.0 { lwt / p99 } else { 0.0 };
        let w = WitnessLoss {
            p99_ms: round(p99, 1),
            lwt60_ms: round(lwt60, 0),
            lwt5_ms: round(lwt5, 0),
            ratio60: round(ratio(lwt60), 1),
            ratio5: round(ratio(lwt5), 1),
        };
        let [k60, k5] = plan.keep_alive_s;
        let samples = self.inner.samples_ms.len();
        let clients = plan.clients;
        let rows = vec![
            Row::new(
                format!(
                    "silent witness loss → SSE alarm, p50 / p99 ({} homes, {samples} samples)",
                    plan.homes
                ),
                format!("{p50:.0} / {p99:.0} ms"),
            )
            .target(format!("p99 ≤ {TARGET_P99_MS:.0} ms"))
            .baseline(format!(
                "MQTT last will, same cut: {:.0} ms at keep-alive {k60} s, {:.0} ms at {k5} s",
                w.lwt60_ms, w.lwt5_ms
            )),
            Row::new(
                format!("  faster than keep-alive {k60} s (last will / p99)"),
                format!("{:.1}×", w.ratio60),
            )
            .target(format!("≥ {TARGET_RATIO60:.0}×"))
            .baseline(format!("{:.0} ms, median of {clients} clients", w.lwt60_ms)),
            Row::new(
                format!("  faster than keep-alive {k5} s (last will / p99)"),
                format!("{:.1}×", w.ratio5),
            )
            .target(format!("≥ {TARGET_RATIO5:.0}×"))
            .baseline(format!("{:.0} ms, median of {clients} clients", w.lwt5_ms)),
        ];
        Ok((w, rows))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for c in &self.inner.clients {
            let _ = c.stop.send(true);
            c.task.abort();
            c.publisher.abort();
        }
        if let Some(s) = self.inner.subscriber.take() {
            s.abort();
        }
        self.inner.held.clear();
        self.inner.clients.clear();
        if let Some(server) = self.inner.server.take() {
            if let Err(e) = self.rt.block_on(server.shutdown()) {
                eprintln!("witness-loss bench: stopping its server: {e:#}");
            }
        }
        if !self.failed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
