//! The lock's whole decision: grant chain, driver's signature, unlock context, camera
//! attestation.
//!
//! The workload is the criterion bench's ([`DecisionBench`]): each sample a fresh clone of a
//! booted, time-synchronised lock that has just issued a nonce, and the server's sealed
//! command for it; only [`DecisionBench::decide`] is timed, in this thread's CPU time (the
//! bench machine may be shared; wall time is shown beside it). Baselines in the same run: one
//! strict Ed25519 verification (the decision makes six) and the grant chain alone
//! (certificate and biscuit).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use doorward_lock::testkit::DecisionBench;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::lab::thread_cpu;
use super::{median, percentile, round, Opts, Row};

/// BRIEF §7: the lock's whole decision, p99.
pub const TARGET_P99_US: f64 = 400.0;
/// Untimed decisions first, so caches and the allocator are warm.
const WARMUP: usize = 50;

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Timed decisions (and as many timed baseline samples of each kind).
    pub samples: usize,
}

impl Scale {
    /// The scale of `doorward bench`.
    pub fn of(opts: Opts) -> Scale {
        Scale {
            samples: if opts.quick { 1_000 } else { 5_000 },
        }
    }
}

/// Median and p99 of samples, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Micros {
    pub median: f64,
    pub p99: f64,
}

impl Micros {
    /// From samples in µs.
    pub fn of(mut xs: Vec<f64>) -> Micros {
        Micros {
            median: median(&mut xs),
            p99: percentile(&mut xs, 99.0),
        }
    }

    /// "p99 512 µs (median 498)".
    pub fn show(&self) -> String {
        format!("p99 {:.0} µs (median {:.0})", self.p99, self.median)
    }
}

/// Everything the section measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// CPU time per decision (the figure).
    pub decision: Micros,
    /// Wall time per decision, the same samples.
    pub decision_wall: Micros,
    pub verify_strict: Micros,
    pub grant_chain: Micros,
}

/// Runs the section; returns the decision's p99 in µs.
pub fn run(opts: Opts) -> Result<(f64, Vec<Row>)> {
    let m = measure(&Scale::of(opts))?;
    Ok((round(m.decision.p99, 1), m.rows()))
}

/// Measures at `scale`.
pub fn measure(scale: &Scale) -> Result<Measured> {
    let w = DecisionBench::new(ChaCha20Rng::seed_from_u64(7));
    ensure!(
        w.verify_one() && w.grant_chain(),
        "the bench's command does not verify"
    );
    let mut setup_rng = ChaCha20Rng::seed_from_u64(8);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    // Each sample is this thread's CPU time: on a shared machine, wall time adds whatever
    // the scheduler gave others meanwhile. The decision's wall time is kept beside it.
    let us = |t: Duration| t.as_secs_f64() * 1e6;
    let cpu = |f: &mut dyn FnMut()| {
        let t = thread_cpu();
        f();
        us(thread_cpu().saturating_sub(t))
    };
    let (mut decision, mut wall, mut verify, mut chain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..WARMUP + scale.samples {
        let (mut lock, input) = w.prepare(&mut setup_rng);
        let mut input = Some(input);
        let t = Instant::now();
        let d = cpu(&mut || {
            let input = input.take().expect("decided once");
            w.decide(&mut lock, input, &mut rng)
        });
        let dw = us(t.elapsed());
        // Interleaved, so a noisy moment of the machine weighs on the three alike.
        let v = cpu(&mut || {
            std::hint::black_box(w.verify_one());
        });
        let c = cpu(&mut || {
            std::hint::black_box(w.grant_chain());
        });
        if i >= WARMUP {
            decision.push(d);
            wall.push(dw);
            verify.push(v);
            chain.push(c);
        }
    }
    Ok(Measured {
        decision: Micros::of(decision),
        decision_wall: Micros::of(wall),
        verify_strict: Micros::of(verify),
        grant_chain: Micros::of(chain),
    })
}

impl Measured {
    /// The table's row.
    pub fn rows(&self) -> Vec<Row> {
        vec![Row::new(
            "the lock's whole decision, CPU time (6 strict Ed25519 verifications + biscuit)",
            format!(
                "{} (wall: {})",
                self.decision.show(),
                self.decision_wall.show()
            ),
        )
        .target(format!("≤ {TARGET_P99_US:.0} µs p99"))
        .baseline(format!(
            "one verify_strict: {}; certificate + biscuit: {}",
            self.verify_strict.show(),
            self.grant_chain.show()
        ))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_are_the_median_and_the_99th_percentile() {
        let m = Micros::of((1..=200).map(f64::from).collect());
        assert_eq!(
            m,
            Micros {
                median: 100.0,
                p99: 198.0
            }
        );
        assert_eq!(m.show(), "p99 198 µs (median 100)");
    }

    /// Cause and effect at a tiny scale: the decision verifies six signatures and a biscuit,
    /// so it costs several single verifications and more than the grant chain alone.
    #[test]
    fn the_decision_costs_several_verifications() {
        let m = measure(&Scale { samples: 40 }).unwrap();
        assert!(m.decision.median > 3.0 * m.verify_strict.median, "{m:?}");
        assert!(m.decision.median > m.grant_chain.median, "{m:?}");
        assert!(m.decision.p99 >= m.decision.median);
        assert_eq!(m.rows().len(), 1);
    }
}
