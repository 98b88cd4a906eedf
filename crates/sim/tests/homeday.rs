//! The home-day (BRIEF §7): idle supervision and two deliveries raise nothing, and the
//! supervision traffic really flows.

use doorward_sim::homeday::{self, HomeDayPlan, Totals, DELIVERIES_PER_DAY};
use doorward_sim::Signal;

/// A short day keeps the debug build quick; the supervision it exercises is the same.
const HOURS: u64 = 3;
/// Idle proof and report interval of the cores' defaults, ms.
const IDLE_MS: u64 = 30_000;

#[test]
fn a_short_home_day_raises_nothing_and_supervision_flows() {
    let (o, rec) = homeday::run_home(3, HOURS, None, false);
    assert!(!o.failed(), "{:?}", o.problems);
    assert_eq!(o.false_alarms, 0);
    assert!(rec.seen.is_empty(), "{:?}", rec.seen);
    assert!(rec.raised.is_empty(), "{:?}", rec.raised);

    // Both deliveries happened: each granted, the door opened once each, both recorded.
    assert_eq!(rec.sessions.len(), DELIVERIES_PER_DAY, "{:?}", rec.sessions);
    assert_eq!(rec.crossings.len(), DELIVERIES_PER_DAY);
    assert_eq!(rec.authorised.len(), DELIVERIES_PER_DAY);
    assert_eq!(rec.confirmed.len(), DELIVERIES_PER_DAY);

    // Idle supervision ran the whole day: one idle proof and one periodic report per 30 s
    // at least (entries add faster ones), and a signed camera checkpoint every 10 minutes
    // (the camera's default), about one a second during the two entries.
    let idle = HOURS * 3_600_000 / IDLE_MS;
    let t = Totals::of(&rec);
    assert!(t.proofs_received >= idle, "{t:?}");
    assert!(t.lock_periodic_sent >= idle, "{t:?}");
    assert!(t.lock_messages_received >= t.lock_periodic_sent, "{t:?}");
    assert!(t.checkpoints_sent >= HOURS * 6, "{t:?}");
    assert!(t.checkpoints_sent < idle / 4, "{t:?}");
    // Entries are rendered at 8 fps for 60 s each; idle stretches get one frame per proof.
    assert!(
        t.frames >= DELIVERIES_PER_DAY as u64 * 480 + idle - 10,
        "{t:?}"
    );
    assert!(
        t.frames < DELIVERIES_PER_DAY as u64 * 1_000 + 2 * idle,
        "{t:?}"
    );
}

#[test]
fn idle_checkpoint_interval_sets_the_signed_checkpoints() {
    let (o, rec) = homeday::run_home(4, HOURS, Some(IDLE_MS), false);
    assert!(!o.failed(), "{:?}", o.problems);
    let t = Totals::of(&rec);
    let idle = HOURS * 3_600_000 / IDLE_MS;
    // With the interval set to the idle proof interval, every idle proof comes with one.
    assert!(t.checkpoints_sent >= idle, "{t:?}");
    assert!(t.proofs_received >= idle, "{t:?}");
}

#[test]
fn the_report_sums_the_days_and_is_one_json_object() {
    let r = homeday::run_plan(&HomeDayPlan {
        homes: 2,
        first_seed: 11,
        threads: 2,
        hours: 1,
        idle_checkpoint_ms: None,
    });
    assert!(r.passed(), "{:?}", r.failing);
    assert_eq!(r.home_days, 2);
    assert_eq!(r.totals.door_openings, 2 * DELIVERIES_PER_DAY as u64);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("one JSON object");
    for k in [
        "home_days",
        "cpu_s",
        "wall_s",
        "home_days_per_cpu_min",
        "false_alarms",
        "breaches",
    ] {
        assert!(v.get(k).is_some(), "{k} missing from {v}");
    }
    assert_eq!(v["false_alarms"], 0);
    // Seeds, not threads, decide what happens.
    let one = homeday::run_home(11, 1, None, false).1;
    let again = homeday::run_home(11, 1, None, false).1;
    assert_eq!(Totals::of(&one), Totals::of(&again));
    assert_eq!(one.seen, again.seen);
    assert!(one.seen.iter().all(|(_, s)| *s != Signal::ConnectionLost));
}
