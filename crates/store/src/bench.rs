//! Durable audit append workloads, shared by `cargo bench -p doorward-store --bench
//! audit_append` and `doorward bench`: concurrent appenders that each wait for their own
//! commit, one thread that queues a batch before it waits (the writer's group-commit ceiling),
//! and a throw-away PostgreSQL schema on the test database.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorward_control::audit::{AuditChain, AuditConfig, EntryKind};
use doorward_proto::{Id, KeyPair};

use crate::{PgConfig, PgStore, Store, StoreError};

/// A typical entry: a decision or a device state change, about 120 bytes of payload.
pub const PAYLOAD_BYTES: usize = 120;
/// Appends one thread queues before it waits for them in [`queued`].
pub const QUEUE_DEPTH: usize = 1024;
/// The bench's wall-clock origin for entry times.
const T0: u64 = 1_700_000_000_000;
/// Where the PostgreSQL benches look: the test database on this machine.
pub const PG_TEST_HOST: &str = "host=127.0.0.1 port=5432 dbname=test";

/// A fresh audit chain for the home `name`.
pub fn chain(name: &str) -> AuditChain {
    AuditChain::new(
        Id::new(name).expect("bench home names are valid identifiers"),
        AuditConfig::default(),
    )
}

/// `chains.len()` appenders in parallel, each owning one home's chain and waiting for every
/// commit before its next append, as a server handling requests does; `iters` appends in all.
/// Returns the time for `iters` appends.
pub fn concurrent(
    store: &Arc<dyn Store>,
    chains: &[Arc<Mutex<AuditChain>>],
    key: &Arc<KeyPair>,
    iters: u64,
) -> Result<Duration, StoreError> {
    let per = iters.div_ceil(chains.len() as u64);
    let start = Instant::now();
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .iter()
            .map(|chain| {
                let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
                s.spawn(move || {
                    let mut chain = chain.lock().expect("no appender panics holding it");
                    let home = chain.home().clone();
                    for _ in 0..per {
                        let t = T0 + chain.next_index();
                        let a = chain
                            .append(t, EntryKind::EVENT, None, vec![0x5a; PAYLOAD_BYTES], &key)
                            .expect("a bench entry is within limits");
                        store.append_audit(&home, a.entry, a.checkpoint)?.wait()?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("appenders do not panic"))
            .collect()
    });
    results.into_iter().collect::<Result<(), _>>()?;
    // Time per append, whatever the rounding of the split between appenders.
    Ok(start
        .elapsed()
        .mul_f64(iters as f64 / (per * chains.len() as u64) as f64))
}

/// One thread queues up to [`QUEUE_DEPTH`] appends before it waits for them, as a server does
/// when many requests arrive at once: the writer's group-commit ceiling. Returns the time for
/// `iters` appends.
pub fn queued(
    store: &dyn Store,
    chain: &mut AuditChain,
    key: &KeyPair,
    iters: u64,
) -> Result<Duration, StoreError> {
    let home = chain.home().clone();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(QUEUE_DEPTH);
    for i in 0..iters {
        let t = T0 + chain.next_index();
        let a = chain
            .append(t, EntryKind::EVENT, None, vec![0x5a; PAYLOAD_BYTES], key)
            .expect("a bench entry is within limits");
        pending.push(store.append_audit(&home, a.entry, a.checkpoint)?);
        if pending.len() == QUEUE_DEPTH || i + 1 == iters {
            for p in pending.drain(..) {
                p.wait()?;
            }
        }
    }
    Ok(start.elapsed())
}

/// A PostgreSQL store in a schema of its own on the test database (user `$PGUSER`, else
/// `postgres`), dropped again by [`PgBench::drop_schema`]; an error when the database is not there.
pub struct PgBench {
    /// The store.
    pub store: Arc<dyn Store>,
    config: PgConfig,
}

impl PgBench {
    /// Opens the store; `tag` makes the schema's name unique to this bench run.
    pub fn open(tag: &str) -> Result<PgBench, StoreError> {
        let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
        let schema = format!("doorward_bench_{tag}_{}", std::process::id());
        let config = PgConfig {
            url: format!("{PG_TEST_HOST} user={user} connect_timeout=2"),
            schema: Some(schema),
            store: Default::default(),
        };
        let store = Arc::new(PgStore::open(&config)?);
        Ok(PgBench { store, config })
    }

    /// Closes the store (once every clone of [`PgBench::store`] is dropped) and drops its
    /// schema.
    pub fn drop_schema(self) -> Result<(), StoreError> {
        let PgBench { store, config } = self;
        drop(store);
        let schema = config.schema.expect("a bench store has its own schema");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&config.url, tokio_postgres::NoTls)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        })
    }
}
