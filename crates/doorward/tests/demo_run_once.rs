//! `doorward demo --run-once --json` as a newcomer runs it: the real binary starts the server,
//! the lock and camera agents as processes and the real broker, makes one delivery, then runs
//! S1 and S3, and prints one JSON object. The values are checked for cause and effect (the
//! alarms each attack must raise, none it must not, never a false "locked", a record that
//! verifies, footage uploaded by the camera); latencies are reported, not asserted (the
//! figures belong to BENCHMARKS.md).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn run_once_delivers_raises_the_attacks_alarms_and_its_record_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_doorward"))
        .args(["demo", "--run-once", "--json", "--data"])
        .arg(dir.path().join("demo"))
        .output()
        .expect("the doorward binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
    // The run's own waits are bounded (each at most a minute); this is a ceiling, not a
    // performance check.
    assert!(
        t0.elapsed() < Duration::from_secs(900),
        "{:?}",
        t0.elapsed()
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON object on stdout: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    eprintln!("{v}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut want = vec![
        "alarms",
        "audit_verified",
        "deliveries",
        "false_alarms",
        "false_locked_ms",
    ];
    want.sort();
    assert_eq!(keys, want, "{v}");
    assert_eq!(v["deliveries"], 1, "{v}");
    assert_eq!(v["false_alarms"], 0, "{v}\n{stderr}");
    assert_eq!(v["false_locked_ms"], 0, "{v}");
    assert_eq!(v["audit_verified"], true, "{v}\n{stderr}");
    let alarms = v["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 2, "{v}");
    assert_eq!(alarms[0]["scenario"], "S1");
    assert_eq!(alarms[0]["kind"], "witness_lost", "{v}");
    assert_eq!(alarms[1]["scenario"], "S3");
    let s3 = alarms[1]["kind"].as_str().unwrap();
    assert!(
        ["unconfirmed_actuation", "not_relocked"].contains(&s3),
        "S3 raises an unconfirmed relock: {v}"
    );
    for a in alarms {
        assert!(a["latency_ms"].is_u64(), "{v}");
    }
    // The data directory given is kept, with the exported record that was verified.
    let exported = std::fs::read_dir(dir.path().join("demo"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "dwaudit"));
    assert!(exported, "the exported record is kept for a second look");
    // The camera agent uploaded the delivery's footage to the server (it says so once the
    // server has stored a segment), and no segment was refused or dropped.
    let log = std::fs::read_to_string(dir.path().join("demo").join("agents.log")).unwrap();
    assert!(
        log.contains("footage uploaded to the server"),
        "the demo's camera uploads footage:\n{log}"
    );
    for bad in [
        "refused by the server",
        "upload queue full",
        "given up after",
    ] {
        assert!(!log.contains(bad), "{bad}:\n{log}");
    }
}
