//! Durable audit appends per second with concurrent appenders (group commit), on SQLite
//! (WAL, `synchronous=FULL`, a file in a temporary directory) and on PostgreSQL
//! (127.0.0.1:5432, database `test`, a schema of its own). Each appender owns one home's
//! chain and waits for every commit before its next append, as a server handling requests
//! does. The workloads are [`doorward_store::bench`]'s, which `doorward bench` runs too.
//! `cargo bench -p doorward-store --bench audit_append`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use doorward_proto::KeyPair;
use doorward_store::bench::{self, PgBench};
use doorward_store::{SqliteStore, Store};

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn Store>) {
    let key = Arc::new(KeyPair::from_seed(&[7; 32]));
    let mut g = c.benchmark_group(format!("audit_append/{name}"));
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for appenders in [1usize, 16, 64] {
        let chains: Vec<_> = (0..appenders)
            .map(|i| {
                Arc::new(Mutex::new(bench::chain(&format!(
                    "bench-{name}-{appenders}-{i}"
                ))))
            })
            .collect();
        g.bench_function(format!("{appenders}_appenders"), |b| {
            b.iter_custom(|iters| bench::concurrent(&store, &chains, &key, iters).unwrap())
        });
    }
    // The writer's own ceiling: one thread queues up to a batch of appends before it waits,
    // as a server does when many requests arrive at once.
    let mut chain = bench::chain(&format!("bench-{name}-queued"));
    g.bench_function("queued_1024", |b| {
        b.iter_custom(|iters| bench::queued(&*store, &mut chain, &key, iters).unwrap())
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    bench_store(c, "sqlite", sqlite);

    match PgBench::open("criterion") {
        Ok(pg) => {
            bench_store(c, "postgres", pg.store.clone());
            pg.drop_schema().unwrap();
        }
        Err(e) => eprintln!("\n!! PostgreSQL unreachable ({e}): its figures are missing\n"),
    }
}

criterion_group!(group, benches);
criterion_main!(group);
