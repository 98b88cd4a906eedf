//! Durable audit appends per second on SQLite (and PostgreSQL when one is reachable), and
//! offline verification in entries per second.
//!
//! The workloads are the criterion benches' own ([`doorward_store::bench`] for appends,
//! [`doorward_control::bench::sample_export`] for verification). The figure for appends is
//! the writer's group commit: one thread queues [`QUEUE_DEPTH`] appends before it waits, each
//! acknowledged only once its transaction is committed (`synchronous=FULL` on SQLite). Its
//! baseline, in the same run and on the same store: one appender waiting for each commit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use doorward_control::audit::verify_export;
use doorward_control::bench::{hash_only, sample_export};
use doorward_proto::KeyPair;
use doorward_store::bench::{self as workload, PgBench, QUEUE_DEPTH};
use doorward_store::{SqliteStore, Store};
use serde::Serialize;

use super::lab::thread_cpu;
use super::{median, percentile, round, Opts, Row};

/// BRIEF §7: durable audit appends on SQLite.
pub const TARGET_APPENDS_PER_S: f64 = 50_000.0;
/// BRIEF §7: offline verification, every hash link and every checkpoint signature.
pub const TARGET_VERIFY_ENTRIES_PER_S: f64 = 2_000_000.0;

/// `audit` in the JSON.
#[derive(Debug, Default, Serialize)]
pub struct Audit {
    pub sqlite_appends_per_s: f64,
    pub verify_entries_per_s: f64,
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Repeated runs of each workload (the figures are their median and p99).
    pub runs: usize,
    /// Each group-commit run queues batches of [`QUEUE_DEPTH`] until this much time passed.
    pub queued_per_run: Duration,
    /// Each run of the one waiting appender (the baseline) appends until this much time
    /// passed. Time, not counts: a loaded disk's fsync can take 100 ms.
    pub waiting_per_run: Duration,
    /// Entries in the export verified per run.
    pub verify_entries: u64,
}

impl Scale {
    /// The scale of `doorward bench` (`--quick`: about 10 s in all).
    pub fn of(opts: Opts) -> Scale {
        if opts.quick {
            Scale {
                runs: 5,
                queued_per_run: Duration::from_millis(400),
                waiting_per_run: Duration::from_millis(300),
                verify_entries: 50_000,
            }
        } else {
            Scale {
                runs: 15,
                queued_per_run: Duration::from_secs(1),
                waiting_per_run: Duration::from_millis(500),
                verify_entries: 200_000,
            }
        }
    }
}

/// Appends per step of the one waiting appender's runs.
const WAITING_STEP: u64 = 5;

/// Repeats `step` (items done, time taken) until at least `budget` has passed; the sums.
fn for_at_least(
    budget: Duration,
    mut step: impl FnMut() -> Result<Duration, doorward_store::StoreError>,
    items_per_step: u64,
) -> Result<(u64, Duration)> {
    let (mut n, mut d) = (0, Duration::ZERO);
    while n == 0 || d < budget {
        d += step()?;
        n += items_per_step;
    }
    Ok((n, d))
}

/// Items per second over repeated runs: the median run and the p99 run (the slow tail: the
/// 99th percentile of time per item, as a rate).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub median: f64,
    pub p99: f64,
}

impl Rate {
    /// From each run's items and duration.
    pub fn of(runs: &[(u64, Duration)]) -> Rate {
        let mut per_item: Vec<f64> = runs
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, d)| d.as_secs_f64() / *n as f64)
            .collect();
        let inv = |s: f64| if s > 0.0 { 1.0 / s } else { 0.0 };
        Rate {
            median: inv(median(&mut per_item)),
            p99: inv(percentile(&mut per_item, 99.0)),
        }
    }

    /// "median 57.1 k/s, p99 50.2 k/s".
    pub fn show(&self) -> String {
        format!("median {}, p99 {}", per_s(self.median), per_s(self.p99))
    }
}

/// A rate for people: "870/s", "57.1 k/s", "2.21 M/s".
pub fn per_s(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.0}/s")
    }
}

/// Group commit and its baseline on one store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Appends {
    /// One thread queuing [`QUEUE_DEPTH`] appends before it waits.
    pub queued: Rate,
    /// One appender waiting for each commit.
    pub waiting: Rate,
}

/// Everything the section measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub sqlite: Appends,
    /// Why not, when 127.0.0.1:5432 database `test` was not reachable.
    pub postgres: Result<Appends, String>,
    pub verify: Rate,
    /// BLAKE3 over the same export, nothing parsed or checked: the hashing floor.
    pub hash_floor: Rate,
    pub verify_entries: u64,
    pub verify_checkpoints: u64,
}

/// Runs the section.
pub fn run(opts: Opts) -> Result<(Audit, Vec<Row>)> {
    let m = measure(&Scale::of(opts))?;
    Ok((m.json(), m.rows()))
}

/// Measures at `scale`.
pub fn measure(scale: &Scale) -> Result<Measured> {
    let key = Arc::new(KeyPair::from_seed(&[7; 32]));

    let dir = std::env::temp_dir().join(format!("doorward-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sqlite = SqliteStore::open(dir.join("audit.db"))
        .map_err(anyhow::Error::from)
        .and_then(|s| appends(Arc::new(s), "sqlite", &key, scale));
    // The store is closed by now (its last handle dropped inside `appends`).
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = sqlite.context("SQLite appends")?;

    let postgres = match PgBench::open("doorward") {
        Ok(pg) => {
            let r = appends(pg.store.clone(), "postgres", &key, scale);
            let dropped = pg.drop_schema();
            let r = r.context("PostgreSQL appends")?;
            dropped.context("dropping the PostgreSQL bench schema")?;
            Ok(r)
        }
        Err(e) => Err(e.to_string()),
    };

    let sample = sample_export(scale.verify_entries, &key);
    let mut verify = Vec::with_capacity(scale.runs);
    let mut hash = Vec::with_capacity(scale.runs);
    // CPU time of this thread: verification is single-threaded work, and the machine may be
    // shared.
    for _ in 0..scale.runs {
        let t = thread_cpu();
        let r = verify_export(&sample.bytes[..], Some(&key.public()))
            .map_err(|e| anyhow::anyhow!("the sample export does not verify: {e:?}"))?;
        verify.push((r.entries, thread_cpu().saturating_sub(t)));
        ensure!(
            r.entries == sample.entries && r.checkpoints == sample.checkpoints,
            "verified {} entries and {} checkpoints of {} and {}",
            r.entries,
            r.checkpoints,
            sample.entries,
            sample.checkpoints
        );
        let t = thread_cpu();
        std::hint::black_box(hash_only(std::hint::black_box(&sample.bytes)));
        hash.push((sample.entries, thread_cpu().saturating_sub(t)));
    }
    Ok(Measured {
        sqlite,
        postgres,
        verify: Rate::of(&verify),
        hash_floor: Rate::of(&hash),
        verify_entries: sample.entries,
        verify_checkpoints: sample.checkpoints,
    })
}

/// Group commit, then the one waiting appender, `scale.runs` times each, on `store`.
fn appends(
    store: Arc<dyn Store>,
    name: &str,
    key: &Arc<KeyPair>,
    scale: &Scale,
) -> Result<Appends> {
    let mut chain = workload::chain(&format!("bench-{name}-queued"));
    let one = [Arc::new(Mutex::new(workload::chain(&format!(
        "bench-{name}-waiting"
    ))))];
    // One short warm-up of each: the file, the connection and the caches exist before timing.
    workload::queued(&*store, &mut chain, key, QUEUE_DEPTH as u64)?;
    workload::concurrent(&store, &one, key, 10)?;
    let (mut queued, mut waiting) = (Vec::new(), Vec::new());
    for _ in 0..scale.runs {
        queued.push(for_at_least(
            scale.queued_per_run,
            || workload::queued(&*store, &mut chain, key, QUEUE_DEPTH as u64),
            QUEUE_DEPTH as u64,
        )?);
        waiting.push(for_at_least(
            scale.waiting_per_run,
            || workload::concurrent(&store, &one, key, WAITING_STEP),
            WAITING_STEP,
        )?);
    }
    Ok(Appends {
        queued: Rate::of(&queued),
        waiting: Rate::of(&waiting),
    })
}

impl Measured {
    /// The JSON's figures: medians.
    pub fn json(&self) -> Audit {
        Audit {
            sqlite_appends_per_s: round(self.sqlite.queued.median, 0),
            verify_entries_per_s: round(self.verify.median, 0),
        }
    }

    /// The table's rows.
    pub fn rows(&self) -> Vec<Row> {
        let appends = |name: &str, a: &Appends, target: &str| {
            Row::new(
                format!("audit: durable appends, {name}, group commit ({QUEUE_DEPTH} queued)"),
                a.queued.show(),
            )
            .target(target)
            .baseline(format!(
                "one appender waiting for each commit: {}",
                a.waiting.show()
            ))
        };
        let mut rows = vec![appends(
            "SQLite",
            &self.sqlite,
            &format!("≥ {}", per_s(TARGET_APPENDS_PER_S)),
        )];
        rows.push(match &self.postgres {
            Ok(a) => appends("PostgreSQL 127.0.0.1", a, ""),
            Err(e) => Row::new("audit: durable appends, PostgreSQL", "not measured")
                .baseline(format!("127.0.0.1:5432 database test unreachable: {e}")),
        });
        rows.push(
            Row::new(
                format!(
                    "audit: offline verification, CPU time ({} entries, {} checkpoint signatures)",
                    self.verify_entries, self.verify_checkpoints
                ),
                self.verify.show(),
            )
            .target(format!("≥ {}", per_s(TARGET_VERIFY_ENTRIES_PER_S)))
            .baseline(format!(
                "BLAKE3 over the same export alone: {}",
                self.hash_floor.show()
            )),
        );
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_items_over_time_and_p99_is_the_slow_tail() {
        let runs: Vec<(u64, Duration)> = (1..=100)
            .map(|ms| (1_000, Duration::from_millis(ms)))
            .collect();
        let r = Rate::of(&runs);
        // The median run took 50 ms for 1 000 items; the p99 run 99 ms.
        assert!((r.median - 20_000.0).abs() < 1e-6, "{r:?}");
        assert!((r.p99 - 1_000.0 / 0.099).abs() < 1e-6, "{r:?}");
        assert!(r.p99 < r.median);
        assert_eq!(Rate::of(&[]), Rate::default());
        assert_eq!(Rate::of(&[(0, Duration::from_secs(1))]), Rate::default());
    }

    #[test]
    fn rates_print_in_units_people_read() {
        assert_eq!(per_s(870.4), "870/s");
        assert_eq!(per_s(57_123.0), "57.1 k/s");
        assert_eq!(per_s(2_213_000.0), "2.21 M/s");
    }

    /// Cause and effect at a tiny scale: queuing appends before waiting shares each fsync
    /// among many of them, so it beats one appender waiting for every commit by far; and
    /// verifying an export costs more than hashing its bytes, since it hashes every entry and
    /// checks every checkpoint signature besides.
    #[test]
    fn group_commit_beats_waiting_and_verification_costs_more_than_hashing() {
        let m = measure(&Scale {
            runs: 3,
            queued_per_run: Duration::from_millis(100),
            waiting_per_run: Duration::from_millis(100),
            verify_entries: 5_000,
        })
        .unwrap();
        let s = &m.sqlite;
        assert!(s.queued.median > 3.0 * s.waiting.median, "{s:?}");
        assert!(m.verify.median < m.hash_floor.median, "{m:?}");
        assert_eq!(m.verify_entries, 5_000);
        // A checkpoint every 1 024 entries and one at the end.
        assert_eq!(m.verify_checkpoints, 5_000 / 1_024 + 1);
        let json = m.json();
        assert!(json.sqlite_appends_per_s > 0.0 && json.verify_entries_per_s > 0.0);
        assert_eq!(m.rows().len(), 3);
    }
}
