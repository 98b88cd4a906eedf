//! Home-days per CPU-minute without building the whole CLI:
//! `cargo run --release -p doorward-sim --example homeday -- [HOMES] [SEED] [IDLE_CHECKPOINT_MS]`
//! (the same library call as `doorward sim homeday --json`).

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = || args.next().and_then(|a| a.parse::<u64>().ok());
    let homes = arg().unwrap_or(20);
    let seed = arg().unwrap_or(1);
    let idle_checkpoint_ms = arg();
    if std::env::var_os("HOMEDAY_TRACE").is_some() {
        let (o, rec) = doorward_sim::homeday::run_home(seed, 24, idle_checkpoint_ms, true);
        for line in &rec.trace {
            println!("{line}");
        }
        println!("{:?}", o.problems);
        return;
    }
    let mut plan = doorward_sim::homeday::HomeDayPlan::new(homes, seed);
    plan.idle_checkpoint_ms = idle_checkpoint_ms;
    let r = doorward_sim::homeday::run_plan(&plan);
    println!("{}", r.to_json());
    for f in &r.failing {
        eprintln!("seed {}: {}", f.seed, f.problems.join("; "));
    }
    if !r.passed() {
        std::process::exit(1);
    }
}
