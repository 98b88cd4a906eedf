//! The conformance tests, each a function of a [`Backend`].

use std::sync::{Arc, Mutex};

use doorward_control::audit::{
    verify_export, AuditChain, AuditConfig, AuditEntry, EntryKind, MAX_AUDIT_PAYLOAD_BYTES,
};
use doorward_proto::guard::{self, Guard};
use doorward_proto::{Digest, Id, KeyPair, PubKey};
use doorward_store::{
    migrate, Carrier, Delivery, DeliveryState, Device, DeviceKind, DeviceState, Driver, Home,
    Pending, Record, RecordKind, Store, StoreConfig, StoreError, MAX_KEYSTORE_BYTES, MAX_READ_ROWS,
    MAX_RECORD_BYTES, MAX_WRAPPED_KEY_BYTES,
};

use crate::backends::Backend;
pub use crate::footage::*;

pub const T0: u64 = 1_700_000_000_000;

pub fn server_key() -> KeyPair {
    KeyPair::from_seed(&[7; 32])
}

pub fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

pub fn audit_config() -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: 4,
        checkpoint_every_ms: 1_000,
    }
}

/// The payload of entry `index`: a function of the index, so a run can be replayed.
pub fn payload(index: u64) -> Vec<u8> {
    format!("event {index} at the front door").into_bytes()
}

/// Appends the chain's next entry and queues it with its checkpoint.
pub fn append_next(
    store: &dyn Store,
    chain: &mut AuditChain,
    key: &KeyPair,
) -> (AuditEntry, Pending) {
    let i = chain.next_index();
    let home = chain.home().clone();
    let a = chain
        .append(T0 + i, EntryKind::EVENT, None, payload(i), key)
        .unwrap();
    let p = store
        .append_audit(&home, a.entry.clone(), a.checkpoint)
        .unwrap();
    (a.entry, p)
}

/// Appends `n` entries (queued together, so they share commits) and waits for them.
fn append_n(store: &dyn Store, chain: &mut AuditChain, key: &KeyPair, n: u64) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..n {
        let (e, p) = append_next(store, chain, key);
        entries.push(e);
        pending.push(p);
    }
    for p in pending {
        p.wait().unwrap();
    }
    entries
}

fn all_entries(store: &dyn Store, home: &Id) -> Vec<AuditEntry> {
    store.audit_entries(home, 0, MAX_READ_ROWS).unwrap()
}

fn open(b: &dyn Backend) -> Box<dyn Store> {
    b.open(StoreConfig::default()).unwrap()
}

fn export_and_verify(store: &dyn Store, home: &Id, key: &KeyPair) -> u64 {
    let mut out = Vec::new();
    store.export_audit(home, key.public(), &mut out).unwrap();
    let report = verify_export(&out[..], Some(&key.public()))
        .unwrap_or_else(|e| panic!("export of {home} does not verify: {e:?}"));
    assert_eq!(&report.home, home);
    report.entries
}

pub fn append_read_head(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-a");
    let empty = store.audit_head(&home).unwrap();
    assert_eq!(empty.next_index, 0);
    assert_eq!(empty.head, doorward_control::audit::genesis_head(&home));
    assert!(empty.last_checkpoint.is_none());

    let mut chain = AuditChain::new(home.clone(), audit_config());
    let written = append_n(&*store, &mut chain, &key, 10);
    assert_eq!(all_entries(&*store, &home), written);
    assert_eq!(store.audit_entries(&home, 5, 3).unwrap(), written[5..8]);
    assert!(store.audit_entries(&home, 10, 5).unwrap().is_empty());

    let head = store.audit_head(&home).unwrap();
    assert_eq!(head.next_index, 10);
    assert_eq!(head.head, chain.head());
    // A checkpoint every 4 entries: after entries 4 and 8.
    let cp = head.last_checkpoint.unwrap();
    assert_eq!(cp.body.count, 8);
    cp.verify(&key.public()).unwrap();
    let cps = store.audit_checkpoints(&home, 0, 10).unwrap();
    assert_eq!(cps.iter().map(|c| c.body.count).collect::<Vec<_>>(), [4, 8]);
    assert_eq!(store.audit_checkpoints(&home, 5, 10).unwrap().len(), 1);

    // A checkpoint on its own, of the current head.
    store
        .append_checkpoint(&home, chain.checkpoint(T0 + 99, &key))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store
            .audit_head(&home)
            .unwrap()
            .last_checkpoint
            .unwrap()
            .body
            .count,
        10
    );
    assert_eq!(store.schema_version().unwrap(), migrate::LATEST_VERSION);
}

pub fn pending_can_be_awaited(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-async");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let (_, p) = append_next(&*store, &mut chain, &key);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(p).unwrap();
    assert_eq!(store.audit_head(&home).unwrap().next_index, 1);
}

pub fn i7_concurrent_appenders_keep_chain_order(b: &dyn Backend) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 100;
    let store: Arc<dyn Store> = Arc::from(open(b));
    let key = Arc::new(server_key());
    let home = id("home-busy");
    let chain = Arc::new(Mutex::new(AuditChain::new(home.clone(), audit_config())));
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
            s.spawn(move || {
                for _ in 0..PER_THREAD {
                    // Queue while holding the chain, so entries reach the queue in order;
                    // wait for the commit outside it, so appenders share commits.
                    let p = {
                        let mut c = chain.lock().unwrap();
                        append_next(&*store, &mut c, &key).1
                    };
                    p.wait().unwrap();
                }
            });
        }
    });
    let n = (THREADS * PER_THREAD) as u64;
    let stored = all_entries(&*store, &home);
    assert_eq!(stored.len() as u64, n);
    assert!(stored.iter().enumerate().all(|(i, e)| e.index == i as u64));
    let chain = chain.lock().unwrap();
    assert_eq!(store.audit_head(&home).unwrap().head, chain.head());
    // 800 is a multiple of 4: the last entry is covered by a checkpoint.
    assert_eq!(export_and_verify(&*store, &home, &key), n);
}

pub fn i7_many_homes_appended_concurrently_each_verify(b: &dyn Backend) {
    const HOMES: usize = 6;
    const PER_HOME: u64 = 40;
    let store: Arc<dyn Store> = Arc::from(open(b));
    let key = Arc::new(server_key());
    std::thread::scope(|s| {
        for h in 0..HOMES {
            let (store, key) = (store.clone(), key.clone());
            s.spawn(move || {
                let mut chain = AuditChain::new(id(&format!("home-{h}")), audit_config());
                for _ in 0..PER_HOME {
                    append_next(&*store, &mut chain, &key).1.wait().unwrap();
                }
            });
        }
    });
    for h in 0..HOMES {
        assert_eq!(
            export_and_verify(&*store, &id(&format!("home-{h}")), &key),
            PER_HOME
        );
    }
}

fn sample_records(home: &Id) -> Vec<Record> {
    let k = |b: u8| PubKey([b; 32]);
    vec![
        Record::Home(Home {
            id: home.clone(),
            name: format!("{home} house"),
            root_key: k(1),
            created_ms: T0,
        }),
        Record::Device(Device {
            home: home.clone(),
            id: id("lock-1"),
            kind: DeviceKind::Lock,
            key: k(2),
            witness: Some(id("cam-1")),
            paired_ms: T0 + 1,
        }),
        Record::Device(Device {
            home: home.clone(),
            id: id("cam-1"),
            kind: DeviceKind::Camera,
            key: k(3),
            witness: None,
            paired_ms: T0 + 2,
        }),
        Record::Carrier(Carrier {
            home: home.clone(),
            id: id("carrier-1"),
            name: "Parcels".into(),
            opted_in: true,
        }),
        Record::Driver(Driver {
            home: home.clone(),
            id: id("driver-1"),
            carrier: id("carrier-1"),
            key: k(4),
        }),
        Record::Delivery(Delivery {
            home: home.clone(),
            id: id("delivery-1"),
            carrier: id("carrier-1"),
            driver: Some(id("driver-1")),
            lock: id("lock-1"),
            window_start_ms: T0,
            window_end_ms: T0 + 3_600_000,
            state: DeliveryState::Assigned,
        }),
    ]
}

fn device_state(home: &Id, device: &str, seq: u64) -> DeviceState {
    DeviceState {
        home: home.clone(),
        device: id(device),
        last_seq: seq,
        chain_head: Digest([seq as u8; 32]),
        wrapped_session_key: Some(vec![0xab; 48]),
        updated_ms: T0 + seq % 1_000,
    }
}

fn put_all(store: &dyn Store, records: &[Record]) {
    let pending: Vec<_> = records
        .iter()
        .map(|r| store.put_record(r).unwrap())
        .collect();
    for p in pending {
        p.wait().unwrap();
    }
}

pub fn durable_across_reopen(b: &dyn Backend) {
    let key = server_key();
    let home = id("home-durable");
    let records = sample_records(&home);
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let written = {
        let store = open(b);
        let w = append_n(&*store, &mut chain, &key, 6);
        put_all(&*store, &records);
        store
            .put_device_state(&device_state(&home, "lock-1", 77))
            .unwrap()
            .wait()
            .unwrap();
        store
            .put_keystore(b"sealed keys", T0)
            .unwrap()
            .wait()
            .unwrap();
        w
        // Closed here: the writer stops and the connections close.
    };
    let store = open(b);
    assert_eq!(all_entries(&*store, &home), written);
    for r in &records {
        assert_eq!(
            store.record(r.home(), r.kind(), r.id()).unwrap().as_ref(),
            Some(r)
        );
    }
    assert_eq!(
        store.device_state(&home, &id("lock-1")).unwrap(),
        Some(device_state(&home, "lock-1", 77))
    );
    assert_eq!(
        store.keystore().unwrap().as_deref(),
        Some(&b"sealed keys"[..])
    );

    // The chain continues from the stored head after a restart.
    let head = store.audit_head(&home).unwrap();
    let mut resumed = AuditChain::resume(home.clone(), head.next_index, head.head, audit_config());
    append_n(&*store, &mut resumed, &key, 2);
    store
        .append_checkpoint(&home, resumed.checkpoint(T0 + 100, &key))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(export_and_verify(&*store, &home, &key), 8);
}

pub fn migrations_idempotent_on_reopen(b: &dyn Backend) {
    for _ in 0..3 {
        let store = open(b);
        assert_eq!(store.schema_version().unwrap(), migrate::LATEST_VERSION);
        assert_eq!(b.migration_rows(), migrate::MIGRATIONS.len() as i64);
    }
    // Data written between opens stays, untouched by a second migration run.
    let store = open(b);
    put_all(&*store, &sample_records(&id("home-m")));
    drop(store);
    let store = open(b);
    assert_eq!(
        store
            .records(&id("home-m"), RecordKind::Device, None, 10)
            .unwrap()
            .len(),
        2
    );
}

pub fn schema_newer_than_build_is_refused(b: &dyn Backend) {
    drop(open(b));
    b.record_future_version();
    match b.open(StoreConfig::default()) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!(found, migrate::LATEST_VERSION + 1);
            assert_eq!(known, migrate::LATEST_VERSION);
        }
        Err(e) => panic!("expected SchemaTooNew, got {e}"),
        Ok(_) => panic!("a database from a newer build was opened"),
    }
}

pub fn i11_home_cannot_read_another_homes_rows(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let (a, other) = (id("home-a"), id("home-b"));
    let mut chain = AuditChain::new(a.clone(), audit_config());
    append_n(&*store, &mut chain, &key, 4);
    put_all(&*store, &sample_records(&a));
    store
        .put_device_state(&device_state(&a, "lock-1", 5))
        .unwrap()
        .wait()
        .unwrap();

    // Home B asks for exactly the identifiers home A uses.
    assert!(all_entries(&*store, &other).is_empty());
    assert!(store.audit_checkpoints(&other, 0, 10).unwrap().is_empty());
    let head = store.audit_head(&other).unwrap();
    assert_eq!(head.next_index, 0);
    assert!(head.last_checkpoint.is_none());
    for r in sample_records(&a) {
        assert_eq!(store.record(&other, r.kind(), r.id()).unwrap(), None);
    }
    for kind in [
        RecordKind::Home,
        RecordKind::Device,
        RecordKind::Carrier,
        RecordKind::Driver,
        RecordKind::Delivery,
    ] {
        assert!(store.records(&other, kind, None, 100).unwrap().is_empty());
        assert!(!store.records(&a, kind, None, 100).unwrap().is_empty());
    }
    assert_eq!(store.device_state(&other, &id("lock-1")).unwrap(), None);
    assert!(store.device_states(&other, None, 100).unwrap().is_empty());
    // Home B's first entry starts its own chain; A's chain does not continue into it.
    let mut chain_b = AuditChain::new(other.clone(), audit_config());
    append_n(&*store, &mut chain_b, &key, 1);
    assert_eq!(all_entries(&*store, &a).len(), 4);
    assert_eq!(all_entries(&*store, &other).len(), 1);
}

pub fn limit_audit_payload_too_large(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-big");
    let entry = AuditEntry {
        index: 0,
        time_ms: T0,
        kind: EntryKind::EVENT,
        device: None,
        payload: vec![0; MAX_AUDIT_PAYLOAD_BYTES + 1],
        prev: doorward_control::audit::genesis_head(&home),
        hash: Digest::ZERO,
    };
    match store.append_audit(&home, entry.clone(), None) {
        Err(StoreError::TooLarge { len, limit, .. }) => {
            assert_eq!(len, MAX_AUDIT_PAYLOAD_BYTES + 1);
            assert_eq!(limit, MAX_AUDIT_PAYLOAD_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // At the limit it is stored.
    let key = server_key();
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let a = chain
        .append(
            T0,
            EntryKind::EVENT,
            None,
            vec![0; MAX_AUDIT_PAYLOAD_BYTES],
            &key,
        )
        .unwrap();
    store
        .append_audit(&home, a.entry, None)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.audit_head(&home).unwrap().next_index, 1);
}

pub fn limit_record_key_and_keystore_too_large(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-big");
    let big = Record::Home(Home {
        id: home.clone(),
        name: "x".repeat(MAX_RECORD_BYTES),
        root_key: PubKey([1; 32]),
        created_ms: T0,
    });
    assert!(matches!(
        store.put_record(&big),
        Err(StoreError::TooLarge {
            limit: MAX_RECORD_BYTES,
            ..
        })
    ));
    let mut st = device_state(&home, "lock-1", 1);
    st.wrapped_session_key = Some(vec![0; MAX_WRAPPED_KEY_BYTES + 1]);
    assert!(matches!(
        store.put_device_state(&st),
        Err(StoreError::TooLarge {
            limit: MAX_WRAPPED_KEY_BYTES,
            ..
        })
    ));
    st.wrapped_session_key = Some(vec![0; MAX_WRAPPED_KEY_BYTES]);
    store.put_device_state(&st).unwrap().wait().unwrap();
    assert!(matches!(
        store.put_keystore(&vec![0; MAX_KEYSTORE_BYTES + 1], T0),
        Err(StoreError::TooLarge {
            limit: MAX_KEYSTORE_BYTES,
            ..
        })
    ));
    store
        .put_keystore(&vec![0; MAX_KEYSTORE_BYTES], T0)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.keystore().unwrap().unwrap().len(), MAX_KEYSTORE_BYTES);
}

pub fn limit_read_rows(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-r");
    let too_many = MAX_READ_ROWS + 1;
    let is_limit = |r: Result<usize, StoreError>| matches!(r, Err(StoreError::TooLarge { len, limit: MAX_READ_ROWS, .. }) if len == too_many);
    assert!(is_limit(
        store.audit_entries(&home, 0, too_many).map(|v| v.len())
    ));
    assert!(is_limit(
        store.audit_checkpoints(&home, 0, too_many).map(|v| v.len())
    ));
    assert!(is_limit(
        store
            .records(&home, RecordKind::Device, None, too_many)
            .map(|v| v.len())
    ));
    assert!(is_limit(
        store.device_states(&home, None, too_many).map(|v| v.len())
    ));
    assert!(is_limit(store.home_ids(None, too_many).map(|v| v.len())));
    assert!(store.audit_entries(&home, 0, MAX_READ_ROWS).is_ok());
}

pub fn i8_full_queue_is_refused_then_drains(b: &dyn Backend) {
    const QUEUE: usize = 8;
    const BATCH: usize = 4;
    let store = b
        .open(StoreConfig {
            queue_capacity: QUEUE,
            batch_max_writes: BATCH,
            ..StoreConfig::default()
        })
        .unwrap();
    let key = server_key();
    let home = id("home-full");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let stall = b.stall();
    let mut accepted = Vec::new();
    let mut refused = None;
    // The writer holds at most one batch; after that the queue fills.
    for _ in 0..QUEUE + BATCH + 8 {
        let i = chain.next_index();
        let a = chain
            .append(T0 + i, EntryKind::EVENT, None, payload(i), &key)
            .unwrap();
        match store.append_audit(&home, a.entry, a.checkpoint) {
            Ok(p) => accepted.push(p),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(refused, Some(StoreError::QueueFull { limit: QUEUE }));
    assert!(accepted.len() >= QUEUE && accepted.len() <= QUEUE + BATCH);
    drop(stall);
    let n = accepted.len();
    for p in accepted {
        p.wait().unwrap();
    }
    assert_eq!(store.audit_head(&home).unwrap().next_index, n as u64);
    // Drained: writes are accepted again.
    store
        .put_record(&sample_records(&home)[0])
        .unwrap()
        .wait()
        .unwrap();
}

/// A valid entry of `home` at `index` linking to `prev`, as a chain would make it (the hash
/// is the chain's, so only continuity is at stake).
fn forged(home: &Id, index: u64, prev: Digest) -> AuditEntry {
    let mut chain = AuditChain::resume(home.clone(), index, prev, audit_config());
    chain
        .append(
            T0 + index,
            EntryKind::EVENT,
            None,
            b"forged".to_vec(),
            &server_key(),
        )
        .unwrap()
        .entry
}

pub fn i7_store_refuses_gap_replay_and_fork(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-chain");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let written = append_n(&*store, &mut chain, &key, 3);
    let head = chain.head();

    // A gap: index 4 while 3 is next.
    let gap = forged(&home, 4, head);
    assert_eq!(
        store.append_audit(&home, gap, None).unwrap().wait(),
        Err(StoreError::AuditOutOfOrder {
            home: home.clone(),
            expected: 3,
            found: 4
        })
    );
    // A replay of a stored entry.
    assert_eq!(
        store
            .append_audit(&home, written[1].clone(), None)
            .unwrap()
            .wait(),
        Err(StoreError::AuditOutOfOrder {
            home: home.clone(),
            expected: 3,
            found: 1
        })
    );
    // A fork: the right index, linked to another entry than the stored head.
    let fork = forged(&home, 3, written[1].hash);
    assert_eq!(
        store.append_audit(&home, fork, None).unwrap().wait(),
        Err(StoreError::AuditFork {
            home: home.clone(),
            index: 3
        })
    );
    // Another home's entry is not this home's continuation either.
    let other = id("home-other");
    let mut other_chain = AuditChain::new(other.clone(), audit_config());
    let other_entry = other_chain
        .append(T0, EntryKind::EVENT, None, payload(0), &key)
        .unwrap()
        .entry;
    assert!(matches!(
        store.append_audit(&home, other_entry, None).unwrap().wait(),
        Err(StoreError::AuditOutOfOrder { .. })
    ));
    // Nothing of it was stored; the real chain continues.
    assert_eq!(all_entries(&*store, &home), written);
    append_n(&*store, &mut chain, &key, 1);
    assert_eq!(store.audit_head(&home).unwrap().next_index, 4);
}

pub fn i7_store_with_chain_check_off_stores_a_fork(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-chain");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let written = append_n(&*store, &mut chain, &key, 3);
    let _off = guard::disable(Guard::AuditHashChain);
    let fork = forged(&home, 3, written[0].hash);
    store
        .append_audit(&home, fork.clone(), None)
        .unwrap()
        .wait()
        .unwrap();
    // The fork is in the record: the log no longer verifies as one chain.
    assert_eq!(all_entries(&*store, &home)[3], fork);
    assert_ne!(fork.prev, written[2].hash);
}

pub fn i7_checkpoint_must_sign_stored_head(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-cp");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    append_n(&*store, &mut chain, &key, 2);
    // A checkpoint of a chain the store does not hold (one entry ahead).
    let mut ahead = chain.clone();
    ahead
        .append(T0 + 9, EntryKind::EVENT, None, payload(9), &key)
        .unwrap();
    let wrong = ahead.checkpoint(T0 + 10, &key);
    assert_eq!(
        store.append_checkpoint(&home, wrong).unwrap().wait(),
        Err(StoreError::CheckpointMismatch {
            home: home.clone(),
            count: 3
        })
    );
    // Another home's checkpoint filed under this home.
    let other = AuditChain::new(id("home-x"), audit_config()).checkpoint(T0, &key);
    assert!(matches!(
        store.append_checkpoint(&home, other).unwrap().wait(),
        Err(StoreError::CheckpointMismatch { .. })
    ));
    assert!(store.audit_checkpoints(&home, 0, 10).unwrap().is_empty());
    store
        .append_checkpoint(&home, chain.checkpoint(T0 + 11, &key))
        .unwrap()
        .wait()
        .unwrap();
    // With the check off the mismatched checkpoint is stored.
    let _off = guard::disable(Guard::AuditHashChain);
    let wrong = ahead.checkpoint(T0 + 12, &key);
    store
        .append_checkpoint(&home, wrong)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.audit_checkpoints(&home, 0, 10).unwrap().len(), 2);
}

pub fn a_refused_write_does_not_fail_the_writes_batched_with_it(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-batch");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    let written = append_n(&*store, &mut chain, &key, 2);
    let stall = b.stall();
    let (_, first) = append_next(&*store, &mut chain, &key);
    // With the check off, a replayed entry reaches the database, which refuses its
    // duplicate key: the transaction of its batch fails as a whole.
    let replay = {
        let _off = guard::disable(Guard::AuditHashChain);
        store.append_audit(&home, written[0].clone(), None).unwrap()
    };
    let record = store.put_record(&sample_records(&home)[0]).unwrap();
    let (_, second) = append_next(&*store, &mut chain, &key);
    drop(stall);
    first.wait().unwrap();
    assert!(matches!(replay.wait(), Err(StoreError::Backend(_))));
    record.wait().unwrap();
    second.wait().unwrap();
    assert_eq!(store.audit_head(&home).unwrap().next_index, 4);
    assert_eq!(all_entries(&*store, &home)[0], written[0]);
}

pub fn limit_cached_heads_evicts_and_still_checks(b: &dyn Backend) {
    let store = b
        .open(StoreConfig {
            cached_heads_max: 2,
            ..StoreConfig::default()
        })
        .unwrap();
    let key = server_key();
    let mut chains: Vec<_> = (0..5)
        .map(|h| AuditChain::new(id(&format!("home-c{h}")), audit_config()))
        .collect();
    // Round robin over more homes than the cache holds: every head is reloaded.
    for _ in 0..4 {
        for c in chains.iter_mut() {
            append_next(&*store, c, &key).1.wait().unwrap();
        }
    }
    let home = chains[0].home().clone();
    let stale = forged(&home, 4, doorward_control::audit::genesis_head(&home));
    assert!(matches!(
        store.append_audit(&home, stale, None).unwrap().wait(),
        Err(StoreError::AuditFork { .. })
    ));
    for c in &mut chains {
        let home = c.home().clone();
        store
            .append_checkpoint(&home, c.checkpoint(T0 + 50, &key))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(export_and_verify(&*store, &home, &key), 4);
    }
}

pub fn limit_batch_size_one(b: &dyn Backend) {
    let store = b
        .open(StoreConfig {
            batch_max_writes: 1,
            ..StoreConfig::default()
        })
        .unwrap();
    let key = server_key();
    let home = id("home-one");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    append_n(&*store, &mut chain, &key, 12);
    assert_eq!(export_and_verify(&*store, &home, &key), 12);
}

pub fn export_verifies_offline(b: &dyn Backend) {
    let store = open(b);
    let key = server_key();
    let home = id("home-export");
    let mut chain = AuditChain::new(home.clone(), audit_config());
    append_n(&*store, &mut chain, &key, 9);
    store
        .append_checkpoint(&home, chain.checkpoint(T0 + 20, &key))
        .unwrap()
        .wait()
        .unwrap();
    let mut out = Vec::new();
    let written = store.export_audit(&home, key.public(), &mut out).unwrap();
    assert_eq!(written as usize, out.len());
    let report = verify_export(&out[..], Some(&key.public())).unwrap();
    assert_eq!(report.entries, 9);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.head, chain.head());
    // A byte flipped in the stored record is named by the verifier.
    let mut bad = out.clone();
    let n = bad.len();
    bad[n / 2] ^= 1;
    assert!(verify_export(&bad[..], Some(&key.public())).is_err());

    // Entries still waiting for their checkpoint stay out of the export, which verifies and
    // ends at the last signed head; the next checkpoint brings them in.
    let signed_head = chain.head();
    append_n(&*store, &mut chain, &key, 2);
    assert_eq!(store.audit_head(&home).unwrap().next_index, 11);
    let mut out = Vec::new();
    store.export_audit(&home, key.public(), &mut out).unwrap();
    let report = verify_export(&out[..], Some(&key.public())).unwrap();
    assert_eq!((report.entries, report.head), (9, signed_head));
    store
        .append_checkpoint(&home, chain.checkpoint(T0 + 30, &key))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(export_and_verify(&*store, &home, &key), 11);
}

pub fn registry_round_trip_and_paging(b: &dyn Backend) {
    let store = open(b);
    let homes = [id("home-1"), id("home-2"), id("home-3")];
    for h in &homes {
        put_all(&*store, &sample_records(h));
    }
    let h = &homes[0];
    let devices = store.records(h, RecordKind::Device, None, 10).unwrap();
    // By id: "cam-1" before "lock-1".
    assert_eq!(
        devices.iter().map(|r| r.id().as_str()).collect::<Vec<_>>(),
        ["cam-1", "lock-1"]
    );
    let page = store.records(h, RecordKind::Device, None, 1).unwrap();
    let next = store
        .records(h, RecordKind::Device, Some(page[0].id()), 1)
        .unwrap();
    assert_eq!(next[0].id().as_str(), "lock-1");
    // Replace, then delete.
    let mut d = match &sample_records(h)[5] {
        Record::Delivery(d) => d.clone(),
        _ => unreachable!(),
    };
    d.state = DeliveryState::Done;
    store
        .put_record(&Record::Delivery(d.clone()))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store.record(h, RecordKind::Delivery, &d.id).unwrap(),
        Some(Record::Delivery(d.clone()))
    );
    store
        .delete_record(h, RecordKind::Delivery, &d.id)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.record(h, RecordKind::Delivery, &d.id).unwrap(), None);
    store
        .delete_record(h, RecordKind::Delivery, &d.id)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.home_ids(None, 10).unwrap(), homes);
    assert_eq!(
        store.home_ids(Some(&homes[0]), 1).unwrap(),
        [homes[1].clone()]
    );
}

pub fn device_state_and_keystore_round_trip(b: &dyn Backend) {
    let store = open(b);
    let home = id("home-ds");
    assert_eq!(store.keystore().unwrap(), None);
    let mut states = vec![
        device_state(&home, "cam-1", 3),
        device_state(&home, "lock-1", u64::MAX),
    ];
    states[0].wrapped_session_key = None;
    for s in &states {
        store.put_device_state(s).unwrap().wait().unwrap();
    }
    assert_eq!(store.device_states(&home, None, 10).unwrap(), states);
    assert_eq!(
        store.device_states(&home, Some(&id("cam-1")), 10).unwrap(),
        states[1..]
    );
    let mut newer = states[1].clone();
    newer.last_seq = 9;
    store.put_device_state(&newer).unwrap().wait().unwrap();
    assert_eq!(
        store.device_state(&home, &id("lock-1")).unwrap(),
        Some(newer)
    );
    store.put_keystore(b"v1", T0).unwrap().wait().unwrap();
    store.put_keystore(b"v2", T0 + 1).unwrap().wait().unwrap();
    assert_eq!(store.keystore().unwrap().as_deref(), Some(&b"v2"[..]));
}

/// The HTTP API's principals (accounts, sessions, carriers, key hashes, drivers, deliveries)
/// survive a reopen, page by kind, and never show up as homes or as another tenant's rows.
pub fn api_principals_round_trip_and_isolated(b: &dyn Backend) {
    use doorward_store::{
        carrier_ns, Account, ApiKey, CarrierAccount, CarrierDriver, DeliveryRef, DriverKey,
        HomeOwner, LoginLink, PolicyRow, Session, AUTH_NS,
    };
    let home = id("home-api");
    let carrier = id("c-1");
    let ns = carrier_ns(&carrier).unwrap();
    let hex64 = |b: u8| id(&format!("{b:02x}").repeat(32));
    let rows = vec![
        Record::Account(Account {
            id: id("a-1"),
            email: "owner@example.org".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_ms: T0,
            homes: vec![home.clone()],
        }),
        Record::Session(Session {
            id: hex64(1),
            account: id("a-1"),
            created_ms: T0,
            expires_ms: T0 + 1_000,
            last_seen_ms: T0,
        }),
        Record::LoginLink(LoginLink {
            id: hex64(2),
            account: id("a-1"),
            expires_ms: T0 + 1_000,
        }),
        Record::HomeOwner(HomeOwner {
            home: home.clone(),
            account: id("a-1"),
            created: true,
            policy: Some(PolicyRow {
                windows: vec![(60, 120)],
                garage_only: true,
                vacation: false,
                live_approval: true,
            }),
        }),
        Record::CarrierAccount(CarrierAccount {
            id: carrier.clone(),
            name: "Parcels".into(),
            created_ms: T0,
        }),
        Record::ApiKey(ApiKey {
            id: hex64(3),
            carrier: carrier.clone(),
            created_ms: T0,
        }),
        Record::DriverKey(DriverKey {
            id: hex64(4),
            carrier: carrier.clone(),
            driver: id("drv-1"),
        }),
        Record::CarrierDriver(CarrierDriver {
            ns: ns.clone(),
            id: id("drv-1"),
            name: "Dana".into(),
            key: PubKey([4; 32]),
            created_ms: T0,
        }),
        Record::DeliveryRef(DeliveryRef {
            ns: ns.clone(),
            id: id("d-1"),
            home: home.clone(),
        }),
    ];
    {
        let store = open(b);
        put_all(&*store, &rows);
    }
    let store = open(b);
    let auth = id(AUTH_NS);
    for r in &rows {
        assert_eq!(
            store.record(r.home(), r.kind(), r.id()).unwrap().as_ref(),
            Some(r),
            "{:?} after reopen",
            r.kind()
        );
        // Asked under any other namespace, the row is not there (I11).
        for other in [&home, &auth, &ns, &id("home-other")] {
            if other != r.home() {
                assert_eq!(store.record(other, r.kind(), r.id()).unwrap(), None);
            }
        }
    }
    assert_eq!(
        store
            .records(&ns, RecordKind::CarrierDriver, None, 10)
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .records(
            &carrier_ns(&id("c-2")).unwrap(),
            RecordKind::DeliveryRef,
            None,
            10
        )
        .unwrap()
        .is_empty());
    // Namespaces are not homes: a restart never treats them as tenants.
    assert!(store.home_ids(None, 100).unwrap().is_empty());
    store
        .delete_record(&auth, RecordKind::Session, &hex64(1))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store.record(&auth, RecordKind::Session, &hex64(1)).unwrap(),
        None
    );
}
