//! A server killed with SIGKILL in the middle of an entry comes back with its registry, an
//! audit record that verifies offline and holds every change and decision acknowledged before
//! the kill, and the open entry supervised again (S14): the camera's silence after the
//! restart raises WitnessLost on the live view, and the lock's relock report moves the
//! delivery on.
//!
//! The server runs in a child process: this test binary (no libtest harness) runs itself
//! again with `DOORWARD_CRASH_CHILD` set, and that copy starts the real server on fixed
//! ports over the given data directory. On its first start it provisions the home (from a
//! seed, so both processes know the keys), writes a marker once every change is
//! acknowledged, waits for this process's devices, asks to enter as the driver (signing the
//! lock's nonce with the lock key it derives from the seed), writes a marker with the
//! acknowledged decision and another once the entry is open, and runs until it is killed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use doorward_control::audit::{EntryKind, MAX_AUDIT_PAYLOAD_BYTES};
use doorward_control::{
    AuditEvent, AuditKind, DeliverySetup, DoorKind, DoorSetup, EntryDecision, EntryRequest,
    HomePolicy, Phase,
};
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
    rt.block_on(s14_sigkill_mid_entry_resumes_supervision_and_keeps_every_acknowledged_change());
    println!(
        "test s14_sigkill_mid_entry_resumes_supervision_and_keeps_every_acknowledged_change ... ok"
    );
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
        webhook_roots: None,
    };
    let server = Server::start(cfg).await.expect("the child server starts");
    if std::env::var("DOORWARD_CRASH_PROVISION").is_ok() {
        let seed: [u8; 32] = hex::decode(std::env::var("DOORWARD_CRASH_SEED").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let mut home = home_from_seed(seed);
        provision_seeded(&server.handle(), &home).await;
        // Every change above was acknowledged, so it is durable.
        std::fs::write(dir.join("provisioned"), b"").unwrap();
        tokio::spawn(enter(
            server.handle(),
            dir.clone(),
            home_rng_fork(&mut home),
            home,
        ));
    }
    server.run_until_signal().await.unwrap();
}

fn home_rng_fork(home: &mut Home) -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut home.rng, &mut seed);
    ChaCha20Rng::from_seed(seed)
}

/// The driver's side, in the child: once the parent's devices run, asks to enter until the
/// camera's attestation comes (a nonce signed with the lock key, as the driver's phone reads
/// it), records the acknowledged decision, then waits for the open entry.
async fn enter(h: Handle, dir: PathBuf, mut rng: ChaCha20Rng, home: Home) {
    let t0 = Instant::now();
    while !dir.join("devices").exists() {
        assert!(t0.elapsed() < CEILING, "the parent's devices never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grant = loop {
        assert!(t0.elapsed() < CEILING, "the entry was never authorised");
        let mut n = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut n);
        let nonce = Signed::sign(
            UnlockNonce {
                lock: home.lock_id.clone(),
                nonce: Nonce(n),
                mono_ms: 1_000,
                epoch: 0,
            },
            &home.lock_key,
        );
        let driver_sig = home.driver.sign(
            DRIVER_NONCE_CONTEXT,
            &driver_nonce_message(&home.lock_id, &nonce.body.nonce),
        );
        let decision = h
            .request_entry(EntryRequest {
                delivery: home.delivery.clone(),
                driver: home.driver.public(),
                nonce,
                driver_sig,
            })
            .await;
        match decision {
            EntryDecision::Authorised { grant, .. } => break grant,
            EntryDecision::Denied { reason, .. } => {
                eprintln!("child: entry denied {reason:?}; asking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The decision was answered, so it is durable.
    std::fs::write(dir.join("authorised"), hex::encode(grant.0)).unwrap();
    loop {
        assert!(t0.elapsed() < CEILING, "the entry never opened");
        let state = h.home_state(&home.id).await.unwrap().unwrap();
        if state.doors[0]
            .delivery
            .as_ref()
            .is_some_and(|(d, p)| d == &home.delivery && *p == Phase::Entry)
        {
            std::fs::write(dir.join("entry"), b"").unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

async fn wait_for(dir: &Path, marker: &str) {
    let t0 = Instant::now();
    while !dir.join(marker).exists() {
        assert!(t0.elapsed() < CEILING, "the child never wrote {marker}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The core's records of `chain`, with their entry kinds, in order.
fn events(store: &SqliteStore, chain: &Id) -> Vec<(EntryKind, Option<AuditEvent>)> {
    let mut all = Vec::new();
    let mut from = 0u64;
    loop {
        let page = store
            .audit_entries(chain, from, doorward_store::MAX_READ_ROWS)
            .unwrap();
        let done = page.len() < doorward_store::MAX_READ_ROWS;
        from += page.len() as u64;
        for e in page {
            let ev = (e.kind == EntryKind::EVENT)
                .then(|| codec::decode::<AuditEvent>(&e.payload, MAX_AUDIT_PAYLOAD_BYTES).unwrap());
            all.push((e.kind, ev));
        }
        if done {
            return all;
        }
    }
}

async fn s14_sigkill_mid_entry_resumes_supervision_and_keeps_every_acknowledged_change() {
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
    wait_for(&dir, "provisioned").await;
    wait_ready(http).await;
    // The door's devices, in this process, over the child's broker.
    let lock = LockDev::start(&mqtt, &home).await;
    let cam = CameraDev::start(&mqtt, &home, true).await;
    eventually(CEILING, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    std::fs::write(dir.join("devices"), b"").unwrap();
    wait_for(&dir, "authorised").await;
    let grant = GrantId(
        hex::decode(std::fs::read_to_string(dir.join("authorised")).unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    wait_for(&dir, "entry").await;
    assert_eq!(lock.state.lock().unwrap().cycle, Some(grant));

    // SIGKILL mid-entry: no shutdown, no final checkpoint.
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
    let data = dir.join("data");
    let (token, created) = Keystore::open(&data)
        .unwrap()
        .events_token(&home.id)
        .unwrap();
    assert!(!created, "the home's event token was kept");
    let mut sse = Sse::open(http, &home.id, &token).await;
    assert_eq!(sse.status, 200);
    // The devices reconnected by themselves: the camera's proofs reach the restarted server.
    let before = metric(http, "doorward_messages_received_total ")
        .await
        .unwrap_or(0);
    eventually(
        CEILING,
        "the devices are heard from after the restart",
        || async {
            metric(http, "doorward_messages_received_total ")
                .await
                .unwrap_or(0)
                >= before + 8
        },
    )
    .await;
    assert_eq!(
        metric(http, "doorward_alarms_total{kind=\"stream_tampered\"} ").await,
        Some(0),
        "the devices' streams go on across the restart"
    );

    // The open entry is supervised: the camera falls silent (no disconnect) → WitnessLost.
    cam.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    let alarm = sse
        .alarm("witness_lost", CEILING)
        .await
        .unwrap_or_else(|seen| panic!("no witness_lost within {CEILING:?}; saw {seen:?}"));
    assert_eq!(alarm["device"], home.cam_id.as_str());

    // The lock relocks: its report moves the restored delivery on.
    let received = metric(http, "doorward_messages_received_total ")
        .await
        .unwrap_or(0);
    let report = {
        let mut s = lock.state.lock().unwrap();
        s.cycle = None;
        s.bolt = Bolt::Thrown;
        s.door = Door::Closed;
        s.report(&home.lock_id, &home.lock_key, LockEvent::Relocked(grant))
    };
    lock.conn_up
        .publish(lock.up.clone(), rumqttc::QoS::AtLeastOnce, false, report)
        .await
        .unwrap();
    eventually(CEILING, "the relock report reaches the server", || async {
        metric(http, "doorward_messages_received_total ")
            .await
            .unwrap_or(0)
            > received
    })
    .await;

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

    // The record verifies offline and holds every acknowledged change and decision.
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
        let recorded = events(&store, &chain)
            .iter()
            .filter(|e| e.0 == REGISTRY_OP)
            .count();
        assert_eq!(
            recorded, changes,
            "acknowledged registry changes of {chain} in the record"
        );
    }
    let record = events(&store, &home.id);
    let what: Vec<&AuditKind> = record
        .iter()
        .filter_map(|e| e.1.as_ref())
        .map(|e| &e.what)
        .collect();
    let authorised: Vec<_> = what
        .iter()
        .filter_map(|w| match w {
            AuditKind::Authorised { grant, .. } => Some(*grant),
            _ => None,
        })
        .collect();
    assert_eq!(
        authorised,
        vec![grant],
        "the acknowledged authorisation is on record, and only it (one open cycle, I2)"
    );
    let witness_lost = what
        .iter()
        .position(|w| {
            matches!(w, AuditKind::AlarmRaised { alarm, .. } if alarm.kind == AlarmKind::WitnessLost)
        })
        .expect("the WitnessLost alarm is on record");
    let relocked = what
        .iter()
        .position(|w| {
            matches!(w, AuditKind::Phase { delivery, phase: Phase::Relocked } if delivery == &home.delivery)
        })
        .expect("the relock moved the restored delivery to Relocked");
    assert!(witness_lost < relocked);
}
