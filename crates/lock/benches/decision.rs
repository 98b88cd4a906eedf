//! The lock's whole decision for one unlock command: envelope and context signatures (server
//! key), nonce, time, epoch, receipt, camera attestation signature, driver signature, issuer
//! certificate (home root), the biscuit grant, spent and revoked tables, and the durable-state
//! snapshot it emits. Setup (a fresh lock clone, nonce and command) is outside the timing.
//!
//! Run: `cargo bench -p doorward-lock --bench decision`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use doorward_lock::testkit::Harness;
use doorward_lock::{Input, Output};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn decision(c: &mut Criterion) {
    let mut h = Harness::new(ChaCha20Rng::seed_from_u64(7));
    let (spec, token) = h.fresh_grant();
    let base = h.lock.clone();
    let now = h.now_ms;
    let server_ms = h.kit.server_ms(now);
    let kit = h.kit.clone();
    let mut setup_rng = ChaCha20Rng::seed_from_u64(8);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    c.bench_function("lock_decision_unlock_command", |b| {
        b.iter_batched(
            || {
                let mut lock = base.clone();
                let nonce = match &lock.handle(now, Input::NonceRequest, &mut setup_rng)[..] {
                    [Output::LocalNonce(n)] => n.body.nonce,
                    other => panic!("expected a nonce, got {other:?}"),
                };
                let cmd = kit.command(nonce, &token, &spec, server_ms, lock.epoch());
                (lock, Input::Message(kit.seal(&cmd)))
            },
            |(mut lock, input)| {
                let out = lock.handle(now, input, &mut rng);
                // An accepted unlock emits exactly the write of its spent grant.
                assert!(matches!(out[..], [Output::Persist { .. }]), "{out:?}");
                (lock, out)
            },
            BatchSize::SmallInput,
        )
    });
}

/// The parts, for reading the figure above: one strict Ed25519 verification and the grant
/// (certificate plus biscuit) alone.
fn parts(c: &mut Criterion) {
    let mut h = Harness::new(ChaCha20Rng::seed_from_u64(7));
    let (spec, token) = h.fresh_grant();
    let kit = h.kit.clone();
    let now = kit.server_ms(h.now_ms);
    let cmd = kit.command(doorward_proto::Nonce([1; 32]), &token, &spec, now, 0);
    c.bench_function("part_one_ed25519_verify_strict", |b| {
        b.iter(|| cmd.context.verify(&kit.server.public()).is_ok())
    });
    c.bench_function("part_grant_cert_and_biscuit", |b| {
        b.iter(|| {
            let cert = doorward_proto::grant::verify_cert(
                &kit.cert,
                &kit.home_root.public(),
                &kit.home,
                now,
            )
            .unwrap();
            doorward_proto::grant::verify(&token, &cert.issuer, &kit.lock, &spec.driver, now)
                .unwrap()
        })
    });
}

criterion_group!(benches, decision, parts);
criterion_main!(benches);
