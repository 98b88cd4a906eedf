//! `doorward demo --run-once --json`: one normal delivery, then S1, then S3, through the real
//! processes and the real broker; then the figures, as one JSON object:
//!
//! ```json
//! {"deliveries": 1, "alarms": [{"scenario": "S1", "kind": "witness_lost", "latency_ms": 480},
//!  {"scenario": "S3", "kind": "unconfirmed_actuation", "latency_ms": 2030}],
//!  "false_alarms": 0, "false_locked_ms": 0, "audit_verified": true}
//! ```
//!
//! - Alarms are read from the homeowner's live event stream (the real SSE endpoint); the
//!   latency runs from the attack's start to the alarm's arrival there. An alarm of a kind
//!   the running phase neither requires nor allows (the attack lab's lists) is a false alarm.
//! - `false_locked_ms` adds up the time the API showed the lock "locked" while the virtual
//!   hardware's truth (the bolt's file and the door's swing in the scene directory) was not
//!   bolt thrown and door shut, sampled every [`SAMPLE_MS`]; a sample counts only if the truth
//!   read before and after the API call agree.
//! - `audit_verified` is `doorward audit verify`'s verdict (this binary, run as a child) on the
//!   home's record exported after the server stopped and flushed it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use doorward_agent::scene::{wall_ms, SceneDir, DOOR_SENSOR_DEG};
use doorward_proto::Bolt;
use serde_json::{json, Value};

use super::attack::{self, Scenario};
use super::procs::Echo;
use super::setup::{Demo, Opts};
use crate::client::{Api, Auth};
use crate::driver_cmd::Ending;

/// How often the shown state is sampled against the hardware's truth, ms.
pub const SAMPLE_MS: u64 = 25;
/// How long the run waits after each phase for late alarms and for the lock to show locked
/// again, ms.
pub const SETTLE_MS: u64 = 3_000;
/// Longest the lock may take to show locked again after an attack, ms.
pub const RECOVER_MS: u64 = 20_000;

/// One alarm as it arrived on the live stream.
#[derive(Clone, Debug)]
struct Seen {
    phase: usize,
    kind: String,
    at: Instant,
}

const PHASES: [Option<Scenario>; 3] = [None, Some(Scenario::S1), Some(Scenario::S3)];

/// Runs the measured sequence and prints the report.
pub async fn run(
    data: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    json_out: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let temp = data.is_none();
    let data = data.unwrap_or_else(|| {
        let mut r = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
        std::env::temp_dir().join(format!("doorward-run-once-{}", hex::encode(r)))
    });
    let say: super::setup::Say = if json_out {
        Arc::new(|l: String| eprintln!("{l}"))
    } else {
        Arc::new(|l: String| println!("{l}"))
    };
    std::fs::create_dir_all(&data)?;
    let opts = Opts {
        data: data.clone(),
        listen,
        default_http: None,
        mqtt_port: None,
        echo: Echo::File(data.join("agents.log")),
        keep: !temp,
        say: say.clone(),
    };
    let mut demo = Demo::start(opts, t0).await?;
    let result = measure(&mut demo).await;
    demo.stop().await?;
    let store = demo.handle.store();
    let verified = verify_audit(&demo, store.as_ref(), &data).await;
    let (deliveries, alarms, false_alarms, false_locked_ms) = result?;
    let verified = verified?;
    let report = json!({
        "deliveries": deliveries,
        "alarms": alarms,
        "false_alarms": false_alarms,
        "false_locked_ms": false_locked_ms,
        "audit_verified": verified,
    });
    if json_out {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if temp {
        let _ = std::fs::remove_dir_all(&data);
    }
    Ok(())
}

type Figures = (u64, Vec<Value>, u64, u64);

async fn measure(demo: &mut Demo) -> Result<Figures> {
    let phase = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut stream = demo
        .api
        .events(
            &format!("/api/homes/{}/events", demo.home),
            &Auth::Bearer(&demo.token),
        )
        .await?;
    let sse = {
        let (phase, seen, api, token, home) = (
            phase.clone(),
            seen.clone(),
            demo.api.clone(),
            demo.token.clone(),
            demo.home.clone(),
        );
        tokio::spawn(async move {
            let mut ids = HashSet::new();
            while let Ok(Some(ev)) = stream.next().await {
                if ev.name != "alarm" {
                    continue;
                }
                let at = Instant::now();
                let id = ev.data["id"].as_u64().unwrap_or(0);
                if !ids.insert(id) {
                    continue; // a re-sent alarm
                }
                let kind = ev.data["kind"].as_str().unwrap_or("?").to_owned();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                    phase: phase.load(Ordering::SeqCst),
                    kind,
                    at,
                });
                // Acknowledged, so it stops being re-sent.
                let _ = api
                    .call(
                        "POST",
                        &format!("/api/homes/{home}/alarms/{id}/ack"),
                        &Auth::Bearer(&token),
                        None,
                    )
                    .await;
            }
        })
    };
    let false_locked = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample(
        demo.api.clone(),
        demo.token.clone(),
        demo.home.to_string(),
        demo.scene.clone(),
        false_locked.clone(),
    ));

    let mut deliveries = 0;
    let mut starts = [None, None, None];
    for (i, sc) in PHASES.iter().enumerate() {
        phase.store(i, Ordering::SeqCst);
        match sc {
            None => {
                (demo.say)("run-once: a normal delivery".into());
                let (_, ending) = demo.deliver(&mut |_| {}).await?;
                if !matches!(ending, Ending::Delivered { .. }) {
                    bail!("the normal delivery did not go through: {ending:?}");
                }
                deliveries += 1;
            }
            Some(sc) => {
                (demo.say)(format!("run-once: a delivery under {}", sc.name()));
                let a = attack::run(demo, *sc).await?;
                starts[i] = Some(a.started);
            }
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
        demo.wait_idle().await?;
        let t = Instant::now();
        while demo.shown_lock().await? != "locked" {
            if t.elapsed() >= Duration::from_millis(RECOVER_MS) {
                bail!(
                    "after phase {} the lock was not shown locked again within {} s: {}",
                    i,
                    RECOVER_MS / 1000,
                    demo.state().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    phase.store(usize::MAX, Ordering::SeqCst);
    sampler.abort();
    sse.abort();

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut alarms = Vec::new();
    let mut false_alarms = 0;
    for (i, sc) in PHASES.iter().enumerate() {
        let here: Vec<&Seen> = seen.iter().filter(|s| s.phase == i).collect();
        let (required, allowed): (&[&str], &[&str]) = match sc {
            None => (&[], &[]),
            Some(sc) => (sc.required(), sc.allowed()),
        };
        for s in &here {
            if !required.contains(&s.kind.as_str()) && !allowed.contains(&s.kind.as_str()) {
                (demo.say)(format!(
                    "run-once: FALSE ALARM {} in phase {}",
                    s.kind,
                    sc.map_or("normal", |s| s.name())
                ));
                false_alarms += 1;
            }
        }
        if let (Some(sc), Some(start)) = (sc, starts[i]) {
            // The first alarm of a required kind.
            let first = here
                .iter()
                .filter(|s| sc.required().contains(&s.kind.as_str()))
                .min_by_key(|s| s.at);
            match first {
                Some(s) => alarms.push(json!({
                    "scenario": sc.name(),
                    "kind": s.kind,
                    "latency_ms": s.at.saturating_duration_since(start).as_millis() as u64,
                })),
                None => (demo.say)(format!(
                    "run-once: {} raised none of {:?}",
                    sc.name(),
                    sc.required()
                )),
            }
        }
    }
    Ok((
        deliveries,
        alarms,
        false_alarms,
        false_locked.load(Ordering::SeqCst),
    ))
}

/// The virtual hardware's truth: bolt thrown and door shut.
fn truly_locked(scene: &SceneDir) -> bool {
    scene.bolt() == Some(Bolt::Thrown) && scene.door_angle(wall_ms()) <= DOOR_SENSOR_DEG
}

async fn sample(api: Api, token: String, home: String, scene: SceneDir, total: Arc<AtomicU64>) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(SAMPLE_MS)).await;
        let before = truly_locked(&scene);
        let shown = api
            .call(
                "GET",
                &format!("/api/homes/{home}"),
                &Auth::Bearer(&token),
                None,
            )
            .await;
        let after = truly_locked(&scene);
        let now = Instant::now();
        let step = now.duration_since(last).as_millis() as u64;
        last = now;
        let Ok(r) = shown else { continue };
        let locked = r.json["doors"][0]["lock"]["shown"]["value"] == "locked";
        if locked && !before && !after {
            total.fetch_add(step, Ordering::SeqCst);
        }
    }
}

/// Exports the home's record from the stopped server's store and runs
/// `doorward audit verify` on it.
async fn verify_audit(
    demo: &Demo,
    store: &dyn doorward_store::Store,
    data: &std::path::Path,
) -> Result<bool> {
    let file = data.join(format!("{}.dwaudit", demo.home));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&file)
            .with_context(|| format!("cannot create {}", file.display()))?,
    );
    store
        .export_audit(&demo.home, demo.server_key, &mut out)
        .context("exporting the home's record")?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["audit", "verify"])
        .arg(&file)
        .args(["--server-key", &demo.server_key.to_hex()])
        .output()
        .context("running doorward audit verify")?;
    (demo.say)(format!(
        "run-once: doorward audit verify {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stdout).trim()
    ));
    Ok(out.status.success())
}
