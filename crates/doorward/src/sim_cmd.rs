//! `doorward sim attacks`: runs the attack lab and prints its table or its JSON;
//! `doorward sim homeday`: runs home-days and prints the lab's speed.

use anyhow::{bail, Result};
use clap::Subcommand;
use doorward_sim::{report, run_one, run_plan, Plan};

/// Simulator commands.
#[derive(Subcommand)]
pub enum SimCommand {
    /// Run the attack catalogue (S1–S24 and benign) against the real cores, N seeds each.
    Attacks {
        /// Seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// Run only this scenario (S1…S24 or benign).
        #[arg(long)]
        scenario: Option<String>,
        /// Print exactly one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Replay this seed (with --scenario: one run, with its trace), or start from it.
        #[arg(long)]
        seed: Option<u64>,
        /// Worker threads (the results do not depend on it).
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Run home-days (24 h of idle supervision and two deliveries each, BRIEF §7) and print
    /// home-days per CPU-minute; fails when any day raised an alarm or let anyone in unseen.
    Homeday {
        /// Homes, one day each.
        #[arg(long, default_value_t = 20)]
        homes: u64,
        /// The first seed (home i uses seed + i).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
        /// Worker threads (CPU time is counted over all of them).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Camera idle checkpoint interval, ms (default: the camera's own default).
        #[arg(long)]
        idle_checkpoint_ms: Option<u64>,
        /// Print the trace of one day (the first seed).
        #[arg(long)]
        trace: bool,
    },
}

/// Runs a simulator command; fails when any run fails, after printing its seed.
pub fn run(cmd: SimCommand) -> Result<()> {
    let (seeds, scenario, json, seed, threads) = match cmd {
        SimCommand::Attacks {
            seeds,
            scenario,
            json,
            seed,
            threads,
        } => (seeds, scenario, json, seed, threads),
        SimCommand::Homeday {
            homes,
            seed,
            json,
            threads,
            idle_checkpoint_ms,
            trace,
        } => return homeday(homes, seed, json, threads, idle_checkpoint_ms, trace),
    };
    if let Some(id) = &scenario {
        if report::select(Some(id)).is_empty() {
            let ids: Vec<&str> = doorward_sim::SCENARIOS.iter().map(|s| s.id).collect();
            bail!("no scenario {id}: choose one of {}", ids.join(", "));
        }
    }
    if let (Some(id), Some(s), false) = (&scenario, seed, json) {
        // One run, replayed exactly, with what happened in it.
        let sc = doorward_sim::scenario::find(id).expect("checked above");
        let (o, rec) = run_one(sc, s, true);
        for line in &rec.trace {
            println!("{line}");
        }
        println!(
            "{} seed {s}: breaches {}, undetected {}, false alarms {}, false locked {} ms, latency {:?}",
            sc.id, o.breaches, o.undetected, o.false_alarms, o.false_locked_ms, o.latency_ms
        );
        for p in &o.problems {
            println!("  {p}");
        }
        if o.failed() {
            bail!("{} failed with seed {s}", sc.id);
        }
        return Ok(());
    }
    let plan = Plan {
        seeds: if seed.is_some() && scenario.is_some() {
            1
        } else {
            seeds
        },
        first_seed: seed.unwrap_or(1),
        scenario,
        threads,
    };
    let r = run_plan(&plan);
    if json {
        println!("{}", r.to_json());
        for s in &r.scenarios {
            for f in &s.failing {
                eprintln!(
                    "{} failed with seed {}: {}",
                    s.id,
                    f.seed,
                    f.problems.join("; ")
                );
            }
        }
    } else {
        print!("{}", r.to_table());
    }
    if !r.passed() {
        bail!("some runs failed: replay one with --scenario ID --seed S");
    }
    Ok(())
}

fn homeday(
    homes: u64,
    seed: u64,
    json: bool,
    threads: usize,
    idle_checkpoint_ms: Option<u64>,
    trace: bool,
) -> Result<()> {
    use doorward_sim::homeday;
    if homes == 0 {
        bail!("--homes must be at least 1");
    }
    if trace {
        let (o, rec) = homeday::run_home(seed, 24, idle_checkpoint_ms, true);
        for line in &rec.trace {
            println!("{line}");
        }
        println!(
            "home-day seed {seed}: breaches {}, undetected {}, false alarms {}, false locked {} ms",
            o.breaches, o.undetected, o.false_alarms, o.false_locked_ms
        );
        for p in &o.problems {
            println!("  {p}");
        }
        if o.failed() {
            bail!("the home-day with seed {seed} failed");
        }
        return Ok(());
    }
    let r = homeday::run_plan(&homeday::HomeDayPlan {
        homes,
        first_seed: seed,
        threads,
        hours: 24,
        idle_checkpoint_ms,
    });
    if json {
        println!("{}", r.to_json());
    } else {
        let t = &r.totals;
        println!(
            "{} home-days in {:.3} s of CPU ({:.3} s wall): {:.0} home-days per CPU-minute, \
             {:.2} ms of CPU per home-day (target: >= 3000, 20 ms)",
            r.home_days, r.cpu_s, r.wall_s, r.home_days_per_cpu_min, r.cpu_ms_per_home_day
        );
        println!(
            "breaches {}, undetected {}, false alarms {}, false locked {} ms",
            r.breaches, r.undetected, r.false_alarms, r.false_locked_ms
        );
        let n = r.home_days.max(1);
        println!(
            "per day: {} camera proofs and {} lock messages received, {} periodic lock reports \
             and {} signed camera checkpoints sent, {} frames rendered, {} audit records, \
             {} door openings",
            t.proofs_received / n,
            t.lock_messages_received / n,
            t.lock_periodic_sent / n,
            t.checkpoints_sent / n,
            t.frames / n,
            t.audit_events / n,
            t.door_openings / n
        );
    }
    for f in &r.failing {
        eprintln!(
            "home-day failed with seed {}: {}",
            f.seed,
            f.problems.join("; ")
        );
    }
    if !r.passed() {
        bail!("some home-days failed: replay one with --trace --seed S");
    }
    Ok(())
}
