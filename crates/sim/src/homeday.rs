//! The home-day of BRIEF §7, the lab's unit of speed: one home for 24 h of true time — idle
//! supervision (camera proofs, the lock's periodic reports, signed checkpoints, the control
//! core's deadlines) and two deliveries whose 60 s around the driver's arrival have rendered
//! frames at 8 fps — through the same world, network and checkers as the attack catalogue.
//! A home-day raises nothing: any alarm in it is a false alarm.
//!
//! [`run`] runs many and measures the process's CPU time: the figure is home-days per
//! CPU-minute (target ≥ 3,000, about 20 ms of CPU per home-day).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::check::{self, RunOutcome};
use crate::scenario::HOME_DAY;
use crate::world::{Records, Shape, World, ARRIVE_MS};

/// True time of one home-day, ms.
pub const DAY_MS: u64 = 86_400_000;
/// Longest day a plan may ask for, hours (a bound on one run's events).
pub const MAX_DAY_HOURS: u64 = 48;
/// Rendered frames and the open live view around each delivery, ms: the entry of BRIEF §7,
/// from [`ARRIVE_MS`] before the driver arrives.
pub const ENTRY_WATCH_MS: u64 = 60_000;
/// The seed's random stream the day's shape is drawn from.
const SHAPE_STREAM: u64 = 9;
/// Deliveries per home-day.
pub const DELIVERIES_PER_DAY: usize = 2;

/// What to run.
#[derive(Clone, Debug)]
pub struct HomeDayPlan {
    /// Homes, one day each.
    pub homes: u64,
    /// The first seed; home `i` uses `first_seed + i`.
    pub first_seed: u64,
    /// Worker threads (the outcomes do not depend on it).
    pub threads: usize,
    /// Length of the simulated day, hours (24 for the figure; shorter in tests).
    pub hours: u64,
    /// Overrides the camera's idle checkpoint interval, ms (the default: the camera's own).
    pub idle_checkpoint_ms: Option<u64>,
}

impl HomeDayPlan {
    /// `homes` 24-hour days from `seed`, on one thread, with the cores' defaults.
    pub fn new(homes: u64, seed: u64) -> Self {
        HomeDayPlan {
            homes,
            first_seed: seed,
            threads: 1,
            hours: 24,
            idle_checkpoint_ms: None,
        }
    }
}

/// What a batch of home-days cost and what they showed.
#[derive(Clone, Debug, Serialize)]
pub struct HomeDayReport {
    /// Homes run, one day each.
    pub home_days: u64,
    /// Simulated hours per day.
    pub hours: u64,
    /// Process CPU time (user + system, every thread), s; 0 where the platform does not say.
    pub cpu_s: f64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Home-days per CPU-minute (BRIEF §7: ≥ 3,000).
    pub home_days_per_cpu_min: f64,
    /// CPU per home-day, ms.
    pub cpu_ms_per_home_day: f64,
    /// Runs with at least one breach.
    pub breaches: u64,
    /// Runs in which something expected never happened (a home-day expects nothing).
    pub undetected: u64,
    /// Alarms the customer saw (all are false in a home-day).
    pub false_alarms: u64,
    /// Time shown "locked" while not locked, beyond display lag, summed, ms.
    pub false_locked_ms: u64,
    /// Traffic and work, summed over the days.
    pub totals: Totals,
    /// Failing runs (not in the JSON).
    #[serde(skip)]
    pub failing: Vec<RunOutcome>,
}

impl HomeDayReport {
    /// Whether every day passed.
    pub fn passed(&self) -> bool {
        self.failing.is_empty()
    }

    /// Exactly one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the report serialises")
    }
}

/// What the days exchanged, summed.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Camera proofs that reached the server.
    pub proofs_received: u64,
    /// Lock messages that reached the server.
    pub lock_messages_received: u64,
    /// Periodic reports the lock sent.
    pub lock_periodic_sent: u64,
    /// Signed checkpoints the camera sent.
    pub checkpoints_sent: u64,
    /// Frames rendered.
    pub frames: u64,
    /// Audit records written by the server.
    pub audit_events: u64,
    /// Doors opened.
    pub door_openings: u64,
    /// Entries the server's record shows authorised.
    pub authorised: u64,
}

impl Totals {
    /// One day's figures.
    pub fn of(r: &Records) -> Totals {
        Totals {
            proofs_received: r.proofs_received,
            lock_messages_received: r.lock_messages_received,
            lock_periodic_sent: r.lock_periodic_sent,
            checkpoints_sent: r.checkpoints_sent,
            frames: r.frames,
            audit_events: r.audit_events,
            door_openings: r.sessions.len() as u64,
            authorised: r.authorised.len() as u64,
        }
    }

    /// Adds another day's figures.
    pub fn add(&mut self, o: &Totals) {
        self.proofs_received += o.proofs_received;
        self.lock_messages_received += o.lock_messages_received;
        self.lock_periodic_sent += o.lock_periodic_sent;
        self.checkpoints_sent += o.checkpoints_sent;
        self.frames += o.frames;
        self.audit_events += o.audit_events;
        self.door_openings += o.door_openings;
        self.authorised += o.authorised;
    }
}

/// The shape of one day of `hours` for `seed`: the two arrivals fall in the fifth and eighth
/// twelfths of the day (10–12 h and 16–18 h of a 24 h day), each watched for
/// [`ENTRY_WATCH_MS`].
pub fn shape(seed: u64, hours: u64, idle_checkpoint_ms: Option<u64>) -> Shape {
    let day = hours.clamp(1, MAX_DAY_HOURS) * 3_600_000;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // A stream of its own: the world's streams stay as they are in every other run.
    rng.set_stream(SHAPE_STREAM);
    let twelfth = day / 12;
    let arrivals: Vec<u64> = [5, 8][..DELIVERIES_PER_DAY]
        .iter()
        .map(|&k| k * twelfth + rng.next_u64() % twelfth)
        .collect();
    let watch = arrivals
        .iter()
        .map(|&a| {
            let from = a.saturating_sub(ARRIVE_MS);
            (from, from + ENTRY_WATCH_MS)
        })
        .collect();
    Shape {
        run_ms: day,
        arrivals,
        watch: Some(watch),
        idle_checkpoint_ms,
    }
}

/// Runs one home-day and judges it; `trace` keeps a readable log in the records.
pub fn run_home(
    seed: u64,
    hours: u64,
    idle_checkpoint_ms: Option<u64>,
    trace: bool,
) -> (RunOutcome, Records) {
    let shape = shape(seed, hours, idle_checkpoint_ms);
    let rec = World::shaped(&HOME_DAY, seed, trace, shape).run();
    (check::judge(&HOME_DAY, seed, &rec), rec)
}

/// Runs the plan, measuring the process's CPU time and the wall time around it.
pub fn run_plan(plan: &HomeDayPlan) -> HomeDayReport {
    let cpu0 = process_cpu_s();
    let wall0 = Instant::now();
    let results: Mutex<Vec<Option<(RunOutcome, Totals)>>> =
        Mutex::new(vec![None; plan.homes as usize]);
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i as u64 >= plan.homes {
            break;
        }
        let seed = plan.first_seed.wrapping_add(i as u64);
        let (o, rec) = run_home(seed, plan.hours, plan.idle_checkpoint_ms, false);
        let t = Totals::of(&rec);
        results.lock().expect("no worker panics while holding it")[i] = Some((o, t));
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
    let wall_s = wall0.elapsed().as_secs_f64();
    let cpu_s = match (cpu0, process_cpu_s()) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let mut r = HomeDayReport {
        home_days: plan.homes,
        hours: plan.hours.clamp(1, MAX_DAY_HOURS),
        cpu_s: round3(cpu_s),
        wall_s: round3(wall_s),
        home_days_per_cpu_min: if cpu_s > 0.0 {
            round3(plan.homes as f64 * 60.0 / cpu_s)
        } else {
            0.0
        },
        cpu_ms_per_home_day: if plan.homes > 0 {
            round3(cpu_s * 1_000.0 / plan.homes as f64)
        } else {
            0.0
        },
        breaches: 0,
        undetected: 0,
        false_alarms: 0,
        false_locked_ms: 0,
        totals: Totals::default(),
        failing: Vec::new(),
    };
    for (o, t) in results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .flatten()
    {
        r.breaches += u64::from(o.breaches > 0);
        r.undetected += u64::from(o.undetected);
        r.false_alarms += u64::from(o.false_alarms);
        r.false_locked_ms += o.false_locked_ms;
        r.totals.add(&t);
        if o.failed() {
            r.failing.push(o);
        }
    }
    r
}

/// `homes` 24-hour days from `seed` on the calling thread, with the cores' defaults: the
/// figure of BRIEF §7.
pub fn run(homes: u64, seed: u64) -> HomeDayReport {
    run_plan(&HomeDayPlan::new(homes, seed))
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// CPU time this process has used so far (user + system, all threads), s, from
/// `/proc/self/stat` (Linux; clock ticks of 1/100 s, the `USER_HZ` every Linux ABI reports).
/// `None` elsewhere.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state (field 3) … utime (14), stime (15).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
