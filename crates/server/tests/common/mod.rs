//! A real server on free ports (SQLite in a temp dir, the embedded broker or Mosquitto), a
//! provisioned home, devices that speak docs/PROTOCOL.md over real MQTT clients (the real
//! camera core; a lock scripted with doorward_proto), and a small HTTP/1.0 client for the
//! endpoints and the event stream.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorward_camera::testkit::{Harness, PersonPath, SceneScript};
use doorward_camera::{Camera, CameraConfig, CameraState};
use doorward_control::{DeliverySetup, DoorKind, DoorSetup, HomePolicy};
use doorward_proto::*;
use doorward_server::{Database, Handle, Mqtt, ServeConfig, Server};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Which broker the test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broker {
    /// rumqttd inside the server, on a free port.
    Embedded,
    /// Mosquitto on 127.0.0.1:1883 (external-broker mode).
    Mosquitto,
}

pub const MOSQUITTO: (&str, u16) = ("127.0.0.1", 1883);

/// Whether the Mosquitto variant should run: fails when Mosquitto is unreachable, unless
/// `DOORWARD_SKIP_MOSQUITTO=1` outside CI, which skips loudly.
pub fn mosquitto_or_skip(test: &str) -> bool {
    let addr: SocketAddr = format!("{}:{}", MOSQUITTO.0, MOSQUITTO.1).parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return true;
    }
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let skip = std::env::var("DOORWARD_SKIP_MOSQUITTO")
        .map(|v| v == "1")
        .unwrap_or(false);
    if !ci && skip {
        eprintln!(
            "\n*** {test}: SKIPPED: Mosquitto is not reachable on {addr} and \
             DOORWARD_SKIP_MOSQUITTO=1 ***\n"
        );
        return false;
    }
    panic!(
        "{test}: Mosquitto is not reachable on {addr}. Start it (scripts/test installs and \
         starts it: `mosquitto -d -c /etc/mosquitto/mosquitto.conf`), or set \
         DOORWARD_SKIP_MOSQUITTO=1 to skip outside CI"
    );
}

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub struct TestServer {
    pub server: Option<Server>,
    pub handle: Handle,
    pub http: SocketAddr,
    pub mqtt: (String, u16),
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(broker: Broker) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(broker, dir).await
    }

    pub async fn start_in(broker: Broker, dir: tempfile::TempDir) -> TestServer {
        Self::start_with_roots(broker, dir, None).await
    }

    /// [`TestServer::start_in`], trusting the PEM roots at `webhook_roots` for webhooks.
    pub async fn start_with_roots(
        broker: Broker,
        dir: tempfile::TempDir,
        webhook_roots: Option<PathBuf>,
    ) -> TestServer {
        let data: PathBuf = dir.path().join("data");
        let cfg = ServeConfig {
            database: Database::Sqlite(data.join("doorward.db")),
            data_dir: data,
            mqtt: match broker {
                Broker::Embedded => Mqtt::Embedded {
                    listen: "127.0.0.1:0".parse().unwrap(),
                },
                Broker::Mosquitto => Mqtt::External {
                    host: MOSQUITTO.0.into(),
                    port: MOSQUITTO.1,
                },
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            webhook_roots,
        };
        let server = Server::start(cfg).await.expect("the server starts");
        let handle = server.handle();
        let http = server.http_addr();
        let mqtt = server.mqtt_addr();
        let ts = TestServer {
            server: Some(server),
            handle,
            http,
            mqtt,
            dir,
        };
        // Ready means the database and the broker are reachable.
        let t0 = Instant::now();
        loop {
            let (code, _) = http_get(ts.http, "/readyz", None).await;
            if code == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "/readyz stayed {code}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ts
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().shutdown().await.unwrap();
        self.dir
    }

    pub async fn metric(&self, line_prefix: &str) -> u64 {
        let (_, body) = http_get(self.http, "/metrics", None).await;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0)
    }
}

/// A home with one door, a carrier, a driver and a delivery, all with fresh keys and ids
/// unique to the test (tests may share a broker).
pub struct Home {
    pub id: Id,
    pub root: KeyPair,
    pub lock_id: Id,
    pub lock_key: KeyPair,
    pub cam_id: Id,
    pub cam_key: KeyPair,
    pub carrier: Id,
    pub driver: KeyPair,
    pub delivery: Id,
    pub token: String,
    pub rng: ChaCha20Rng,
}

pub fn wall_ms() -> u64 {
    doorward_server::runtime::wall_ms()
}

pub async fn provision(h: &Handle) -> Home {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let mut rng = ChaCha20Rng::from_seed(seed);
    let tag = hex::encode(&seed[..4]);
    let home = id(&format!("home-{tag}"));
    let root = KeyPair::generate(&mut rng);
    let creds = h
        .add_home_with_root(home.clone(), &root, 3_600_000, HomePolicy::default())
        .await
        .unwrap();
    let lock_key = KeyPair::generate(&mut rng);
    let cam_key = KeyPair::generate(&mut rng);
    let lock_id = id(&format!("lock-{tag}"));
    let cam_id = id(&format!("cam-{tag}"));
    h.pair_door(
        home.clone(),
        DoorSetup {
            lock: lock_id.clone(),
            lock_key: lock_key.public(),
            camera: cam_id.clone(),
            camera_key: cam_key.public(),
            kind: DoorKind::Front,
        },
    )
    .await
    .unwrap();
    let carrier = id("acme");
    h.opt_in(home.clone(), carrier.clone()).await.unwrap();
    let driver = KeyPair::generate(&mut rng);
    h.add_driver(driver.public(), carrier.clone())
        .await
        .unwrap();
    let delivery = id(&format!("d-{tag}"));
    let now = wall_ms();
    h.schedule(DeliverySetup {
        delivery: delivery.clone(),
        home: home.clone(),
        lock: lock_id.clone(),
        carrier: carrier.clone(),
        driver: driver.public(),
        not_before_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        max_open_ms: None,
    })
    .await
    .unwrap();
    Home {
        id: home,
        root,
        lock_id,
        lock_key,
        cam_id,
        cam_key,
        carrier,
        driver,
        delivery,
        token: creds.events_token,
        rng,
    }
}

/// A device's MQTT connection: publishes to its up topic, receives its down topic.
pub struct Mqttc {
    pub client: AsyncClient,
    pub up: String,
    pub down: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Mqttc {
    pub async fn connect(mqtt: &(String, u16), home: &Id, device: &Id) -> Mqttc {
        let mut rnd = [0u8; 4];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut rnd);
        let mut opts = MqttOptions::new(
            format!("{device}-{}", hex::encode(rnd)),
            mqtt.0.clone(),
            mqtt.1,
        );
        opts.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(128 * 1024, 128 * 1024);
        let (client, mut ev) = AsyncClient::new(opts, 256);
        let down = format!("doorward/v1/{home}/{device}/down");
        let up = format!("doorward/v1/{home}/{device}/up");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let sub = client.clone();
        let topic = down.clone();
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.subscribe(topic.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p.payload.to_vec()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), ready_rx.recv())
            .await
            .expect("the device subscribes within 5 s");
        Mqttc {
            client,
            up,
            down: rx,
        }
    }

    pub async fn send(&self, bytes: Vec<u8>) {
        self.client
            .publish(self.up.clone(), QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
    }
}

/// The real camera core, fed rendered frames in real time, publishing what it sends. Stops
/// publishing (without disconnecting) when `silent` is set, like a camera cut off by a
/// de-auth attack.
pub struct CameraDev {
    pub silent: Arc<AtomicBool>,
    pub sent: Arc<Mutex<Vec<Body>>>,
    pub refused: Arc<Mutex<Vec<String>>>,
    /// The newest segments' frames the camera handed out for upload.
    pub segments: KeptSegments,
}

/// Segments a [`CameraDev`] handed out for upload, newest last: (seq, frames).
pub type KeptSegments = Arc<Mutex<std::collections::VecDeque<(u64, Vec<Vec<u8>>)>>>;

/// Most segments a [`CameraDev`] keeps for upload.
pub const MAX_KEPT_SEGMENTS: usize = 256;

impl CameraDev {
    /// A camera watching a person who walks up and stays in the entry zone (activity: the
    /// camera proves at the entry pace), or an empty scene.
    pub async fn start(mqtt: &(String, u16), home: &Home, person: bool) -> CameraDev {
        let mut conn = Mqttc::connect(mqtt, &home.id, &home.cam_id).await;
        let mut cfg = CameraConfig::new(
            home.cam_id.clone(),
            home.cam_key.clone(),
            home.lock_id.clone(),
            home.lock_key.public(),
        );
        // Segments' frames are handed out for upload (kept in `segments`).
        cfg.upload_segments = true;
        let t0 = Instant::now();
        let mono = move || t0.elapsed().as_millis() as u64 + 1_000;
        let camera = Camera::new(cfg, CameraState::default(), mono());
        let mut script = SceneScript::new(7);
        if person {
            script.people.push(PersonPath {
                lane: 1,
                keys: vec![(0, -1.0), (1_500, -0.3), (3_600_000, -0.2)],
            });
        }
        let mut h = Harness::new(camera, script, mono());
        let silent = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let segments = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let dev = CameraDev {
            silent: silent.clone(),
            sent: sent.clone(),
            refused: refused.clone(),
            segments: segments.clone(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                let mut outs = Vec::new();
                tokio::select! {
                    _ = tick.tick() => outs = h.run_until(mono()),
                    m = conn.down.recv() => {
                        let Some(bytes) = m else { return };
                        if let Ok(env) = Envelope::decode(&bytes) {
                            if let Body::WitnessRequest(req) = env.body {
                                outs = h.run_until(mono());
                                outs.extend(h.input(doorward_camera::Input::WitnessRequest(req)));
                            }
                        }
                    }
                }
                for (_, o) in outs {
                    match o {
                        doorward_camera::Output::Send(env) => {
                            if silent.load(Ordering::Relaxed) {
                                continue;
                            }
                            sent.lock().unwrap().push(env.body.clone());
                            conn.send(env.to_bytes()).await;
                        }
                        doorward_camera::Output::Refused { reason, .. } => {
                            refused.lock().unwrap().push(reason.to_string())
                        }
                        doorward_camera::Output::Segment { seq, frames, .. } => {
                            let mut s = segments.lock().unwrap();
                            if s.len() == MAX_KEPT_SEGMENTS {
                                s.pop_front();
                            }
                            s.push_back((seq, frames.iter().map(|f| f.pixels.to_vec()).collect()));
                        }
                        _ => {}
                    }
                }
            }
        });
        dev
    }

    pub fn proofs_sent(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|b| matches!(b, Body::CameraProof(_)))
            .count()
    }
}

/// A lock scripted with doorward_proto: signed reports; on an unlock command it reports the
/// bolt retracted for the grant and then reports at the entry pace.
pub struct LockDev {
    pub conn_up: AsyncClient,
    pub up: String,
    pub key: KeyPair,
    pub id: Id,
    pub state: Arc<Mutex<LockSim>>,
}

pub struct LockSim {
    pub seq: u64,
    pub t0: Instant,
    pub bolt: Bolt,
    pub door: Door,
    pub cycle: Option<GrantId>,
}

impl LockSim {
    /// A lock just booted: bolt thrown, door closed, nothing sent yet.
    pub fn booted() -> LockSim {
        LockSim {
            seq: 0,
            t0: Instant::now(),
            bolt: Bolt::Thrown,
            door: Door::Closed,
            cycle: None,
        }
    }

    pub fn report(&mut self, lock: &Id, key: &KeyPair, event: LockEvent) -> Vec<u8> {
        self.seq += 1;
        let body = Body::LockReport(LockReport {
            lock: lock.clone(),
            seq: self.seq,
            mono_ms: self.t0.elapsed().as_millis() as u64 + 1_000,
            bolt: self.bolt,
            door: self.door,
            battery_pct: 90,
            epoch: 0,
            event,
            cycle: self.cycle,
        });
        Envelope::signed(body, key).to_bytes()
    }
}

impl LockDev {
    pub async fn start(mqtt: &(String, u16), home: &Home) -> LockDev {
        let mut conn = Mqttc::connect(mqtt, &home.id, &home.lock_id).await;
        let state = Arc::new(Mutex::new(LockSim::booted()));
        let (id, key) = (home.lock_id.clone(), home.lock_key.clone());
        let boot = state.lock().unwrap().report(&id, &key, LockEvent::Boot);
        conn.send(boot).await;
        let dev = LockDev {
            conn_up: conn.client.clone(),
            up: conn.up.clone(),
            key: key.clone(),
            id: id.clone(),
            state: state.clone(),
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(125));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let msg = {
                            let mut s = state.lock().unwrap();
                            s.cycle.is_some().then(|| s.report(&id, &key, LockEvent::Periodic))
                        };
                        if let Some(m) = msg { conn.send(m).await; }
                    }
                    m = conn.down.recv() => {
                        let Some(bytes) = m else { return };
                        let Ok(env) = Envelope::decode(&bytes) else { continue };
                        if let Body::UnlockCommand(cmd) = env.body {
                            let msg = {
                                let mut s = state.lock().unwrap();
                                let g = cmd.context.body.grant;
                                s.cycle = Some(g);
                                s.bolt = Bolt::Retracted;
                                s.report(&id, &key, LockEvent::Unlocked(g))
                            };
                            conn.send(msg).await;
                        }
                    }
                }
            }
        });
        dev
    }

    /// A fresh nonce, signed by the lock, as the driver's phone reads it locally.
    pub fn nonce(&self, rng: &mut ChaCha20Rng) -> Signed<UnlockNonce> {
        let mut n = [0u8; 32];
        rng.fill_bytes(&mut n);
        let mono = self.state.lock().unwrap().t0.elapsed().as_millis() as u64 + 1_000;
        Signed::sign(
            UnlockNonce {
                lock: self.id.clone(),
                nonce: Nonce(n),
                mono_ms: mono,
                epoch: 0,
            },
            &self.key,
        )
    }
}

/// `GET path` over HTTP/1.0; returns the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an HTTP answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (code, body)
}

/// A live event-stream connection.
pub struct Sse {
    reader: BufReader<TcpStream>,
    pub status: u16,
}

impl Sse {
    pub async fn open(addr: SocketAddr, home: &Id, token: &str) -> Sse {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /api/homes/{home}/events HTTP/1.0\r\nHost: test\r\n\
                 Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                break;
            }
        }
        Sse { reader, status }
    }

    /// The next event: its name and data.
    pub async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        let (mut name, mut data) = (String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if !name.is_empty() || !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap_or_default()));
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
    }

    /// Waits up to `within` for an alarm of `kind`; returns it with every event name seen.
    pub async fn alarm(
        &mut self,
        kind: &str,
        within: Duration,
    ) -> Result<serde_json::Value, Vec<String>> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some((name, data))) => {
                    if name == "alarm" && data["kind"] == kind {
                        return Ok(data);
                    }
                    if name == "alarm" {
                        seen.push(format!("alarm:{}", data["kind"]));
                    } else if seen.last().is_none_or(|s| s != &name) {
                        seen.push(name);
                    }
                }
                _ => return Err(seen),
            }
        }
    }
}

/// Polls `f` every 20 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects the home's lock and camera, and drives one authorised entry up to the Entry phase
/// at the server: the camera at the entry pace, the lock's evidence in, the driver's request
/// authorised, the bolt retracted. Each step within `ceiling`.
pub async fn open_entry(
    ts: &TestServer,
    home: &mut Home,
    ceiling: Duration,
) -> (LockDev, CameraDev) {
    use doorward_control::EntryDecision;
    let lock = LockDev::start(&ts.mqtt, home).await;
    let cam = CameraDev::start(&ts.mqtt, home, true).await;
    // The person in view puts the camera at the entry pace.
    eventually(ceiling, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    let (h, hid) = (ts.handle.clone(), home.id.clone());
    eventually(
        ceiling,
        "the lock's boot report is the lock's evidence",
        || {
            let (h, hid) = (h.clone(), hid.clone());
            async move {
                let s = h.home_state(&hid).await.unwrap().unwrap();
                s.doors[0].lock.evidence.is_some()
            }
        },
    )
    .await;
    let decision =
        tokio::time::timeout(ceiling, ts.handle.request_entry(entry_request(home, &lock)))
            .await
            .expect("a decision within the ceiling");
    assert!(
        matches!(decision, EntryDecision::Authorised { .. }),
        "{decision:?}; camera refusals: {:?}",
        cam.refused.lock().unwrap()
    );
    eventually(ceiling, "the lock reports the bolt retracted", || {
        let s = lock.state.clone();
        async move { s.lock().unwrap().cycle.is_some() }
    })
    .await;
    let del = home.delivery.clone();
    eventually(ceiling, "the entry is open at the server", || {
        let (h, hid, del) = (h.clone(), hid.clone(), del.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            s.doors[0]
                .delivery
                .as_ref()
                .is_some_and(|(d, p)| d == &del && *p == doorward_control::Phase::Entry)
        }
    })
    .await;
    (lock, cam)
}

/// The home's driver asks to enter for the home's delivery with a fresh nonce of `lock`.
pub fn entry_request(home: &mut Home, lock: &LockDev) -> doorward_control::EntryRequest {
    let nonce = lock.nonce(&mut home.rng);
    let driver_sig = home.driver.sign(
        DRIVER_NONCE_CONTEXT,
        &driver_nonce_message(&home.lock_id, &nonce.body.nonce),
    );
    doorward_control::EntryRequest {
        delivery: home.delivery.clone(),
        driver: home.driver.public(),
        nonce,
        driver_sig,
    }
}
