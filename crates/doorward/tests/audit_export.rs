//! `doorward audit export` reads a server's store offline and writes the record that
//! `doorward audit verify` accepts; a copy with one byte flipped is refused, naming the entry.

use std::process::Command;

use doorward_control::HomePolicy;
use doorward_proto::{Id, KeyPair};
use doorward_server::{Database, Mqtt, ServeConfig, Server};
use doorward_store::{SqliteStore, Store};

fn doorward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_doorward"))
        .args(args)
        .output()
        .unwrap()
}

/// A real server over `data`: one home with a carrier opted in, then a clean stop.
async fn server_with_a_home(data: &std::path::Path, home: &Id, carrier: &Id) {
    let cfg = ServeConfig {
        database: Database::Sqlite(data.join("doorward.db")),
        data_dir: data.to_path_buf(),
        mqtt: Mqtt::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        webhook_roots: None,
    };
    let server = Server::start(cfg).await.expect("the server starts");
    let h = server.handle();
    let root = KeyPair::generate(&mut rand_core::OsRng);
    h.add_home_with_root(home.clone(), &root, 3_600_000, HomePolicy::default())
        .await
        .unwrap();
    h.opt_in(home.clone(), carrier.clone()).await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i7_audit_export_from_a_data_dir_verifies_and_a_flipped_byte_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let home = Id::new("home-export").unwrap();
    let carrier = Id::new("carrier-7f3e9a").unwrap();
    server_with_a_home(&data, &home, &carrier).await;

    let file = tmp.path().join("record.dwa");
    let out = doorward(&[
        "audit",
        "export",
        "--data",
        data.to_str().unwrap(),
        "--home",
        home.as_str(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_key = doorward_server::keystore::Keystore::open(&data)
        .unwrap()
        .server_key()
        .unwrap()
        .0
        .public()
        .to_hex();
    let ok = doorward(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--server-key",
        &server_key,
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("verified") && text.contains(home.as_str()),
        "{text}"
    );

    // The first entry that names the carrier is where the byte is flipped.
    let store = SqliteStore::open(data.join("doorward.db")).unwrap();
    let entries = store.audit_entries(&home, 0, 10_000).unwrap();
    let needle = carrier.as_str().as_bytes();
    let index = entries
        .iter()
        .find(|e| e.payload.windows(needle.len()).any(|w| w == needle))
        .expect("the opt-in is on record")
        .index;
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] ^= 0x01;
    let bad = tmp.path().join("record-flipped.dwa");
    std::fs::write(&bad, &bytes).unwrap();
    let res = doorward(&[
        "audit",
        "verify",
        bad.to_str().unwrap(),
        "--server-key",
        &server_key,
    ]);
    let text = String::from_utf8_lossy(&res.stdout);
    assert_eq!(res.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&format!("first bad entry: {index}")),
        "expected entry {index}: {text}"
    );

    // Usage errors are not verdicts: an unknown home, a directory with no server key.
    let res = doorward(&[
        "audit",
        "export",
        "--data",
        data.to_str().unwrap(),
        "--home",
        "nobody",
    ]);
    assert_eq!(res.status.code(), Some(1));
    let res = doorward(&[
        "audit",
        "export",
        "--data",
        tmp.path().join("empty").to_str().unwrap(),
        "--home",
        home.as_str(),
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("no server key"));
}
