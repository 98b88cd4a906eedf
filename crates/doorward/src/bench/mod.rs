//! `doorward bench`: measures every target of BRIEF §7 end to end, each beside a baseline
//! taken in the same run, and prints a table or (`--json`) exactly one JSON object.
//!
//! Sections, one module each: [`witness`] (silent witness loss against MQTT's keep-alive),
//! [`unlock`] (tap-to-unlock and the server's decisions per second), [`supervision`]
//! (supervised devices, memory, detection, restart), [`audit`] (durable appends, offline
//! verification), [`lock`] (the lock's whole decision) and [`lab`] (home-days per CPU-minute).
//! Every figure is a median or a percentile over repeated samples, never one run.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

mod audit;
mod lab;
mod lock;
mod supervision;
mod unlock;
mod witness;

/// `doorward bench` arguments.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Fewer samples and the smallest scales: finishes in under 4 minutes on 2 cores.
    #[arg(long)]
    pub quick: bool,
    /// Print exactly one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run only these sections (comma-separated: witness, unlock, supervision, audit, lock,
    /// lab); the others print 0 in the JSON.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Section>,
}

/// One section of the bench.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Witness,
    Unlock,
    Supervision,
    Audit,
    Lock,
    Lab,
}

/// What every section reads: the scale of the run.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// `--quick`.
    pub quick: bool,
}

/// One row of the human table: what, the figure, the target, the baseline beside it.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub figure: String,
    pub target: String,
    pub baseline: String,
}

impl Row {
    pub fn new(what: impl Into<String>, figure: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            figure: figure.into(),
            target: String::new(),
            baseline: String::new(),
        }
    }

    pub fn target(mut self, t: impl Into<String>) -> Row {
        self.target = t.into();
        self
    }

    pub fn baseline(mut self, b: impl Into<String>) -> Row {
        self.baseline = b.into();
        self
    }
}

/// The one JSON object `--json` prints (the issue's schema, field for field).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub witness_loss: witness::WitnessLoss,
    pub unlock: unlock::Unlock,
    pub supervision: supervision::Supervision,
    pub audit: audit::Audit,
    pub lock_decision_p99_us: f64,
    pub sim_home_days_per_cpu_min: f64,
}

/// Runs the bench and prints its result.
pub fn run(args: BenchArgs) -> Result<()> {
    let opts = Opts { quick: args.quick };
    let wants = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let t0 = Instant::now();
    let mut report = Report::default();
    let mut rows = Vec::new();
    let progress = |what: &str| {
        if !args.json {
            eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
        }
    };

    // The witness section leaves its keep-alive clients stopped and waiting for the broker to
    // notice (up to 90 s at a 60 s keep-alive): the other sections run meanwhile, after the
    // witness-loss samples themselves, which want a quiet machine.
    let pending = if wants(Section::Witness) {
        progress("witness loss: homes in an entry, cameras stopped silently");
        Some(witness::start(opts).context("witness-loss bench")?)
    } else {
        None
    };
    if wants(Section::Lock) {
        progress("the lock's whole decision");
        let (p99, r) = lock::run(opts).context("lock-decision bench")?;
        report.lock_decision_p99_us = p99;
        rows.extend(r);
    }
    if wants(Section::Audit) {
        progress("audit: durable appends, offline verification");
        let (a, r) = audit::run(opts).context("audit bench")?;
        report.audit = a;
        rows.extend(r);
    }
    if wants(Section::Unlock) {
        progress("tap-to-unlock and unlock decisions");
        let (u, r) = unlock::run(opts).context("unlock bench")?;
        report.unlock = u;
        rows.extend(r);
    }
    if wants(Section::Supervision) {
        progress("supervision scale");
        let (s, r) = supervision::run(opts).context("supervision bench")?;
        report.supervision = s;
        rows.extend(r);
    }
    if wants(Section::Lab) {
        progress("attack lab speed (home-days)");
        let (h, r) = lab::run(opts).context("lab bench")?;
        report.sim_home_days_per_cpu_min = h;
        rows.extend(r);
    }
    if let Some(p) = pending {
        progress("witness loss: waiting for the broker's keep-alive verdicts");
        let (w, r) = p.finish().context("witness-loss bench")?;
        report.witness_loss = w;
        rows.splice(0..0, r);
    }
    progress("done");

    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let head = Row::new("what", "figure")
        .target("target")
        .baseline("baseline (same run)");
    let all: Vec<&Row> = std::iter::once(&head).chain(rows.iter()).collect();
    let w = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (w(|r| &r.what), w(|r| &r.figure), w(|r| &r.target));
    for r in all {
        println!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r.what, r.figure, r.target, r.baseline
        );
    }
}

/// Percentile `p` (0–100) of `xs` by nearest rank; 0 when empty.
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

/// The median of `xs`; 0 when empty.
pub fn median(xs: &mut [f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Rounds to `digits` decimals, for JSON figures that should not print noise.
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut xs, 99.0), 99.0);
        assert_eq!(percentile(&mut xs, 50.0), 50.0);
        assert_eq!(percentile(&mut xs, 100.0), 100.0);
        let mut one = [7.0];
        assert_eq!(percentile(&mut one, 99.0), 7.0);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn json_has_exactly_the_issues_fields() {
        let v = serde_json::to_value(Report::default()).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "audit",
                "lock_decision_p99_us",
                "sim_home_days_per_cpu_min",
                "supervision",
                "unlock",
                "witness_loss"
            ]
        );
        assert_eq!(
            keys(&v["witness_loss"]),
            ["lwt5_ms", "lwt60_ms", "p99_ms", "ratio5", "ratio60"]
        );
        assert_eq!(
            keys(&v["unlock"]),
            ["decision_p99_ms", "decisions_per_s", "tap_p99_ms"]
        );
        assert_eq!(
            keys(&v["supervision"]),
            ["bytes_per_device", "detect_p99_ms", "devices", "restart_s"]
        );
        assert_eq!(
            keys(&v["audit"]),
            ["sqlite_appends_per_s", "verify_entries_per_s"]
        );
    }
}
