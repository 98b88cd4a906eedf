//! A server killed with SIGKILL comes back with its registry and an audit record that
//! verifies offline and holds every change acknowledged before the kill.
//!
//! The server runs in a child process: this test binary (no libtest harness) runs itself
//! again with `DOORWARD_CRASH_CHILD` set, and that copy starts the real server on fixed
//! ports over the given data directory, provisions the home on its first start (from a seed,
//! so both processes know the keys), writes a marker once every change is acknowledged, and
//! runs until it is killed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use doorward_control::{DeliverySetup, DoorKind, DoorSetup, HomePolicy};
use doorward_proto::*;
use doorward_server::journal::REGISTRY_OP;
use doorward_server::keystore::Keystore;
use doorward_server::runtime::SERVER_CHAIN;
use doorward_server::{Database, Handle, Mqtt, ServeConfig, Server};
use doorward_store::{SqliteStore, Store};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const CHILD: &str = "DOORWARD_CRASH_CHILD";
const CEILING: Duration = Duration::from_secs(20);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var(CHILD) {
        rt.block_on(child(PathBuf::from(dir)));
        return;
    }
    rt.block_on(i8_sigkill_keeps_the_registry_and_every_acknowledged_change());
    println!("test i8_sigkill_keeps_the_registry_and_every_acknowledged_change ... ok");
}

fn env_u16(name: &str) -> u16 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The home, its keys and ids, derived from `seed` alone.
fn home_from_seed(seed: [u8; 32]) -> Home {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let tag = hex::encode(&seed[..4]);
    let root = KeyPair::generate(&mut rng);
    let lock_key = KeyPair::generate(&mut rng);
    let cam_key = KeyPair::generate(&mut rng);
    let driver = KeyPair::generate(&mut rng);
    Home {
        id: id(&format!("home-{tag}")),
        root,
        lock_id: id(&format!("lock-{tag}")),
        lock_key,
        cam_id: id(&format!("cam-{tag}")),
        cam_key,
        carrier: id("acme"),
        driver,
        delivery: id(&format!("d-{tag}")),
        token: String::new(),
        rng,
    }
}

async fn provision_seeded(h: &Handle, home: &Home) {
    h.add_home_with_root(
        home.id.clone(),
        &home.root,
        3_600_000,
        HomePolicy::default(),
    )
    .await
    .unwrap();
    h.pair_door(
        home.id.clone(),
        DoorSetup {
            lock: home.lock_id.clone(),
            lock_key: home.lock_key.public(),
            camera: home.cam_id.clone(),
            camera_key: home.cam_key.public(),
            kind: DoorKind::Front,
        },
    )
    .await
    .unwrap();
    h.opt_in(home.id.clone(), home.carrier.clone())
        .await
        .unwrap();
    h.add_driver(home.driver.public(), home.carrier.clone())
        .await
        .unwrap();
    let now = wall_ms();
    h.schedule(DeliverySetup {
        delivery: home.delivery.clone(),
        home: home.id.clone(),
        lock: home.lock_id.clone(),
        carrier: home.carrier.clone(),
        driver: home.driver.public(),
        not_before_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        max_open_ms: None,
    })
    .await
    .unwrap();
}

async fn child(dir: PathBuf) {
    let data = dir.join("data");
    let cfg = ServeConfig {
        database: Database::Sqlite(data.join("doorward.db")),
        data_dir: data,
        mqtt: Mqtt::Embedded {
            listen: format!("127.0.0.1:{}", env_u16("DOORWARD_CRASH_MQTT"))
                .parse()
                .unwrap(),
        },
        listen: format!("127.0.0.1:{}", env_u16("DOORWARD_CRASH_HTTP"))
            .parse()
            .unwrap(),
    };
    let server = Server::start(cfg).await.expect("the child server starts");
    if std::env::var("DOORWARD_CRASH_PROVISION").is_ok() {
        let seed: [u8; 32] = hex::decode(std::env::var("DOORWARD_CRASH_SEED").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        provision_seeded(&server.handle(), &home_from_seed(seed)).await;
        // Every change above was acknowledged, so it is durable.
        std::fs::write(dir.join("provisioned"), b"").unwrap();
    }
    server.run_until_signal().await.unwrap();
}

/// Kills the child when the test ends, passed or not.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &Path, ports: (u16, u16), seed: &str, provision: bool) -> Kid {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, dir)
        .env("DOORWARD_CRASH_MQTT", ports.0.to_string())
        .env("DOORWARD_CRASH_HTTP", ports.1.to_string())
        .env("DOORWARD_CRASH_SEED", seed);
    if provision {
        cmd.env("DOORWARD_CRASH_PROVISION", "1");
    }
    Kid(cmd.spawn().unwrap())
}

async fn metric(http: std::net::SocketAddr, prefix: &str) -> Option<u64> {
    let (code, body) = http_get(http, "/metrics", None).await;
    if code != 200 {
        return None;
    }
    Some(
        body.lines()
            .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0),
    )
}

async fn wait_ready(http: std::net::SocketAddr) {
    let t0 = Instant::now();
    loop {
        // http_get expects a listener: ask only once the port answers.
        if tokio::net::TcpStream::connect(http).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(1), http_get(http, "/readyz", None))
                .await
                .is_ok_and(|(code, _)| code == 200)
        {
            return;
        }
        assert!(
            t0.elapsed() < CEILING,
            "the child server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn i8_sigkill_keeps_the_registry_and_every_acknowledged_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ports = (free_port(), free_port());
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", ports.1).parse().unwrap();
    let mqtt = ("127.0.0.1".to_string(), ports.0);
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let seed_hex = hex::encode(seed);
    let home = home_from_seed(seed);

    let mut kid = spawn(&dir, ports, &seed_hex, true);
    let t0 = Instant::now();
    while !dir.join("provisioned").exists() {
        assert!(
            t0.elapsed() < CEILING,
            "the child never provisioned the home"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_ready(http).await;
    // Device traffic is flowing when the kill comes.
    let cam = CameraDev::start(&mqtt, &home, true).await;
    eventually(CEILING, "camera messages reach the server", || async {
        metric(http, "doorward_messages_received_total ")
            .await
            .unwrap_or(0)
            >= 3
    })
    .await;
    assert!(cam.proofs_sent() >= 1);

    // SIGKILL: no shutdown, no final checkpoint.
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    drop(kid);

    let kid = spawn(&dir, ports, &seed_hex, false);
    wait_ready(http).await;
    assert_eq!(
        metric(http, "doorward_supervised_devices ").await,
        Some(2),
        "the door is supervised again after the restart"
    );
    // A clean stop this time (SIGTERM): the server signs the end of every record.
    let term = Command::new("kill")
        .args(["-TERM", &kid.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut kid = kid;
    let stopped = kid.0.wait().unwrap();
    assert!(
        stopped.success(),
        "the restarted server stopped with {stopped}"
    );
    drop(kid);

    // The record verifies offline and holds every acknowledged change.
    let data = dir.join("data");
    let server = Keystore::open(&data)
        .unwrap()
        .server_key()
        .unwrap()
        .0
        .public();
    let store = SqliteStore::open(data.join("doorward.db")).unwrap();
    for (chain, changes) in [(home.id.clone(), 4), (id(SERVER_CHAIN), 1)] {
        let mut out = Vec::new();
        store.export_audit(&chain, server, &mut out).unwrap();
        let report = doorward_control::audit::verify_export(&out[..], Some(&server))
            .unwrap_or_else(|e| panic!("the {chain} record does not verify: {e:?}"));
        assert!(report.entries > 0);
        let recorded = store
            .audit_entries(&chain, 0, doorward_store::MAX_READ_ROWS)
            .unwrap()
            .iter()
            .filter(|e| e.kind == REGISTRY_OP)
            .count();
        assert_eq!(
            recorded, changes,
            "acknowledged registry changes of {chain} in the record"
        );
    }
}
