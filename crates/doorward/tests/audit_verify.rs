//! `doorward audit verify` accepts an export and names the first bad entry of a copy with one
//! byte flipped, and the entries a verified checkpoint still covers.

use std::process::Command;

use doorward_control::audit::{AuditChain, AuditConfig, EntryKind};
use doorward_control::bench::export_chain;
use doorward_proto::{Id, KeyPair};

fn write_export(dir: &std::path::Path, server: &KeyPair) -> (std::path::PathBuf, Vec<usize>) {
    let mut chain = AuditChain::new(
        Id::new("home-1").unwrap(),
        AuditConfig {
            checkpoint_every_entries: 4,
            ..AuditConfig::default()
        },
    );
    let entries = (0..10u64).map(|i| {
        let payload = format!("decision {i}").into_bytes();
        let lock = Some(Id::new("lock-1").unwrap());
        (1_000 + i, EntryKind::EVENT, lock, payload)
    });
    let bytes = export_chain(&mut chain, server, entries, 2_000).bytes;
    // Where each entry's payload sits, to flip a byte inside a known entry.
    let offsets = (0..10u64)
        .map(|i| {
            let needle = format!("decision {i}").into_bytes();
            bytes
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
                .unwrap()
        })
        .collect();
    let path = dir.join("record.dwa");
    std::fs::write(&path, &bytes).unwrap();
    (path, offsets)
}

fn doorward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_doorward"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn i7_audit_verify_accepts_an_export_and_names_the_first_bad_entry() {
    let dir = std::env::temp_dir().join(format!("doorward-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = KeyPair::from_seed(&[9; 32]);
    let (path, offsets) = write_export(&dir, &server);
    let p = path.to_str().unwrap();

    let ok = doorward(&[
        "audit",
        "verify",
        p,
        "--server-key",
        &server.public().to_hex(),
    ]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("verified") && out.contains("entries       10"),
        "{out}"
    );

    // Flip one byte inside entry 6's payload: entry 6 is the first bad one, and the
    // checkpoint of the first 4 entries still covers those.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[6]] ^= 0x01;
    let bad = dir.join("record-flipped.dwa");
    std::fs::write(&bad, &bytes).unwrap();
    let res = doorward(&["audit", "verify", bad.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&res.stdout);
    assert_eq!(res.status.code(), Some(3), "{out}");
    assert!(
        out.contains("NOT VERIFIED")
            && out.contains("first bad entry: 6")
            && out.contains("entries 0 to 3 are still covered by a verified checkpoint"),
        "{out}"
    );

    // Another server's key is refused even though the export is intact.
    let other = KeyPair::from_seed(&[8; 32]).public().to_hex();
    let res = doorward(&["audit", "verify", p, "--server-key", &other]);
    assert_eq!(res.status.code(), Some(3));

    // A missing file is a usage error, not a verdict.
    let res = doorward(&["audit", "verify", dir.join("missing").to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}
