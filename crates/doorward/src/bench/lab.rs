//! The attack lab's speed in home-days per CPU-minute (BRIEF §7's home-day).
//!
//! The workload is `doorward sim homeday`'s ([`homeday::run_plan`], the cores' defaults, one
//! thread), repeated over fresh seeds; the CPU time is this thread's, so nothing else the
//! process runs meanwhile counts. A day that raises anything fails the section: a figure for
//! a lab that misjudges is no figure. Baseline in the same run: what the day's signed messages
//! alone cost at this run's Ed25519 speed (every camera checkpoint signed once and verified by
//! the server and the lock, every lock report signed once and verified by the server).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use doorward_proto::{keys, KeyPair};
use doorward_sim::homeday::{self, HomeDayPlan, Totals, DAY_MS};
use rustix::time::{clock_gettime, ClockId};

use super::audit::Rate;
use super::{median, round, Opts, Row};

/// BRIEF §7: home-days per CPU-minute.
pub const TARGET_HOME_DAYS_PER_CPU_MIN: f64 = 3_000.0;
/// Timed signatures and verifications for the baseline.
const CRYPTO_SAMPLES: usize = 200;
/// Hours in a home-day.
const DAY_HOURS: u64 = DAY_MS / 3_600_000;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Repeated runs (the figure is their median; p99 their slow tail).
    pub runs: usize,
    /// Homes per run, one day each, fresh seeds every run.
    pub homes: u64,
    /// Simulated hours per day (24 for the figure; a shorter day counts as that fraction of
    /// a home-day).
    pub hours: u64,
}

impl Scale {
    /// The scale of `doorward bench`.
    pub fn of(opts: Opts) -> Scale {
        Scale {
            runs: if opts.quick { 3 } else { 5 },
            homes: if opts.quick { 2 } else { 10 },
            hours: DAY_HOURS,
        }
    }
}

/// Everything the section measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Home-days per CPU-second (×60 for the figure).
    pub speed: Rate,
    /// What the signed messages alone would allow, home-days per CPU-second.
    pub crypto_floor: Rate,
    /// One Ed25519 signature and one strict verification, median µs.
    pub sign_us: f64,
    pub verify_us: f64,
    /// Signed camera checkpoints in one home-day (mean over the runs).
    pub checkpoints_per_day: f64,
    /// Signed periodic lock reports in one home-day (mean over the runs).
    pub lock_reports_per_day: f64,
}

/// Runs the section; returns home-days per CPU-minute.
pub fn run(opts: Opts) -> Result<(f64, Vec<Row>)> {
    let m = measure(&Scale::of(opts))?;
    Ok((round(m.speed.median * 60.0, 1), m.rows()))
}

/// This thread's CPU time (what the figures of single-threaded work count on a shared
/// machine).
pub fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Median µs of `f` over [`CRYPTO_SAMPLES`] calls.
fn micros(mut f: impl FnMut() -> bool) -> f64 {
    let mut xs: Vec<f64> = (0..CRYPTO_SAMPLES)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(&mut xs)
}

/// Measures at `scale`.
pub fn measure(scale: &Scale) -> Result<Measured> {
    ensure!(scale.runs > 0 && scale.homes > 0, "nothing to measure");
    let day_fraction = scale.hours as f64 / DAY_HOURS as f64;
    let (mut runs, mut sum) = (Vec::new(), Totals::default());
    for run in 0..scale.runs as u64 {
        let plan = HomeDayPlan {
            hours: scale.hours,
            ..HomeDayPlan::new(scale.homes, 1 + run * scale.homes)
        };
        let cpu0 = thread_cpu();
        let r = homeday::run_plan(&plan);
        let cpu = thread_cpu().saturating_sub(cpu0);
        ensure!(
            r.passed() && r.breaches == 0 && r.false_alarms == 0 && r.undetected == 0,
            "a home-day raised something (seeds {}..): {} breaches, {} false alarms, {:?}",
            plan.first_seed,
            r.breaches,
            r.false_alarms,
            r.failing.first().map(|o| &o.problems)
        );
        // Counted as whole home-days: a shorter day is that fraction of one.
        runs.push((scale.homes, cpu.div_f64(day_fraction)));
        sum.add(&r.totals);
    }
    let days = (scale.runs as u64 * scale.homes) as f64 * day_fraction;
    let checkpoints_per_day = sum.checkpoints_sent as f64 / days;
    let lock_reports_per_day = sum.lock_periodic_sent as f64 / days;

    let key = KeyPair::from_seed(&[9; 32]);
    let msg = [0x5a; 96];
    let sig = key.sign("bench", &msg);
    let public = key.public();
    let sign_us = micros(|| key.sign("bench", &msg).0[0] != 1);
    let verify_us = micros(|| keys::verify(&public, "bench", &msg, &sig).is_ok());
    let floor_us = crypto_floor_us(
        checkpoints_per_day,
        lock_reports_per_day,
        sign_us,
        verify_us,
    );
    Ok(Measured {
        speed: Rate::of(&runs),
        crypto_floor: Rate {
            median: if floor_us > 0.0 { 1e6 / floor_us } else { 0.0 },
            p99: 0.0,
        },
        sign_us,
        verify_us,
        checkpoints_per_day,
        lock_reports_per_day,
    })
}

/// What one day's signed messages cost, µs: every camera checkpoint is signed once and
/// verified by the server and by the lock; every periodic lock report is signed once and
/// verified by the server.
pub fn crypto_floor_us(checkpoints: f64, lock_reports: f64, sign_us: f64, verify_us: f64) -> f64 {
    checkpoints * (sign_us + 2.0 * verify_us) + lock_reports * (sign_us + verify_us)
}

impl Measured {
    /// The table's row.
    pub fn rows(&self) -> Vec<Row> {
        let per_min = |x: f64| x * 60.0;
        let ms_per_day = |x: f64| if x > 0.0 { 1e3 / x } else { 0.0 };
        vec![Row::new(
            "attack lab speed, home-days per CPU-minute (cores' defaults, 1 thread)",
            format!(
                "median {:.1}, p99 {:.1} ({:.0} ms of CPU per home-day)",
                per_min(self.speed.median),
                per_min(self.speed.p99),
                ms_per_day(self.speed.median)
            ),
        )
        .target(format!("≥ {TARGET_HOME_DAYS_PER_CPU_MIN:.0}"))
        .baseline(format!(
            "the day's signatures alone ({:.0} checkpoints, {:.0} lock reports; sign {:.1} µs, \
             verify {:.1} µs): {:.0} ms per home-day, {:.0} per CPU-minute",
            self.checkpoints_per_day,
            self.lock_reports_per_day,
            self.sign_us,
            self.verify_us,
            ms_per_day(self.crypto_floor.median),
            per_min(self.crypto_floor.median)
        ))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crypto_floor_counts_each_signature_and_its_verifiers() {
        // 10 × (20 + 2 × 40) + 100 × (20 + 40).
        assert_eq!(crypto_floor_us(10.0, 100.0, 20.0, 40.0), 1_000.0 + 6_000.0);
        assert_eq!(crypto_floor_us(0.0, 0.0, 20.0, 40.0), 0.0);
    }

    /// Cause and effect on a short day: the lab does the day's signed traffic and more, so it
    /// is slower than the signatures alone; the traffic really flowed.
    #[test]
    fn a_short_day_costs_at_least_its_signatures() {
        let m = measure(&Scale {
            runs: 2,
            homes: 1,
            hours: 1,
        })
        .unwrap();
        assert!(m.speed.median > 0.0, "{m:?}");
        assert!(m.speed.median < m.crypto_floor.median, "{m:?}");
        assert!(m.speed.p99 <= m.speed.median, "{m:?}");
        // A 1-hour day is a 24th of a home-day: its counts are scaled to whole days.
        assert!(m.lock_reports_per_day >= (DAY_MS / 30_000) as f64, "{m:?}");
        assert_eq!(m.rows().len(), 1);
    }
}
