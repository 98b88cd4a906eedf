//! `doorward sim attacks`: runs the attack lab and prints its table or its JSON.

use anyhow::{bail, Result};
use clap::Subcommand;
use doorward_sim::{report, run_one, run_plan, Plan};

/// Simulator commands.
#[derive(Subcommand)]
pub enum SimCommand {
    /// Run the attack catalogue (S1–S23 and benign) against the real cores, N seeds each.
    Attacks {
        /// Seeds per scenario.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// Run only this scenario (S1…S23 or benign).
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
}

/// Runs a simulator command; fails when any run fails, after printing its seed.
pub fn run(cmd: SimCommand) -> Result<()> {
    let SimCommand::Attacks {
        seeds,
        scenario,
        json,
        seed,
        threads,
    } = cmd;
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
