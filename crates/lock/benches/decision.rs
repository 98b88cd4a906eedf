//! The lock's whole decision for one unlock command: envelope and context signatures (server
//! key), nonce, time, epoch, receipt, camera attestation signature, driver signature, issuer
//! certificate (home root), the biscuit grant, spent and revoked tables, and the durable-state
//! snapshot it emits. Setup (a fresh lock clone, nonce and command) is outside the timing. The
//! workload is [`DecisionBench`], which `doorward bench` runs too.
//!
//! Run: `cargo bench -p doorward-lock --bench decision`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use doorward_lock::testkit::DecisionBench;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn decision(c: &mut Criterion) {
    let w = DecisionBench::new(ChaCha20Rng::seed_from_u64(7));
    let mut setup_rng = ChaCha20Rng::seed_from_u64(8);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    c.bench_function("lock_decision_unlock_command", |b| {
        b.iter_batched(
            || w.prepare(&mut setup_rng),
            |(mut lock, input)| {
                w.decide(&mut lock, input, &mut rng);
                lock
            },
            BatchSize::SmallInput,
        )
    });
}

/// The parts, for reading the figure above: one strict Ed25519 verification and the grant
/// (certificate plus biscuit) alone.
fn parts(c: &mut Criterion) {
    let w = DecisionBench::new(ChaCha20Rng::seed_from_u64(7));
    c.bench_function("part_one_ed25519_verify_strict", |b| {
        b.iter(|| w.verify_one())
    });
    c.bench_function("part_grant_cert_and_biscuit", |b| {
        b.iter(|| w.grant_chain())
    });
}

criterion_group!(benches, decision, parts);
criterion_main!(benches);
