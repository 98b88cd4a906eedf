//! Doorward's attack lab: a seeded, single-threaded simulator that runs the real cores — the
//! lock (`doorward-lock`), the camera with its renderer and pixel detectors
//! (`doorward-camera`) and the control server (`doorward-control`) — against the attack
//! catalogue of BRIEF §5, and judges from outside what really happened.
//!
//! - [`world`]: one home in true time: device clocks with skew and drift, the bolt's motor,
//!   the door, people, the sensor magnet, the lens, power; the network between the parts
//!   ([`net`]); the driver's script; the homeowner's live view.
//! - [`attack`]: every attacker capability, in one enum; [`scenario`]: S1–S24 and `benign`,
//!   each composing capabilities at moments of a delivery, with what the customer must see.
//! - [`check`]: who was inside, whether each entry was granted, witnessed and recorded, which
//!   alarms the customer saw and when, what the customer was shown versus the truth.
//! - [`report`]: many seeds per scenario, the table and the JSON; [`guards`]: which scenarios
//!   each guard protects, for the guard-off test.
//! - [`homeday`]: the home-day of BRIEF §7 (24 h of idle supervision and two deliveries),
//!   the lab's unit of speed, with its CPU-time measurement.
//!
//! It is not a model of the cores: it reimplements no check, it only drives them and looks.
//! The same seed gives the same run, byte for byte. It depends on the three cores, the
//! protocol crate and pure libraries; only the CLI (`doorward sim`) depends on it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attack;
pub mod check;
pub mod guards;
pub mod homeday;
pub mod net;
pub mod report;
pub mod scenario;
pub mod world;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use attack::{Capability, Forgery, Signal};
pub use check::RunOutcome;
pub use report::{Report, ScenarioReport};
pub use scenario::{Scenario, SCENARIOS};
pub use world::{Records, World};

/// Runs one scenario with one seed; `trace` keeps a readable log in the records.
pub fn run_one(sc: &'static Scenario, seed: u64, trace: bool) -> (RunOutcome, Records) {
    let rec = World::new(sc, seed, trace).run();
    (check::judge(sc, seed, &rec), rec)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Seeds per scenario.
    pub seeds: u64,
    /// The first seed; run `i` of each scenario uses `first_seed + i`.
    pub first_seed: u64,
    /// One scenario, or all.
    pub scenario: Option<String>,
    /// Worker threads (runs are independent; the report does not depend on this).
    pub threads: usize,
}

/// Runs the plan and sums it up. With `threads == 1` everything runs on the calling thread
/// (which is what lets a test switch guards off: the switches are thread-local).
pub fn run_plan(plan: &Plan) -> Report {
    let scenarios = report::select(plan.scenario.as_deref());
    let jobs: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|s| (0..plan.seeds).map(move |i| (s, i)))
        .collect();
    let results: Mutex<Vec<Option<RunOutcome>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    let work = || loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(s, i)) = jobs.get(j) else {
            break;
        };
        let seed = plan.first_seed.wrapping_add(i);
        let (o, _) = run_one(scenarios[s], seed, false);
        results.lock().expect("no worker panics while holding it")[j] = Some(o);
    };
    if plan.threads <= 1 {
        work();
    } else {
        std::thread::scope(|sc| {
            for _ in 0..plan.threads {
                sc.spawn(work);
            }
        });
    }
    let mut results = results.into_inner().expect("workers are done");
    let mut out = Vec::new();
    for (s, sc) in scenarios.iter().enumerate() {
        let outcomes: Vec<RunOutcome> = jobs
            .iter()
            .enumerate()
            .filter(|(_, &(js, _))| js == s)
            .map(|(j, _)| results[j].take().expect("every job ran"))
            .collect();
        out.push(report::summarise(sc, outcomes));
    }
    Report {
        seeds: plan.seeds,
        scenarios: out,
    }
}
