//! `doorward bench --only witness`, reduced (the section's smoke setting: 2 homes, one round,
//! one keep-alive client at 3 s and one at 2 s standing in for 60 s and 5 s), through the
//! real binary: the server, its embedded broker, the agents as processes.
//!
//! Cause and effect, not speed: every home's camera is stopped silently and its
//! homeowner's live stream receives `witness_lost` after that (the section fails a round
//! whose alarm was raised or arrived before the cut, or never came); each keep-alive client,
//! cut the same way, has its will published by the broker only once its keep-alive ran out
//! (never at once, as a disconnect would). The figures belong to BENCHMARKS.md.

use std::process::Command;

/// The stand-ins for 60 s and 5 s in the smoke setting, ms.
const SMOKE_KEEP_ALIVES_MS: [f64; 2] = [3_000.0, 2_000.0];

#[test]
fn silent_cuts_raise_witness_lost_and_the_wills_wait_for_the_keep_alive() {
    let out = Command::new(env!("CARGO_BIN_EXE_doorward"))
        .args(["bench", "--quick", "--only", "witness", "--json"])
        .env("DOORWARD_BENCH_WITNESS_SMOKE", "1")
        .output()
        .expect("the doorward binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one JSON object: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    eprintln!("{v}");
    let w = &v["witness_loss"];
    let f = |k: &str| {
        w[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {v}"))
    };
    // The alarm came (the section fails a round without one, or with one before the cut).
    assert!(f("p99_ms") > 0.0, "{v}");
    // A will published because the connection closed would come within milliseconds; the
    // broker publishes it only once it has heard nothing for 1.5 × keep-alive, and the
    // clients talked until the cut.
    assert!(f("lwt60_ms") >= SMOKE_KEEP_ALIVES_MS[0], "{v}");
    assert!(f("lwt5_ms") >= SMOKE_KEEP_ALIVES_MS[1], "{v}");
    let ratio60 = f("lwt60_ms") / f("p99_ms");
    assert!((f("ratio60") - ratio60).abs() <= 0.1, "{v}");
    let ratio5 = f("lwt5_ms") / f("p99_ms");
    assert!((f("ratio5") - ratio5).abs() <= 0.1, "{v}");
    // The other sections did not run.
    assert_eq!(v["lock_decision_p99_us"], 0.0, "{v}");
}
