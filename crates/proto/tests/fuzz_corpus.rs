//! Replays every file of every fuzz corpus (`fuzz/corpus/<target>/`) through the same code the
//! cargo-fuzz targets call (`fuzz/src/lib.rs`, included here), so the corpus, including any
//! crash a fuzzer found and we fixed, is checked by every `cargo test`.
//!
//! `DOORWARD_WRITE_CORPUS=1 cargo test -p doorward-proto --test fuzz_corpus` regenerates the
//! seed corpus (valid messages of every kind made with the targets' fixed keys, plus mutated
//! ones); files a fuzzer added are kept.

mod common;

#[allow(dead_code)] // The fuzz crate's key helpers are for the targets; the writer uses some.
#[path = "../../../fuzz/src/lib.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::*;
use doorward_proto::grant::{self, GrantSpec, Purpose};
use doorward_proto::pairing::*;
use doorward_proto::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Fewest seed files each target's corpus must hold.
const MIN_FILES_PER_TARGET: usize = 10;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("envelope_decode", targets::envelope_decode),
    ("grant_verify", targets::grant_verify),
    ("pairing_msg", targets::pairing_msg),
    ("qr_parse", targets::qr_parse),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_replays_without_a_panic() {
    if std::env::var_os("DOORWARD_WRITE_CORPUS").is_some() {
        write_corpus();
    }
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
            .map(|e| e.expect("readable corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= MIN_FILES_PER_TARGET,
            "{name}: only {} corpus files",
            files.len()
        );
        for f in files {
            let data = std::fs::read(&f).expect("readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                panic!("{name} panicked on {}", f.display());
            }
        }
    }
}

#[test]
fn the_targets_accept_the_valid_inputs_they_are_meant_to_reach() {
    // Without this, a target whose keys drifted from the corpus would only ever see
    // rejections and test nothing deep.
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let env = Envelope::signed(body(&mut rng), &targets::signer());
    assert_eq!(env.verify_sig(&targets::signer().public()), Ok(()));
    let token = grant_token(&mut rng, 1_000, 10_000);
    let v = grant::verify(
        &token,
        &targets::issuer().public(),
        &targets::lock(),
        &targets::driver().public(),
        targets::GRANT_NOW_MS,
    );
    assert!(v.is_ok(), "{v:?}");
}

fn grant_token(rng: &mut ChaCha20Rng, nb: u64, na: u64) -> Vec<u8> {
    let spec = GrantSpec {
        id: GrantId([7; 16]),
        home: Id::new("home-1").unwrap(),
        lock: targets::lock(),
        purpose: Purpose::Delivery(Id::new("d-1").unwrap()),
        carrier: Some(Id::new("acme").unwrap()),
        driver: targets::driver().public(),
        not_before_ms: nb,
        not_after_ms: na,
        max_open_ms: 120_000,
    };
    grant::issue(&spec, &targets::issuer(), rng).unwrap()
}

fn write_corpus() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xC0);
    let mut out: Vec<(&str, String, Vec<u8>)> = Vec::new();

    // envelope_decode: every body variant, signed and MAC'd, then mutations of them.
    let mut envs = Vec::new();
    for k in 0..BODY_VARIANTS {
        let b = body_of(&mut rng, k);
        envs.push(Envelope::signed(b.clone(), &targets::signer()).to_bytes());
        envs.push(Envelope::maced(b, &targets::session_key()).to_bytes());
    }
    for (i, e) in envs.iter().enumerate() {
        out.push(("envelope_decode", format!("valid-{i:02}"), e.clone()));
    }
    for i in 0..20 {
        let m = mutate(&mut rng, &envs[i % envs.len()]);
        out.push(("envelope_decode", format!("mutated-{i:02}"), m));
    }

    // grant_verify: valid, attenuated, out-of-window, mutated.
    let token = grant_token(&mut rng, 1_000, 10_000);
    let narrowed =
        grant::attenuate_window(&token, &targets::issuer().public(), 2_000, 8_000, &mut rng)
            .unwrap();
    let expired = grant_token(&mut rng, 1, 2);
    out.push(("grant_verify", "valid".into(), token.clone()));
    out.push(("grant_verify", "attenuated".into(), narrowed.clone()));
    out.push(("grant_verify", "expired".into(), expired));
    for i in 0..12 {
        let seed = if i % 2 == 0 { &token } else { &narrowed };
        out.push((
            "grant_verify",
            format!("mutated-{i:02}"),
            mutate(&mut rng, seed),
        ));
    }

    // pairing_msg: an honest exchange on the targets' code, then random and mutated ones.
    let code = targets::setup_code();
    let dev = targets::lock();
    let (h, ha) = PairingStart::new(PairingRole::Home, &code, &dev, &mut rng);
    let (d, db) = PairingStart::new(PairingRole::Device, &code, &dev, &mut rng);
    let (home, device) = (h.finish(&db).unwrap(), d.finish(&ha).unwrap());
    let dk = device
        .confirm(PairingPayload::Device(DeviceKeys {
            kind: DeviceKind::Lock,
            device: dev.clone(),
            key: targets::signer().public(),
        }))
        .unwrap();
    let hk = home
        .confirm(PairingPayload::Home(HomeKeys {
            home: Id::new("home-1").unwrap(),
            root: targets::issuer().public(),
            server: targets::signer().public(),
            witness: None,
        }))
        .unwrap();
    let honest = [
        PairingMessage::Pake(ha).to_bytes(),
        PairingMessage::Pake(db).to_bytes(),
        PairingMessage::Confirm(dk).to_bytes(),
        PairingMessage::Confirm(hk).to_bytes(),
    ];
    for (i, m) in honest.iter().enumerate() {
        out.push(("pairing_msg", format!("honest-{i}"), m.clone()));
    }
    for i in 0..8 {
        out.push((
            "pairing_msg",
            format!("random-{i}"),
            pairing_message(&mut rng).to_bytes(),
        ));
    }
    for i in 0..8 {
        let m = mutate(&mut rng, &honest[i % honest.len()]);
        out.push(("pairing_msg", format!("mutated-{i}"), m));
    }

    // qr_parse: valid payloads and codes, and damaged ones.
    let mut texts = Vec::new();
    for (i, kind) in [DeviceKind::Lock, DeviceKind::Camera]
        .into_iter()
        .enumerate()
    {
        let q = QrPayload {
            kind,
            device: Id::new(["lock-1", "cam:front-door"][i]).unwrap(),
            key: KeyPair::from_seed(&[i as u8 + 1; 32]).public(),
        };
        texts.push(q.to_string());
    }
    for _ in 0..4 {
        texts.push(SetupCode::generate(&mut rng).to_string());
    }
    for (i, t) in texts.iter().enumerate() {
        out.push(("qr_parse", format!("valid-{i}"), t.clone().into_bytes()));
    }
    for i in 0..8 {
        let m = mutate(&mut rng, texts[i % texts.len()].as_bytes());
        out.push(("qr_parse", format!("mutated-{i}"), m));
    }

    for (target, name, data) in out {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    }
}
