//! Runs scenarios over many seeds and sums them up: the table and the JSON of
//! `doorward sim attacks`.

use serde::Serialize;

use crate::check::RunOutcome;
use crate::scenario::{Scenario, SCENARIOS};

/// Alert latency percentiles over the runs that raised the expected signal, ms.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// One scenario's results.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// `S1`…`S24` or `benign`.
    pub id: &'static str,
    /// Short name.
    pub name: &'static str,
    /// Runs (seeds).
    pub runs: u64,
    /// Runs with at least one breach.
    pub breaches: u64,
    /// Runs in which the expected signal never reached the customer (or a denied door opened).
    pub undetected: u64,
    /// Alarms of unexpected kinds, over all runs.
    pub false_alarms: u64,
    /// Time shown "locked" while not locked, beyond display lag, summed over runs, ms.
    pub false_locked_ms: u64,
    /// Attack start to the customer seeing the expected signal.
    pub alert_latency_ms: Latency,
    /// Seeds of failing runs (not in the JSON).
    #[serde(skip)]
    pub failing: Vec<RunOutcome>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Seeds per scenario.
    pub seeds: u64,
    /// Per scenario, in catalogue order.
    pub scenarios: Vec<ScenarioReport>,
}

fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Sums up the outcomes of one scenario.
pub fn summarise(sc: &'static Scenario, outcomes: Vec<RunOutcome>) -> ScenarioReport {
    let mut lat: Vec<u64> = outcomes.iter().filter_map(|o| o.latency_ms).collect();
    lat.sort_unstable();
    ScenarioReport {
        id: sc.id,
        name: sc.name,
        runs: outcomes.len() as u64,
        breaches: outcomes.iter().filter(|o| o.breaches > 0).count() as u64,
        undetected: outcomes.iter().filter(|o| o.undetected).count() as u64,
        false_alarms: outcomes.iter().map(|o| o.false_alarms as u64).sum(),
        false_locked_ms: outcomes.iter().map(|o| o.false_locked_ms).sum(),
        alert_latency_ms: Latency {
            p50: percentile(&lat, 50),
            p99: percentile(&lat, 99),
            max: lat.last().copied().unwrap_or(0),
        },
        failing: outcomes.into_iter().filter(|o| o.failed()).collect(),
    }
}

impl Report {
    /// Exactly one JSON object, the same bytes for the same seeds.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report serialises")
    }

    /// A table for people, with the seeds of failing runs under it.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "{:<7} {:<34} {:>6} {:>8} {:>10} {:>6} {:>9} {:>6} {:>6} {:>6}\n",
            "id",
            "name",
            "runs",
            "breaches",
            "undetected",
            "false",
            "locked_ms",
            "p50",
            "p99",
            "max"
        );
        for r in &self.scenarios {
            s += &format!(
                "{:<7} {:<34} {:>6} {:>8} {:>10} {:>6} {:>9} {:>6} {:>6} {:>6}\n",
                r.id,
                r.name,
                r.runs,
                r.breaches,
                r.undetected,
                r.false_alarms,
                r.false_locked_ms,
                r.alert_latency_ms.p50,
                r.alert_latency_ms.p99,
                r.alert_latency_ms.max
            );
        }
        for r in &self.scenarios {
            for f in r.failing.iter().take(5) {
                s += &format!(
                    "FAILED {} seed {}: {} (replay: doorward sim attacks --scenario {} --seed {})\n",
                    r.id,
                    f.seed,
                    f.problems.join("; "),
                    r.id,
                    f.seed
                );
            }
        }
        s
    }

    /// Whether every run of every scenario passed.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|r| r.failing.is_empty())
    }
}

/// Every scenario, or the one named.
pub fn select(filter: Option<&str>) -> Vec<&'static Scenario> {
    SCENARIOS
        .iter()
        .filter(|s| filter.is_none_or(|f| s.id.eq_ignore_ascii_case(f)))
        .collect()
}
