//! The checkers: they read the run's records (what really happened, what the customer saw)
//! and judge the run, never the cores' own opinion of themselves.

use doorward_proto::AlarmKind;

use crate::attack::Signal;
use crate::scenario::Scenario;
use crate::world::Records;

/// How long after an unwitnessed crossing the customer may learn that the witness failed for
/// it still to count as known, ms.
pub const WITNESS_ALARM_GRACE_MS: u64 = 2_000;
/// Slack around a proof's span of frames when matching a crossing to footage, ms.
pub const FOOTAGE_SLACK_MS: u64 = 250;

/// Alarms that tell the customer the footage of an entry is missing or untrustworthy.
const WITNESS_ALARMS: &[AlarmKind] = &[
    AlarmKind::WitnessLost,
    AlarmKind::FrozenFootage,
    AlarmKind::LoopedFootage,
    AlarmKind::BlindedCamera,
    AlarmKind::SceneMismatch,
    AlarmKind::StreamTampered,
    AlarmKind::DeviceSilent,
];

/// The verdict on one run.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    /// The seed that reproduces the run.
    pub seed: u64,
    /// Entries that were not granted, not witnessed (nor alarmed) or not recorded.
    pub breaches: u32,
    /// The expected signal never reached the customer, or a "denied" door opened.
    pub undetected: bool,
    /// Alarms of kinds the scenario does not expect.
    pub false_alarms: u32,
    /// Time shown "locked" while not locked, beyond the display lag, ms.
    pub false_locked_ms: u64,
    /// From the attack's start to the customer seeing the first expected signal, ms.
    pub latency_ms: Option<u64>,
    /// Why the run failed, for a person.
    pub problems: Vec<String>,
}

impl RunOutcome {
    /// Whether anything went wrong.
    pub fn failed(&self) -> bool {
        self.breaches > 0 || self.undetected || self.false_alarms > 0 || self.false_locked_ms > 0
    }
}

/// Judges one run of `sc`.
pub fn judge(sc: &Scenario, seed: u64, rec: &Records) -> RunOutcome {
    let mut o = RunOutcome {
        seed,
        false_locked_ms: rec.false_locked_ms,
        ..RunOutcome::default()
    };
    if rec.false_locked_ms > 0 {
        o.problems.push(format!(
            "shown locked while not locked for {} ms",
            rec.false_locked_ms
        ));
    }
    let start = rec.attack_start_ms;
    for c in &rec.crossings {
        let session = rec
            .sessions
            .iter()
            .rev()
            .find(|s| s.opened_ms <= c.at_ms && s.closed_ms.is_none_or(|x| x >= c.at_ms));
        let Some(s) = session else {
            o.breaches += 1;
            o.problems.push(format!(
                "person {} walked in at {} through a shut door",
                c.person, c.at_ms
            ));
            continue;
        };
        let granted = s.grant.is_some() && !s.reused;
        let footage = rec.witnessed.iter().any(|&(a, b)| {
            a.saturating_sub(FOOTAGE_SLACK_MS) <= c.at_ms && c.at_ms <= b + FOOTAGE_SLACK_MS
        });
        let alarmed = rec.seen.iter().any(|&(t, sig)| {
            t <= c.at_ms + WITNESS_ALARM_GRACE_MS
                && matches!(sig, Signal::Alarm(k) if WITNESS_ALARMS.contains(&k))
        });
        let recorded = s
            .grant
            .is_some_and(|g| rec.authorised.contains(&g) && rec.confirmed.contains(&g));
        if !granted || !(footage || alarmed) || !recorded {
            o.breaches += 1;
            o.problems.push(format!(
                "person {} entered at {} ms: granted {granted}, witnessed {}, recorded {recorded}",
                c.person,
                c.at_ms,
                footage || alarmed
            ));
        }
    }
    if sc.denied {
        let from = start.unwrap_or(0);
        if rec.sessions.iter().any(|s| s.opened_ms >= from) {
            o.undetected = true;
            o.problems
                .push("the door opened after the attack started".to_string());
        }
    }
    let after = |t: u64| start.is_none_or(|s| t >= s);
    for req in sc.required {
        if !rec.seen.iter().any(|&(t, s)| s == *req && after(t)) {
            o.undetected = true;
            o.problems.push(format!("the customer never saw {req:?}"));
        }
    }
    if let Some((from, to)) = rec.live_cut {
        // I14: alarms raised while the live view was cut off are re-sent until acknowledged,
        // so each of them reaches the customer once the connection is back.
        let during: Vec<(u64, AlarmKind)> = rec
            .raised
            .iter()
            .copied()
            .filter(|&(t, _)| from <= t && t < to)
            .collect();
        if during.is_empty() {
            o.undetected = true;
            o.problems
                .push("no alarm was raised while the live view was cut off".to_string());
        }
        for (t, k) in during {
            if !rec
                .seen
                .iter()
                .any(|&(s, sig)| s >= to && sig == Signal::Alarm(k))
            {
                o.undetected = true;
                o.problems.push(format!(
                    "alarm {k:?} raised at {t} ms while the live view was cut off never reached it afterwards"
                ));
            }
        }
    }
    o.latency_ms = rec
        .seen
        .iter()
        .filter(|(t, s)| sc.required.contains(s) && after(*t))
        .map(|(t, _)| t - start.unwrap_or(0))
        .min();
    for &(t, s) in &rec.seen {
        if !sc.required.contains(&s) && !sc.allowed.contains(&s) {
            o.false_alarms += 1;
            o.problems.push(format!("false alarm {s:?} at {t} ms"));
        }
    }
    o
}
