//! Audit chain: appends per second (pure, in memory, checkpoint signatures included) and
//! offline verification of an export in entries per second (every hash link and every
//! checkpoint signature). The export is [`doorward_control::bench::sample_export`], which
//! `doorward bench` verifies too. `cargo bench -p doorward-control --bench audit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use doorward_control::audit::{verify_export, AuditChain, AuditConfig, EntryKind};
use doorward_control::bench::{sample_export, PAYLOAD_BYTES, T0};
use doorward_proto::{Id, KeyPair};
use rand_chacha::rand_core::SeedableRng;
use std::hint::black_box;

const EXPORT_ENTRIES: u64 = 200_000;

fn bench(c: &mut Criterion) {
    let key = KeyPair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let home = Id::new("home-1").unwrap();
    let device = Id::new("lock-front-door").unwrap();
    let payload = vec![0x5a; PAYLOAD_BYTES];

    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    let mut chain = AuditChain::new(home, AuditConfig::default());
    let mut t = T0;
    g.bench_function("append_with_checkpoint_every_1024", |b| {
        b.iter(|| {
            t += 1;
            black_box(
                chain
                    .append(
                        t,
                        EntryKind::DEVICE_STATE,
                        Some(device.clone()),
                        payload.clone(),
                        &key,
                    )
                    .unwrap(),
            )
        })
    });

    // An export of EXPORT_ENTRIES entries with a checkpoint every 1024 and one at the end.
    let sample = sample_export(EXPORT_ENTRIES, &key);
    eprintln!(
        "audit export: {} entries, {} checkpoints, {} bytes",
        sample.entries,
        sample.checkpoints,
        sample.bytes.len()
    );

    g.throughput(Throughput::Elements(EXPORT_ENTRIES));
    g.sample_size(10);
    g.bench_function("verify_export_200k_entries", |b| {
        b.iter(|| {
            let r = verify_export(&sample.bytes[..], Some(&key.public())).unwrap();
            assert_eq!(r.entries, EXPORT_ENTRIES);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
