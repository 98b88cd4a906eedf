//! Shared by the agent tests (in-process here, as processes in crates/doorward/tests): a real
//! server on free ports with a temp data dir, a home, pairing both agents with their setup
//! codes, and a driver reading the lock's nonce over the local channel.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorward_agent::hardware::{VirtualCamera, VirtualLock};
use doorward_agent::scene::SceneDir;
use doorward_agent::upload::ServerUrl;
use doorward_agent::{CameraAgentConfig, CameraStatus, LockAgentConfig, LockStatus};
use doorward_control::{DeliverySetup, EntryRequest, HomePolicy};
use doorward_control::{EntryDecision, LockValue, Shown};
use doorward_proto::pairing::{DeviceKind, SetupCode};
use doorward_proto::{Id, KeyPair, DRIVER_NONCE_CONTEXT};
use doorward_server::{Database, Handle, Mqtt, PairOptions, ServeConfig, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub fn tag() -> String {
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    hex::encode(r)
}

pub fn wall_ms() -> u64 {
    doorward_agent::scene::wall_ms()
}

pub struct TestServer {
    pub server: Option<Server>,
    pub handle: Handle,
    pub http: SocketAddr,
    pub mqtt: (String, u16),
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with SQLite in a temp dir and the embedded broker on a free port, or an
    /// external broker at `external`.
    pub async fn start(external: Option<(String, u16)>) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let data: PathBuf = dir.path().join("server");
        let cfg = ServeConfig {
            database: Database::Sqlite(data.join("doorward.db")),
            data_dir: data,
            mqtt: match external {
                None => Mqtt::Embedded {
                    listen: "127.0.0.1:0".parse().unwrap(),
                },
                Some((host, port)) => Mqtt::External { host, port },
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            webhook_roots: None,
        };
        let server = Server::start(cfg).await.expect("the server starts");
        let ts = TestServer {
            handle: server.handle(),
            http: server.http_addr(),
            mqtt: server.mqtt_addr(),
            server: Some(server),
            dir,
        };
        let t0 = Instant::now();
        while http_status(ts.http, "/readyz").await != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "/readyz stayed not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ts
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn stop(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

pub async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls `f` every 20 ms until it is true; fails naming `what` after `within`.
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

/// Waits for a file to exist and returns its trimmed text.
pub async fn read_when_there(path: &Path, within: Duration) -> String {
    let p = path.to_owned();
    eventually(within, &format!("{} is written", path.display()), || {
        let p = p.clone();
        async move { p.exists() }
    })
    .await;
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// A home with a carrier opted in, a driver, and the ids of its door's devices.
pub struct Home {
    pub id: Id,
    pub root: KeyPair,
    pub lock: Id,
    pub camera: Id,
    pub carrier: Id,
    pub driver: KeyPair,
}

pub async fn add_home(h: &Handle) -> Home {
    let t = tag();
    let home = Home {
        id: id(&format!("home-{t}")),
        root: KeyPair::generate(&mut rand_core::OsRng),
        lock: id(&format!("lock-{t}")),
        camera: id(&format!("cam-{t}")),
        carrier: id(&format!("carrier-{t}")),
        driver: KeyPair::generate(&mut rand_core::OsRng),
    };
    h.add_home_with_root(
        home.id.clone(),
        &home.root,
        3_600_000,
        HomePolicy::default(),
    )
    .await
    .unwrap();
    h.opt_in(home.id.clone(), home.carrier.clone())
        .await
        .unwrap();
    h.add_driver(home.driver.public(), home.carrier.clone())
        .await
        .unwrap();
    home
}

/// Pairs the home's camera and then its lock, with the setup codes the devices wrote to
/// their data directories (the owner reads them off the devices).
pub async fn pair_door(h: &Handle, home: &Home, cam_data: &Path, lock_data: &Path) {
    let ceiling = Duration::from_secs(10);
    let cam_code = read_when_there(&cam_data.join("setup-code"), ceiling).await;
    let lock_code = read_when_there(&lock_data.join("setup-code"), ceiling).await;
    let opts = PairOptions {
        timeout_ms: 10_000,
        ..PairOptions::default()
    };
    let cam = h
        .pair_device(
            home.id.clone(),
            home.camera.clone(),
            DeviceKind::Camera,
            SetupCode::parse(&cam_code).unwrap(),
            opts.clone(),
        )
        .await
        .expect("the camera pairs");
    assert!(cam.door.is_none(), "a camera waits for its lock");
    let lock = h
        .pair_device(
            home.id.clone(),
            home.lock.clone(),
            DeviceKind::Lock,
            SetupCode::parse(&lock_code).unwrap(),
            PairOptions {
                camera: Some(home.camera.clone()),
                ..opts
            },
        )
        .await
        .expect("the lock pairs, naming its camera");
    let door = lock.door.expect("the lock's pairing registers the door");
    assert_eq!(door.camera_key, cam.key);
    // Both devices store their pairing.
    read_when_there(&cam_data.join("pairing.json"), ceiling).await;
    read_when_there(&lock_data.join("pairing.json"), ceiling).await;
}

/// Schedules a delivery for the home's driver, open for an hour.
pub async fn schedule(h: &Handle, home: &Home) -> Id {
    let delivery = id(&format!("d-{}", tag()));
    let now = wall_ms();
    h.schedule(DeliverySetup {
        delivery: delivery.clone(),
        home: home.id.clone(),
        lock: home.lock.clone(),
        carrier: home.carrier.clone(),
        driver: home.driver.public(),
        not_before_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        max_open_ms: None,
    })
    .await
    .unwrap();
    delivery
}

/// The driver's device reads a nonce over the lock's local channel and signs it.
pub async fn entry_request(home: &Home, delivery: &Id, local: SocketAddr) -> EntryRequest {
    let nonce = doorward_agent::local_channel::read_nonce(local)
        .await
        .expect("the lock hands out a nonce");
    let driver_sig = home.driver.sign(
        DRIVER_NONCE_CONTEXT,
        &doorward_proto::driver_nonce_message(&nonce.body.lock, &nonce.body.nonce),
    );
    EntryRequest {
        delivery: delivery.clone(),
        driver: home.driver.public(),
        nonce,
        driver_sig,
    }
}

/// The driver walks up to the door (the camera sees activity and proves at the entry pace).
pub fn arrive(scene: &SceneDir) {
    scene.walk(0, 1, &[(1_000, -0.3)]).unwrap();
}

/// Pushes the door open, walks in, drops off, walks out and pulls the door shut, waiting for
/// each step.
pub async fn walk_through(scene: &SceneDir) {
    scene.push_door(true).unwrap();
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    scene.walk(0, 1, &[(1_500, 0.6)]).unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    scene
        .walk(0, 1, &[(1_500, -0.3), (2_500, -1.0), (2_800, -1.5)])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    scene.push_door(false).unwrap();
}

/// Prints agent progress lines with a prefix (visible with --nocapture).
pub fn say(prefix: &'static str) -> doorward_agent::Say {
    Arc::new(move |l: String| eprintln!("[{prefix}] {l}"))
}

/// One HTTP/1.0 request to the server's API, with an optional bearer token and JSON body;
/// the status and the body of the answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&serde_json::Value>,
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: test\r\n");
    if let Some(t) = bearer {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if json.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let status = String::from_utf8_lossy(&buf[..split])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf[split + 4..].to_vec())
}

/// A homeowner account with a home added through the API (prepare, then the root's
/// certificate for the issuing key), a carrier opted in and its driver; returns the home and
/// the owner's session token.
pub async fn add_owned_home(ts: &TestServer) -> (Home, String) {
    let t = tag();
    let (email, password) = (format!("owner-{t}@example.org"), format!("pw-{t}-{t}"));
    ts.handle.create_homeowner(&email, &password).await.unwrap();
    let (code, body) = http(
        ts.http,
        "POST",
        "/api/login",
        None,
        Some(&serde_json::json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let (code, body) = http(ts.http, "POST", "/api/homes/prepare", Some(&token), None).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let home_id = id(p["home"].as_str().unwrap());
    let issuer = doorward_proto::PubKey::from_hex(p["issuer_key"].as_str().unwrap()).unwrap();
    let root = KeyPair::generate(&mut rand_core::OsRng);
    let now = wall_ms();
    let cert = doorward_proto::Signed::sign(
        doorward_proto::IssuerCert {
            home: home_id.clone(),
            issuer,
            not_before_ms: now - 60_000,
            not_after_ms: now + 3_600_000,
            serial: 1,
        },
        &root,
    );
    let (code, body) = http(
        ts.http,
        "POST",
        "/api/homes",
        Some(&token),
        Some(&serde_json::json!({
            "home": home_id.as_str(),
            "root_key": root.public().to_hex(),
            "cert": hex::encode(doorward_proto::codec::encode(&cert)),
        })),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let home = Home {
        id: home_id,
        root,
        lock: id(&format!("lock-{t}")),
        camera: id(&format!("cam-{t}")),
        carrier: id(&format!("carrier-{t}")),
        driver: KeyPair::generate(&mut rand_core::OsRng),
    };
    ts.handle
        .opt_in(home.id.clone(), home.carrier.clone())
        .await
        .unwrap();
    ts.handle
        .add_driver(home.driver.public(), home.carrier.clone())
        .await
        .unwrap();
    (home, token)
}

/// How long the shared agent steps wait for each thing they expect.
const STEP_CEILING: Duration = Duration::from_secs(10);

/// A door's lock and camera agents running in-process against a test server.
pub struct DoorAgents {
    pub lock_st: watch::Receiver<Option<LockStatus>>,
    pub cam_st: watch::Receiver<Option<CameraStatus>>,
    /// The lock's local channel.
    pub local: SocketAddr,
    pub lock_data: PathBuf,
    pub cam_data: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl DoorAgents {
    /// Stops both agents and checks that they ended without an error.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        for t in self.tasks {
            t.await.unwrap().unwrap();
        }
    }
}

/// The lock agent's configuration for `home` on `ts` (data in `ts.path("lock")`).
pub fn lock_config(ts: &TestServer, home: &Home) -> LockAgentConfig {
    LockAgentConfig {
        data: ts.path("lock"),
        mqtt: ts.mqtt.clone(),
        id: Some(home.lock.clone()),
        local: "127.0.0.1:0".parse().unwrap(),
    }
}

/// Starts `home`'s lock agent (unpaired: its local channel listens at once) and camera agent
/// on virtual hardware watching `scene`; the camera uploads its footage to `server_url` when
/// one is given. Neither is paired yet (see [`pair_door`]).
pub async fn start_agents(
    ts: &TestServer,
    home: &Home,
    scene: &SceneDir,
    server_url: Option<ServerUrl>,
) -> DoorAgents {
    let (lock_data, cam_data) = (ts.path("lock"), ts.path("camera"));
    let (stop, stop_rx) = watch::channel(false);
    let (lock_st_tx, lock_st) = watch::channel(None);
    let lock_task = tokio::spawn(doorward_agent::lock_agent::run(
        lock_config(ts, home),
        Box::new(VirtualLock::new(Some(scene.clone()), 100)),
        stop_rx.clone(),
        lock_st_tx,
        say("lock"),
    ));
    let local: SocketAddr = read_when_there(&lock_data.join("local.addr"), STEP_CEILING)
        .await
        .parse()
        .unwrap();
    let (cam_st_tx, cam_st) = watch::channel(None);
    let cam_task = tokio::spawn(doorward_agent::camera_agent::run(
        CameraAgentConfig {
            data: cam_data.clone(),
            mqtt: ts.mqtt.clone(),
            id: Some(home.camera.clone()),
            lock_local: Some(local),
            server_url,
        },
        Box::new(VirtualCamera::new(Some(scene.clone()))),
        stop_rx,
        cam_st_tx,
        say("camera"),
    ));
    DoorAgents {
        lock_st,
        cam_st,
        local,
        lock_data,
        cam_data,
        stop,
        tasks: vec![lock_task, cam_task],
    }
}

/// One delivery through paired agents, up to the driver having walked in and out: the camera
/// in session, the lock shown locked, the delivery scheduled, the driver at the door (the
/// camera at the entry pace), the entry authorised, the bolt retracted, the door opened and
/// closed behind the driver. Returns the delivery.
pub async fn deliver_through(ts: &TestServer, home: &Home, scene: &SceneDir, a: &DoorAgents) -> Id {
    let ceiling = STEP_CEILING;
    eventually(ceiling, "the camera opens a session", || {
        let s = a.cam_st.borrow().clone();
        async move { s.is_some_and(|s| s.session) }
    })
    .await;
    eventually(ceiling, "the server shows the lock locked", || {
        let (h, hid) = (ts.handle.clone(), home.id.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            s.doors[0].lock.value == Shown::Known(LockValue::Locked)
        }
    })
    .await;
    let delivery = schedule(&ts.handle, home).await;
    arrive(scene);
    eventually(ceiling, "the camera sees the driver (entry pace)", || {
        let s = a.cam_st.borrow().clone();
        async move { s.is_some_and(|s| s.entry) }
    })
    .await;
    let req = entry_request(home, &delivery, a.local).await;
    let decision = tokio::time::timeout(ceiling, ts.handle.request_entry(req))
        .await
        .expect("a decision");
    assert!(
        matches!(decision, EntryDecision::Authorised { .. }),
        "{decision:?}"
    );
    eventually(ceiling, "the bolt retracts", || {
        let s = a.lock_st.borrow().clone();
        async move {
            s.is_some_and(|s| s.bolt == doorward_proto::Bolt::Retracted && s.unlocks == 1)
        }
    })
    .await;
    walk_through(scene).await;
    delivery
}
