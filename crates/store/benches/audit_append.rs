//! Durable audit appends per second with concurrent appenders (group commit), on SQLite
//! (WAL, `synchronous=FULL`, a file in a temporary directory) and on PostgreSQL
//! (127.0.0.1:5432, database `test`, a schema of its own). Each appender owns one home's
//! chain and waits for every commit before its next append, as a server handling requests
//! does. `cargo bench -p doorward-store --bench audit_append`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use doorward_control::audit::{AuditChain, AuditConfig, EntryKind};
use doorward_proto::{Id, KeyPair};
use doorward_store::{PgConfig, PgStore, SqliteStore, Store};

/// A typical entry: a decision or a device state change, about 120 bytes of payload.
const PAYLOAD_BYTES: usize = 120;
const T0: u64 = 1_700_000_000_000;

fn run(
    store: &Arc<dyn Store>,
    chains: &[Arc<Mutex<AuditChain>>],
    key: &Arc<KeyPair>,
    iters: u64,
) -> Duration {
    let per = iters.div_ceil(chains.len() as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for chain in chains {
            let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
            s.spawn(move || {
                let mut chain = chain.lock().unwrap();
                let home = chain.home().clone();
                for _ in 0..per {
                    let t = T0 + chain.next_index();
                    let a = chain
                        .append(t, EntryKind::EVENT, None, vec![0x5a; PAYLOAD_BYTES], &key)
                        .unwrap();
                    store
                        .append_audit(&home, a.entry, a.checkpoint)
                        .unwrap()
                        .wait()
                        .unwrap();
                }
            });
        }
    });
    // Time per append, whatever the rounding of the split between appenders.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * chains.len() as u64) as f64)
}

fn queued(store: &dyn Store, chain: &mut AuditChain, key: &KeyPair, iters: u64) -> Duration {
    let home = chain.home().clone();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(1024);
    for i in 0..iters {
        let t = T0 + chain.next_index();
        let a = chain
            .append(t, EntryKind::EVENT, None, vec![0x5a; PAYLOAD_BYTES], key)
            .unwrap();
        pending.push(store.append_audit(&home, a.entry, a.checkpoint).unwrap());
        if pending.len() == 1024 || i + 1 == iters {
            for p in pending.drain(..) {
                p.wait().unwrap();
            }
        }
    }
    start.elapsed()
}

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn Store>) {
    let key = Arc::new(KeyPair::from_seed(&[7; 32]));
    let mut g = c.benchmark_group(format!("audit_append/{name}"));
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for appenders in [1usize, 16, 64] {
        let chains: Vec<_> = (0..appenders)
            .map(|i| {
                Arc::new(Mutex::new(AuditChain::new(
                    Id::new(format!("bench-{name}-{appenders}-{i}")).unwrap(),
                    AuditConfig::default(),
                )))
            })
            .collect();
        g.bench_function(format!("{appenders}_appenders"), |b| {
            b.iter_custom(|iters| run(&store, &chains, &key, iters))
        });
    }
    // The writer's own ceiling: one thread queues up to a batch of appends before it waits,
    // as a server does when many requests arrive at once.
    let mut chain = AuditChain::new(
        Id::new(format!("bench-{name}-queued")).unwrap(),
        AuditConfig::default(),
    );
    g.bench_function("queued_1024", |b| {
        b.iter_custom(|iters| queued(&*store, &mut chain, &key, iters))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    bench_store(c, "sqlite", sqlite);

    let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
    let schema = format!("doorward_bench_{}", std::process::id());
    let config = PgConfig {
        url: format!("host=127.0.0.1 port=5432 dbname=test user={user}"),
        schema: Some(schema.clone()),
        store: Default::default(),
    };
    match PgStore::open(&config) {
        Ok(pg) => {
            bench_store(c, "postgres", Arc::new(pg));
            drop_schema(&config.url, &schema);
        }
        Err(e) => eprintln!("\n!! PostgreSQL unreachable ({e}): its figures are missing\n"),
    }
}

fn drop_schema(url: &str, schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
