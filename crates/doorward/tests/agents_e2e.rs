//! The device agents as real processes of the `doorward` binary, against a real server (in
//! this process) and a real broker: a camera stopped (SIGSTOP, silent) or killed (SIGKILL)
//! mid-entry, and a broker restart mid-delivery.

#[path = "../../agent/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use doorward_agent::scene::SceneDir;
use doorward_control::{CameraValue, EntryDecision, LockValue, Phase, Shown};

/// A child process whose stdout lines are collected; killed when dropped.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_doorward"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the doorward binary starts");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                l.lock().unwrap().push(line);
            }
        });
        Proc { child, lines, name }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// SIGTERM and wait: the agent stops cleanly.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A paired door run by two agent processes.
struct Door {
    home: Home,
    scene: SceneDir,
    local: SocketAddr,
    lock: Proc,
    camera: Proc,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

async fn start_door(ts: &TestServer, root: &Path) -> Door {
    let ceiling = Duration::from_secs(10);
    let home = add_home(&ts.handle).await;
    let scene_dir: PathBuf = root.join("scene");
    let scene = SceneDir::open(&scene_dir).unwrap();
    let (lock_data, cam_data) = (root.join("lock"), root.join("camera"));
    let mqtt = format!("mqtt://{}:{}", ts.mqtt.0, ts.mqtt.1);
    let lock = Proc::spawn(
        "lock",
        &[
            "agent",
            "lock",
            "--data",
            &s(&lock_data),
            "--mqtt",
            &mqtt,
            "--id",
            home.lock.as_str(),
            "--local",
            "127.0.0.1:0",
            "--scene",
            &s(&scene_dir),
            "--motor-ms",
            "100",
        ],
    );
    let local: SocketAddr = read_when_there(&lock_data.join("local.addr"), ceiling)
        .await
        .parse()
        .unwrap();
    let camera = Proc::spawn(
        "camera",
        &[
            "agent",
            "camera",
            "--data",
            &s(&cam_data),
            "--mqtt",
            &mqtt,
            "--id",
            home.camera.as_str(),
            "--scene",
            &s(&scene_dir),
            "--lock-local",
            &local.to_string(),
        ],
    );
    pair_door(&ts.handle, &home, &cam_data, &lock_data).await;
    eventually(ceiling, "the server shows the lock locked", || {
        let (h, hid) = (ts.handle.clone(), home.id.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            s.doors[0].lock.value == Shown::Known(LockValue::Locked)
        }
    })
    .await;
    eventually(ceiling, "the camera opens its session", || {
        let n = camera.count("session open");
        async move { n > 0 }
    })
    .await;
    Door {
        home,
        scene,
        local,
        lock,
        camera,
    }
}

/// The driver arrives, reads the nonce over the local channel, is authorised, the bolt
/// retracts and the door opens.
async fn open_entry(ts: &TestServer, door: &Door) -> doorward_proto::Id {
    let ceiling = Duration::from_secs(10);
    let delivery = schedule(&ts.handle, &door.home).await;
    arrive(&door.scene);
    eventually(ceiling, "the camera sees the driver", || {
        let n = door.camera.count("entry pace");
        async move { n > 0 }
    })
    .await;
    // The camera's receipt must be fresh at the server: let a few entry proofs arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let req = entry_request(&door.home, &delivery, door.local).await;
    let d = tokio::time::timeout(ceiling, ts.handle.request_entry(req))
        .await
        .expect("a decision");
    assert!(matches!(d, EntryDecision::Authorised { .. }), "{d:?}");
    eventually(ceiling, "the lock reports UNLOCKED", || {
        let n = door.lock.count("UNLOCKED");
        async move { n == 1 }
    })
    .await;
    door.scene.push_door(true).unwrap();
    eventually(ceiling, "the door opens", || {
        let n = door.lock.count("door Open");
        async move { n > 0 }
    })
    .await;
    door.scene.walk(0, 1, &[(1_500, 0.6)]).unwrap();
    delivery
}

fn alarms(ts: &TestServer, kind: &str) -> u64 {
    let needle = format!("doorward_alarms_total{{kind=\"{kind}\"}} ");
    ts.handle
        .metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// A camera cut off mid-entry by `signal`: the server alarms WitnessLost within the test
/// ceiling, the lock relocks by itself when the door closes, the state shows the camera
/// UNKNOWN with its age, and another entry during the outage is refused.
async fn camera_cut_mid_entry(signal: &str) {
    let ceiling = Duration::from_secs(10);
    let ts = TestServer::start(None).await;
    let root = ts.path("door");
    let door = start_door(&ts, &root).await;
    let delivery = open_entry(&ts, &door).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        alarms(&ts, "witness_lost"),
        0,
        "no alarm while the camera proves"
    );

    // The cut: SIGSTOP is silent (no disconnect, like a de-auth), SIGKILL drops the socket.
    door.camera.signal(signal);
    let cut = Instant::now();
    eventually(Duration::from_secs(5), "WitnessLost at the server", || {
        let n = alarms(&ts, "witness_lost");
        async move { n >= 1 }
    })
    .await;
    eprintln!("WitnessLost {:?} after {signal}", cut.elapsed());

    // The lock hears no checkpoint either and locks itself out of grants.
    eventually(ceiling, "the lock enters witness lockout", || {
        let n = door.lock.count("WITNESS LOCKOUT");
        async move { n > 0 }
    })
    .await;
    // The driver walks out and pulls the door shut: the lock relocks with no command.
    door.scene
        .walk(0, 1, &[(1_000, -0.3), (2_000, -1.0), (2_300, -1.5)])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    door.scene.push_door(false).unwrap();
    eventually(ceiling, "the lock relocks by itself", || {
        let n = door.lock.count("relocked");
        async move { n == 1 }
    })
    .await;

    // The home sees the camera UNKNOWN, with the age of its last proof.
    eventually(ceiling, "the camera is shown UNKNOWN with its age", || {
        let (h, hid) = (ts.handle.clone(), door.home.id.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            matches!(
                s.doors[0].camera.value,
                Shown::Unknown {
                    last: Some(CameraValue::Recording { .. }),
                    age_ms: Some(age),
                } if age > 0
            )
        }
    })
    .await;

    // A second entry during the outage: the driver reads a fresh nonce and asks again.
    let again = entry_request(&door.home, &delivery, door.local).await;
    let d = tokio::time::timeout(ceiling, ts.handle.request_entry(again))
        .await
        .expect("a decision");
    assert!(
        matches!(d, EntryDecision::Denied { .. }),
        "no entry without a live witness: {d:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        door.lock.count("UNLOCKED"),
        1,
        "the bolt never retracted again"
    );
    let st = ts.handle.home_state(&door.home.id).await.unwrap().unwrap();
    assert_ne!(
        st.doors[0].lock.value,
        Shown::Known(LockValue::Unlocked),
        "{st:?}"
    );

    // Denied at the lock itself (I1): even a compromised server holding every key but the
    // camera's live checkpoints — server key, issuing key, and here the camera's own key
    // to attest the nonce — cannot open the door while the lock hears no checkpoint.
    forge_unlock_at_lock(&ts, &door, &root.join("camera")).await;
    eventually(ceiling, "the lock denies the forged command itself", || {
        let n = door.lock.count("DENIED: WitnessLockout");
        async move { n == 1 }
    })
    .await;
    assert_eq!(
        door.lock.count("UNLOCKED"),
        1,
        "the bolt never retracted again"
    );

    let Door { lock, camera, .. } = door;
    assert!(
        lock.stop().success(),
        "the lock agent stops cleanly on SIGTERM"
    );
    drop(camera);
    ts.stop().await;
}

fn read_seed(path: &Path) -> doorward_proto::KeyPair {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).unwrap();
    doorward_proto::KeyPair::from_seed(&seed)
}

/// Plays a server that lies: a fully signed unlock command for a fresh nonce of the lock,
/// with a receipt claiming the camera's last proof arrived just now and an attestation
/// signed with the camera's key, published straight to the lock's down topic.
async fn forge_unlock_at_lock(ts: &TestServer, door: &Door, cam_data: &Path) {
    use doorward_proto::grant::{self, GrantSpec, Purpose};
    use doorward_proto::*;
    let home = &door.home;
    let server = read_seed(&ts.path("server/keys/server.key"));
    let issuer = read_seed(&ts.path(&format!("server/keys/homes/{}/issuer.key", home.id)));
    let camera = read_seed(&cam_data.join("device.key"));
    let st = ts.handle.home_state(&home.id).await.unwrap().unwrap();
    let (seq, head) = match st.doors[0].camera.value {
        Shown::Unknown {
            last: Some(CameraValue::Recording { seq, head }),
            ..
        }
        | Shown::Known(CameraValue::Recording { seq, head }) => (seq, head),
        ref v => panic!("no camera proof on record: {v:?}"),
    };
    let nonce = doorward_agent::local_channel::read_nonce(door.local)
        .await
        .unwrap()
        .body
        .nonce;
    let now = wall_ms();
    let mut g = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut g);
    let spec = GrantSpec {
        id: GrantId(g),
        home: home.id.clone(),
        lock: home.lock.clone(),
        purpose: Purpose::Delivery(id("forged")),
        carrier: Some(home.carrier.clone()),
        driver: home.driver.public(),
        not_before_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        max_open_ms: 120_000,
    };
    let cmd = UnlockCommand {
        issuer: Signed::sign(
            IssuerCert {
                home: home.id.clone(),
                issuer: issuer.public(),
                not_before_ms: now - 60_000,
                not_after_ms: now + 3_600_000,
                serial: 1,
            },
            &home.root,
        ),
        grant: grant::issue(&spec, &issuer, &mut rand_core::OsRng).unwrap(),
        driver_sig: home.driver.sign(
            DRIVER_NONCE_CONTEXT,
            &driver_nonce_message(&home.lock, &nonce),
        ),
        context: Signed::sign(
            UnlockContext {
                lock: home.lock.clone(),
                nonce,
                server_ms: now,
                epoch: 0,
                grant: spec.id,
                driver: home.driver.public(),
                receipt: CameraReceipt {
                    camera: home.camera.clone(),
                    seq,
                    head,
                    received_ms: now,
                },
            },
            &server,
        ),
        witness: Signed::sign(
            WitnessAttestation {
                camera: home.camera.clone(),
                lock: home.lock.clone(),
                nonce,
                seq,
                head,
                recording: true,
            },
            &camera,
        ),
    };
    let env = Envelope::signed(Body::UnlockCommand(Box::new(cmd)), &server);
    let (link, mut events) = doorward_agent::link::Link::start(
        &ts.mqtt.0,
        ts.mqtt.1,
        &format!("forger-{}", tag()),
        vec![format!("doorward/v1/{}/forger/down", home.id)],
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while !matches!(
            events.recv().await,
            Some(doorward_agent::link::LinkEvent::Connected)
        ) {}
    })
    .await
    .expect("the forger connects");
    assert!(link.publish(
        &format!("doorward/v1/{}/{}/down", home.id, home.lock),
        doorward_agent::link::QoS::AtLeastOnce,
        env.to_bytes()
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_sigstopped_mid_entry_is_alarmed_and_the_lock_relocks_itself() {
    camera_cut_mid_entry("-STOP").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_sigkilled_mid_entry_is_alarmed_and_the_lock_relocks_itself() {
    camera_cut_mid_entry("-KILL").await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Mosquitto on `port`, from PATH or /usr/sbin. The test fails (never skips) without it:
/// scripts/test installs it (`apt-get install mosquitto`).
fn mosquitto(port: u16) -> Child {
    let bin = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto");
    let c = Command::new(bin)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {bin} ({e}): install Mosquitto (scripts/test does) to run this test"
            )
        });
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(5), "mosquitto listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    c
}

/// The broker restarts mid-delivery: the server and both agents reconnect and resubscribe,
/// and the lock's reports made while the broker was down (door closed, relocked) reach the
/// server afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_delivery_loses_nothing() {
    let ceiling = Duration::from_secs(15);
    let port = free_port();
    let mut broker = mosquitto(port);
    let ts = TestServer::start(Some(("127.0.0.1".into(), port))).await;
    let root = ts.path("door");
    let door = start_door(&ts, &root).await;
    let delivery = open_entry(&ts, &door).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    // The broker goes down mid-delivery; meanwhile the driver leaves and the door closes.
    broker.kill().unwrap();
    broker.wait().unwrap();
    door.scene
        .walk(0, 1, &[(1_000, -0.3), (2_000, -1.0), (2_300, -1.5)])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    door.scene.push_door(false).unwrap();
    eventually(ceiling, "the lock relocks with the broker down", || {
        let n = door.lock.count("relocked");
        async move { n == 1 }
    })
    .await;
    let lost = door.lock.count("lost the broker");
    assert!(lost >= 1, "the lock noticed the broker go");

    // Back on the same port: everyone reconnects and resubscribes.
    let mut broker = mosquitto(port);
    eventually(ceiling, "the lock reconnects", || {
        let n = door.lock.count("connected to the broker");
        async move { n >= 2 }
    })
    .await;
    eventually(ceiling, "the camera reconnects", || {
        let n = door.camera.count("connected to the broker");
        async move { n >= 2 }
    })
    .await;
    // The reports kept while the broker was down reach the server: it shows the door
    // relocked, on the lock's own signed report.
    eventually(
        ceiling,
        "the server shows the relock made during the outage",
        || {
            let (h, hid, d) = (ts.handle.clone(), door.home.id.clone(), delivery.clone());
            async move {
                let s = h.home_state(&hid).await.unwrap().unwrap();
                let door = &s.doors[0];
                door.lock.value == Shown::Known(LockValue::Locked)
                    && door.delivery.as_ref().is_none_or(|(id, p)| {
                        id == &d
                            && matches!(p, Phase::Relocked | Phase::EgressWitnessed | Phase::Done)
                    })
            }
        },
    )
    .await;
    // Subscriptions are back on both sides: the camera's proofs reach the server again, and
    // the server's answers reach the lock (its time requests are answered over the new
    // connection, so a nonce it issues now carries a synchronised clock).
    eventually(ceiling, "the camera is shown recording again", || {
        let (h, hid) = (ts.handle.clone(), door.home.id.clone());
        async move {
            let s = h.home_state(&hid).await.unwrap().unwrap();
            matches!(
                s.doors[0].camera.value,
                Shown::Known(CameraValue::Recording { .. })
            )
        }
    })
    .await;
    // The silence during the outage was supervised, never shown as "locked": the alarms
    // raised are the supervision kinds (the driver is blocked after them, I4).
    assert!(
        alarms(&ts, "witness_lost") + alarms(&ts, "lock_silent") >= 1,
        "the outage mid-entry is alarmed"
    );

    let Door { lock, camera, .. } = door;
    assert!(lock.stop().success());
    assert!(camera.stop().success());
    ts.stop().await;
    let _ = broker.kill();
    let _ = broker.wait();
}
