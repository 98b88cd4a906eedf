//! SIGKILL during appends (SQLite): the test binary runs itself as a child that appends in a
//! loop from several threads and prints every acknowledged index; the parent kills it with
//! SIGKILL mid-stream, reopens the file, and checks that the log is a prefix of the appended
//! sequence that holds every acknowledged entry.
//!
//! A killed process leaves the OS page cache intact, so this checks the commit protocol
//! (nothing acknowledged before its commit; WAL recovery on open), not power loss.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use doorward_control::audit::{AuditChain, EntryKind};
use doorward_store::{SqliteStore, Store, MAX_READ_ROWS};

use crate::suite::{append_next, audit_config, id, payload, server_key, T0};

const CHILD_ENV: &str = "DOORWARD_STORE_CRASH_CHILD";
const TEST_NAME: &str = "crash::sqlite_sigkill_loses_no_acknowledged_entry";
/// Acknowledgements the parent waits for before it kills the child.
const KILL_AFTER_ACKS: usize = 400;
/// Appending threads in the child.
const CHILD_THREADS: usize = 4;
/// Most entries the child appends if nobody kills it.
const CHILD_MAX_ENTRIES: u64 = 1_000_000;

#[test]
fn sqlite_sigkill_loses_no_acknowledged_entry() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("ack ") {
                let _ = tx.send(i.parse::<u64>().unwrap());
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < KILL_AFTER_ACKS {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(i) => acked.push(i),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "the appending child stopped acknowledging ({e}) after {} acks",
                    acked.len()
                );
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap();
    // Acknowledgements printed before the kill count too.
    acked.extend(rx.try_iter());
    let max_acked = *acked.iter().max().unwrap();

    let store = SqliteStore::open(&path).unwrap();
    let home = id("home-crash");
    let mut stored = Vec::new();
    loop {
        let page = store
            .audit_entries(&home, stored.len() as u64, MAX_READ_ROWS)
            .unwrap();
        let done = page.len() < MAX_READ_ROWS;
        stored.extend(page);
        if done {
            break;
        }
    }
    assert!(
        stored.len() as u64 > max_acked,
        "acknowledged entry {max_acked} lost: {} entries stored",
        stored.len()
    );
    // Every stored entry is the one the child appended at that index: a prefix, no holes.
    let key = server_key();
    let mut expected = AuditChain::new(home.clone(), audit_config());
    for (i, e) in stored.iter().enumerate() {
        let want = expected
            .append(
                T0 + i as u64,
                EntryKind::EVENT,
                None,
                payload(i as u64),
                &key,
            )
            .unwrap()
            .entry;
        assert_eq!(e, &want, "stored entry {i} differs from the appended one");
    }
    // The chain continues after the crash.
    append_next(&store, &mut expected, &key).1.wait().unwrap();
    eprintln!(
        "crash test: {} acknowledged (max {max_acked}), {} stored after SIGKILL",
        acked.len(),
        stored.len()
    );
}

fn child(path: &str) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
    let key = Arc::new(server_key());
    let chain = Arc::new(Mutex::new(AuditChain::new(
        id("home-crash"),
        audit_config(),
    )));
    std::thread::scope(|s| {
        for _ in 0..CHILD_THREADS {
            let (store, key, chain) = (store.clone(), key.clone(), chain.clone());
            s.spawn(move || loop {
                let (entry, p) = {
                    let mut c = chain.lock().unwrap();
                    if c.next_index() >= CHILD_MAX_ENTRIES {
                        return;
                    }
                    append_next(&*store, &mut c, &key)
                };
                p.wait().unwrap();
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {}", entry.index).unwrap();
                out.flush().unwrap();
            });
        }
    });
}
