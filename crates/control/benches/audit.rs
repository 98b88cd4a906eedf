//! Audit chain: appends per second (pure, in memory, checkpoint signatures included) and
//! offline verification of an export in entries per second (every hash link and every
//! checkpoint signature). `cargo bench -p doorward-control --bench audit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use doorward_control::audit::{
    export, genesis_head, verify_export, AuditChain, AuditConfig, EntryKind, ExportHeader,
    ExportItem, EXPORT_VERSION,
};
use doorward_proto::{Id, KeyPair};
use rand_chacha::rand_core::SeedableRng;
use std::hint::black_box;

const T0: u64 = 1_700_000_000_000;
/// A typical entry: a decision or a device state change, about 120 bytes of payload.
const PAYLOAD_BYTES: usize = 120;
const EXPORT_ENTRIES: u64 = 200_000;

fn bench(c: &mut Criterion) {
    let key = KeyPair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let home = Id::new("home-1").unwrap();
    let device = Id::new("lock-front-door").unwrap();
    let payload = vec![0x5a; PAYLOAD_BYTES];

    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    let mut chain = AuditChain::new(home.clone(), AuditConfig::default());
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
    let mut chain = AuditChain::new(home.clone(), AuditConfig::default());
    let mut items = Vec::new();
    for i in 0..EXPORT_ENTRIES {
        let a = chain
            .append(
                T0 + i,
                EntryKind::DEVICE_STATE,
                Some(device.clone()),
                payload.clone(),
                &key,
            )
            .unwrap();
        items.push(ExportItem::Entry(a.entry));
        items.extend(a.checkpoint.map(ExportItem::Checkpoint));
    }
    items.push(ExportItem::Checkpoint(
        chain.checkpoint(T0 + EXPORT_ENTRIES, &key),
    ));
    let header = ExportHeader {
        version: EXPORT_VERSION,
        server: key.public(),
        home: home.clone(),
        first_index: 0,
        first_prev: genesis_head(&home),
    };
    let mut bytes = Vec::new();
    export(&mut bytes, &header, &items).unwrap();
    eprintln!(
        "audit export: {} entries, {} checkpoints, {} bytes",
        EXPORT_ENTRIES,
        items.len() as u64 - EXPORT_ENTRIES,
        bytes.len()
    );

    g.throughput(Throughput::Elements(EXPORT_ENTRIES));
    g.sample_size(10);
    g.bench_function("verify_export_200k_entries", |b| {
        b.iter(|| {
            let r = verify_export(&bytes[..], Some(&key.public())).unwrap();
            assert_eq!(r.entries, EXPORT_ENTRIES);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
