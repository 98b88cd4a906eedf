//! Guards proven necessary: with each guard switched off, its scenarios fail in the lab.
//! (The switches are thread-local, so every run here is on the test's own thread.)

use doorward_proto::guard::{self, Guard};
use doorward_sim::guards::GUARD_SCENARIOS;
use doorward_sim::{run_one, scenario};

/// Seeds per scenario and guard: small, the tests run in a debug build.
const SEEDS: u64 = 2;

fn broken(g: Guard, id: &str) -> bool {
    let sc = scenario::find(id).expect("the table names real scenarios");
    (1..=SEEDS).any(|seed| {
        let (o, _) = run_one(sc, seed, false);
        o.breaches > 0 || o.undetected || (g == Guard::TruthfulState && o.false_locked_ms > 0)
    })
}

#[test]
fn every_listed_guard_is_what_stops_its_scenarios() {
    let mut kept = Vec::new();
    for &(g, ids) in GUARD_SCENARIOS {
        for id in ids {
            // With the guard on, the scenario passes…
            let sc = scenario::find(id).expect("a real scenario");
            let (o, _) = run_one(sc, 1, false);
            assert!(
                !o.failed(),
                "{id} fails with every guard on: {:?}",
                o.problems
            );
            // …and with it off, the attack gets through or goes unseen.
            let _off = guard::disable(g);
            if !broken(g, id) {
                kept.push(format!("{g:?} off: {id} still passes"));
            }
        }
    }
    assert!(
        kept.is_empty(),
        "guards whose removal changes nothing: {kept:#?}"
    );
}
