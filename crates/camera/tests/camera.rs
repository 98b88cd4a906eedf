//! The camera state machine: chain, proof and checkpoint cadence, authentication, witness
//! attestations, sequence numbers across reboots, entry mode.

mod common;

use common::*;
use doorward_camera::camera::{DEFAULT_IDLE_CHECKPOINT_INTERVAL_MS, SEQ_RESERVATION_BLOCK};
use doorward_camera::testkit::*;
use doorward_camera::{Camera, CameraState, Input, Mode, Output, Refusal};
use doorward_proto::session::SessionKey;
use doorward_proto::{
    chain_next, frame_digest, message_digest, segment_digest, Body, Digest, Signed,
    MAX_FRAMES_PER_PROOF,
};

fn delivery_harness(rig: &Rig, seed: u64) -> Harness {
    Harness::new(
        rig.camera(T0 - 5_000),
        SceneScript::delivery(seed, T0),
        T0 - 5_000,
    )
}

#[test]
fn i7_the_chain_recomputes_from_the_uploaded_segments() {
    let rig = rig(1);
    let mut h = delivery_harness(&rig, 1);
    let out = h.run_until(T0 + 40_000);
    let proofs = proofs(&out);
    assert!(proofs.len() > 100);
    let mut head = Digest::ZERO;
    let mut segments = out.iter().filter_map(|(_, o)| match o {
        Output::Segment { seq, head, frames } => Some((*seq, *head, frames.clone())),
        _ => None,
    });
    let mut pending = segments.next();
    for p in &proofs {
        let p = &p.proof;
        // Each proof's frame list is its segment; the uploaded frames hash to it.
        if let Some((seq, seg_head, frames)) = pending.clone().filter(|s| s.0 == p.seq) {
            let digests: Vec<Digest> = frames.iter().map(|f| frame_digest(&f.pixels)).collect();
            assert_eq!(digests, p.frames);
            assert_eq!(seg_head, p.head);
            assert_eq!(seq, p.seq);
            pending = segments.next();
        } else {
            assert!(
                p.frames.is_empty(),
                "seq {} has frames but no upload",
                p.seq
            );
        }
        assert_eq!(segment_digest(&p.frames), p.segment);
        head = chain_next(&head, p.seq, &p.segment);
        assert_eq!(head, p.head, "seq {}", p.seq);
    }
    assert!(pending.is_none());
    // Tampering with any uploaded frame breaks the recomputation.
    let mut bad = proofs[20].proof.frames.clone();
    bad[0].0[0] ^= 1;
    assert_ne!(segment_digest(&bad), proofs[20].proof.segment);
}

#[test]
fn i10_checkpoints_chain_every_proof_and_are_signed() {
    let rig = rig(2);
    let mut h = delivery_harness(&rig, 2);
    let out = h.run_until(T0 + 40_000);
    let mut msg_head = Digest::ZERO;
    let mut heads = std::collections::BTreeMap::new();
    for p in proofs(&out) {
        msg_head = chain_next(
            &msg_head,
            p.proof.seq,
            &message_digest(&Body::CameraProof(p.proof.clone())),
        );
        heads.insert(p.proof.seq, msg_head);
    }
    let cps = checkpoints(&out);
    assert!(cps.len() > 20);
    for (_, cp, env) in &cps {
        assert_eq!(Some(&cp.head), heads.get(&cp.seq));
        env.verify_sig(&rig.config.key.public()).unwrap();
    }
}

#[test]
fn i4_proofs_every_interval_in_entry_and_idle_mode() {
    let rig = rig(3);
    let mut h = delivery_harness(&rig, 3);
    let out = h.run_until(T0 + 30_000);
    assert_eq!(h.camera.mode(), Mode::Idle);
    let ps = proofs(&out);
    let entry: Vec<u64> = ps
        .iter()
        .map(|p| p.at_ms)
        .filter(|t| (T0..T0 + 20_000).contains(t))
        .collect();
    // Activity begins at T0 (the driver walks into view) and the entry lasts until 10 s of
    // quiet after the door closes at T0 + 15.5 s.
    assert!(entry.windows(2).all(|w| w[1] - w[0] <= 125), "{entry:?}");
    assert_eq!(entry.len(), 160);
    // Idle: one proof every 30 s, frames or not.
    let idle = h.idle_until(T0 + 30_000 + 300_000);
    let times: Vec<u64> = proofs(&idle).iter().map(|p| p.at_ms).collect();
    assert_eq!(times.len(), 10);
    assert!(times.windows(2).all(|w| w[1] - w[0] == 30_000));
    // No frames: the idle proofs say the camera is not recording.
    assert!(proofs(&idle).iter().all(|p| !p.proof.recording));
}

#[test]
fn i10_checkpoints_every_second_in_entry_mode_and_every_idle_interval() {
    let rig = rig(4);
    let mut h = delivery_harness(&rig, 4);
    let out = h.run_until(T0 + 30_000);
    assert_eq!(h.camera.mode(), Mode::Idle);
    let cps: Vec<u64> = checkpoints(&out)
        .iter()
        .map(|c| c.0)
        .filter(|t| (T0..T0 + 25_000).contains(t))
        .collect();
    assert!(cps.windows(2).all(|w| w[1] - w[0] <= 1_000), "{cps:?}");
    assert!(cps.len() >= 20);
    // Idle: the first idle proof closes the entry with a checkpoint; then one comes with the
    // first idle proof due after each idle checkpoint interval.
    let every = rig.config.idle_checkpoint_interval_ms;
    assert_eq!(every, DEFAULT_IDLE_CHECKPOINT_INTERVAL_MS);
    let idle = h.idle_until(T0 + 30_000 + 3 * every);
    let cp_times: Vec<u64> = checkpoints(&idle).iter().map(|c| c.0).collect();
    let proof_times: Vec<u64> = proofs(&idle).iter().map(|p| p.at_ms).collect();
    let proof_every = rig.config.idle_proof_interval_ms;
    assert!(
        proof_times.len() as u64 >= 3 * every / proof_every,
        "{proof_times:?}"
    );
    assert_eq!(cp_times.first(), proof_times.first());
    assert!(
        cp_times.iter().all(|t| proof_times.contains(t)),
        "{cp_times:?}"
    );
    assert_eq!(cp_times.len(), 3, "{cp_times:?}");
    assert!(
        cp_times
            .windows(2)
            .all(|w| (every..every + proof_every).contains(&(w[1] - w[0]))),
        "{cp_times:?}"
    );
}

#[test]
fn i10_an_idle_checkpoint_interval_of_one_proof_checkpoints_every_idle_proof() {
    let mut rig = rig(4);
    rig.config.idle_checkpoint_interval_ms = rig.config.idle_proof_interval_ms;
    let mut h = delivery_harness(&rig, 4);
    h.run_until(T0 + 30_000);
    let idle = h.idle_until(T0 + 200_000);
    let cp_times: Vec<u64> = checkpoints(&idle).iter().map(|c| c.0).collect();
    let proof_times: Vec<u64> = proofs(&idle).iter().map(|p| p.at_ms).collect();
    assert!(!proof_times.is_empty());
    assert_eq!(cp_times, proof_times);
}

#[test]
fn i10_proofs_are_maced_with_a_session_key_else_signed() {
    let rig = rig(5);
    let mut h = delivery_harness(&rig, 5);
    let signed = h.run_until(T0 + 1_000);
    let key = SessionKey::from_parts(77, [9; 32]);
    h.input(Input::Session(key.clone()));
    let maced = h.run_until(T0 + 3_000);
    let cam = rig.config.key.public();
    for p in proofs(&signed) {
        assert!(!p.maced());
        p.envelope.verify_sig(&cam).unwrap();
        assert!(p.envelope.verify_mac(&key).is_err());
    }
    let ps = proofs(&maced);
    assert!(ps.len() >= 15);
    for p in &ps {
        assert!(p.maced());
        p.envelope.verify_mac(&key).unwrap();
        assert!(p
            .envelope
            .verify_mac(&SessionKey::from_parts(77, [8; 32]))
            .is_err());
    }
    // Checkpoints stay signed under a session.
    for (_, _, env) in checkpoints(&maced) {
        env.verify_sig(&cam).unwrap();
    }
    h.input(Input::SessionEnded);
    for p in proofs(&h.run_until(T0 + 4_000)) {
        p.envelope.verify_sig(&cam).unwrap();
    }
}

#[test]
fn i1_attestation_only_for_a_nonce_signed_by_the_paired_lock() {
    let rig = rig(6);
    let mut h = delivery_harness(&rig, 6);
    h.run_until(T0 + 1_000);
    // Signed by another key.
    let other = common::rig(99);
    let forged = Signed::sign(rig.nonce(1).body, &other.lock_key);
    let out = h.input(witness_request(&h.camera, forged));
    assert_eq!(refusals(&out), vec![Refusal::BadNonceSignature]);
    assert!(attestations(&out).is_empty());
    // Altered after signing.
    let mut altered = rig.nonce(2);
    altered.body.nonce.0[0] ^= 1;
    let out = h.input(witness_request(&h.camera, altered));
    assert_eq!(refusals(&out), vec![Refusal::BadNonceSignature]);
    // Another lock, properly signed by its own key.
    let mut n = other.nonce(3);
    n.body.lock = doorward_proto::Id::new("lock-2").unwrap();
    let n = Signed::sign(n.body, &other.lock_key);
    let out = h.input(witness_request(&h.camera, n));
    assert_eq!(refusals(&out), vec![Refusal::NotPaired]);
    // Addressed to another camera.
    let out = h.input(Input::WitnessRequest(doorward_proto::WitnessRequest {
        camera: doorward_proto::Id::new("cam-9").unwrap(),
        nonce: rig.nonce(4),
    }));
    assert_eq!(refusals(&out), vec![Refusal::WrongCamera]);
    // The genuine one.
    let out = h.input(witness_request(&h.camera, rig.nonce(5)));
    assert!(refusals(&out).is_empty());
    let att = attestations(&out);
    assert_eq!(att.len(), 1);
    let a = att[0].verify(&rig.config.key.public()).unwrap();
    let newest = proofs(&out).last().unwrap().proof.clone();
    assert_eq!((a.seq, a.head), (newest.seq, newest.head));
    assert!(a.recording);
    assert_eq!(a.nonce, rig.nonce(5).body.nonce);
    assert_eq!(a.lock, rig.config.lock);
}

#[test]
fn i1_attestation_refused_while_frozen_looped_blinded_or_not_recording() {
    let rig = rig(7);
    let cases = [
        (Attack::Freeze, Refusal::Frozen),
        (Attack::Loop { frames: 2 }, Refusal::Looped),
        (Attack::Cover, Refusal::Blinded),
        (Attack::Blind, Refusal::Blinded),
    ];
    for (attack, why) in cases {
        let script = SceneScript::delivery(7, T0).attack(T0 + 500, T0 + 60_000, attack);
        let mut h = Harness::new(rig.camera(T0 - 5_000), script, T0 - 5_000);
        h.run_until(T0 + 1_000);
        let out = h.input(witness_request(&h.camera, rig.nonce(1)));
        assert_eq!(refusals(&out), vec![why], "{attack:?}");
        assert!(attestations(&out).is_empty());
        // Still refused for a while after the attack stops.
        let script = SceneScript::delivery(7, T0).attack(T0 + 500, T0 + 1_000, attack);
        let mut h = Harness::new(rig.camera(T0 - 5_000), script, T0 - 5_000);
        h.run_until(T0 + 3_000);
        let out = h.input(witness_request(&h.camera, rig.nonce(2)));
        assert_eq!(refusals(&out), vec![why], "{attack:?} just after");
        h.run_until(T0 + 1_000 + rig.config.suspect_hold_ms);
        let out = h.input(witness_request(&h.camera, rig.nonce(3)));
        assert_eq!(attestations(&out).len(), 1, "{attack:?} long after");
    }
    // No frames at all.
    let mut h = delivery_harness(&rig, 7);
    h.idle_until(T0);
    let out = h.input(witness_request(&h.camera, rig.nonce(4)));
    assert_eq!(refusals(&out), vec![Refusal::NotRecording]);
}

#[test]
fn i7_sequence_numbers_increase_across_reboots() {
    let rig = rig(8);
    let mut stored = CameraState::default();
    let mut last_seq = 0;
    for boot in 0..3u64 {
        let start = T0 + boot * 100_000;
        let mut cam = Camera::new(rig.config.clone(), stored, start);
        let script = SceneScript::delivery(8, start + 2_000);
        let mut h = Harness::new(cam, script, start);
        let out = h.run_until(start + 40_000);
        // A persist always comes before the first use of a sequence number it covers.
        for (_, o) in &out {
            match o {
                Output::Persist(s) => stored = *s,
                Output::Send(env) => {
                    if let Body::CameraProof(p) = &env.body {
                        assert!(p.seq > last_seq, "boot {boot}: {} after {last_seq}", p.seq);
                        assert!(p.seq <= stored.seq_reserved);
                        last_seq = p.seq;
                    }
                }
                _ => {}
            }
        }
        cam = h.camera;
        assert!(cam.head().is_some());
    }
    // Three boots of a few hundred proofs each: one reservation per boot.
    assert!(stored.seq_reserved < 3 * SEQ_RESERVATION_BLOCK + 1);
}

#[test]
fn i4_entry_mode_starts_on_a_witness_request_and_on_activity_and_ends_when_quiet() {
    let rig = rig(9);
    // A request with nobody in view: entry mode, then back to idle after the quiet period.
    let mut h = Harness::new(rig.camera(T0), SceneScript::new(9), T0);
    h.run_until(T0 + 5_000);
    assert_eq!(h.camera.mode(), Mode::Idle);
    h.input(witness_request(&h.camera, rig.nonce(1)));
    assert_eq!(h.camera.mode(), Mode::Entry);
    let out = h.run_until(T0 + 5_000 + rig.config.entry_quiet_ms - 1);
    assert_eq!(h.camera.mode(), Mode::Entry);
    assert!(proofs(&out).len() >= 78);
    h.run_until(T0 + 5_000 + rig.config.entry_quiet_ms);
    assert_eq!(h.camera.mode(), Mode::Idle);
    // A person in view starts it without any request.
    let mut h = delivery_harness(&rig, 9);
    h.run_until(T0 - 1);
    assert_eq!(h.camera.mode(), Mode::Idle);
    h.run_until(T0 + 1);
    assert_eq!(h.camera.mode(), Mode::Entry);
    // Someone who stays in the zone keeps it going.
    let mut script = SceneScript::delivery(9, T0);
    script.people[0].keys.truncate(5);
    script.people[0].keys.push((T0 + 1_000_000, -0.3));
    let mut h = Harness::new(rig.camera(T0), script, T0);
    h.run_until(T0 + 120_000);
    assert_eq!(h.camera.mode(), Mode::Entry);
    assert_eq!(h.camera.latest().unwrap().people.in_zone, 1);
}

#[test]
fn i13_proofs_of_a_normal_delivery_report_one_in_one_out_and_nothing_wrong() {
    let rig = rig(10);
    let mut h = delivery_harness(&rig, 10);
    let out = h.run_until(T0 + 40_000);
    let s = summary(&out);
    assert!(!s.frozen && !s.looped && !s.blinded);
    assert!(s.door_moving);
    assert_eq!((s.entered, s.exited, s.people_in_zone), (1, 1, 0));
    assert!(!s.door_open);
    assert!(proofs(&out).iter().any(|p| p.proof.obs.door_open));
    assert!(proofs(&out).iter().all(|p| p.proof.recording));
}

#[test]
fn a_full_segment_closes_early_and_drops_no_frame() {
    let rig = rig(11);
    let mut cfg = rig.config.clone();
    cfg.fps = 200;
    let mut h = Harness::new(
        Camera::new(cfg, CameraState::default(), T0),
        SceneScript::delivery(11, T0),
        T0,
    );
    let mut out = h.run_until(T0 + 5_000);
    // Frames after the newest proof go into the next one.
    out.extend(h.idle_until(T0 + 5_200));
    let ps = proofs(&out);
    assert!(ps
        .iter()
        .all(|p| p.proof.frames.len() <= MAX_FRAMES_PER_PROOF));
    assert!(ps
        .iter()
        .any(|p| p.proof.frames.len() == MAX_FRAMES_PER_PROOF));
    let framed: usize = ps.iter().map(|p| p.proof.frames.len()).sum();
    assert_eq!(framed, 1_001);
}

#[test]
fn idle_segments_sample_one_frame_per_interval() {
    let rig = rig(12);
    let mut h = Harness::new(rig.camera(T0), SceneScript::new(12), T0);
    let out = h.run_until(T0 + 120_000);
    assert_eq!(h.camera.mode(), Mode::Idle);
    for p in proofs(&out).iter().skip(1) {
        assert_eq!(p.proof.frames.len(), 15, "{}", p.at_ms);
        assert!(p.proof.recording);
    }
}

#[test]
fn i7_each_sequence_reservation_is_persisted_before_its_first_use() {
    let rig = rig(13);
    let mut cfg = rig.config.clone();
    cfg.upload_segments = false;
    // Someone lingering in the entry zone keeps the camera at 8 proofs a second.
    let mut script = SceneScript::new(13);
    script.people.push(PersonPath {
        lane: 0,
        keys: vec![(T0, -0.5), (T0 + 200_000, -0.5)],
    });
    let mut h = Harness::new(Camera::new(cfg, CameraState::default(), T0), script, T0);
    let out = h.run_until(T0 + 200_000);
    let mut reserved = 0;
    let mut persists = 0;
    let mut seqs = 0;
    for (_, o) in &out {
        match o {
            Output::Persist(s) => {
                assert!(s.seq_reserved > reserved);
                reserved = s.seq_reserved;
                persists += 1;
            }
            Output::Send(env) => {
                if let Body::CameraProof(p) = &env.body {
                    assert!(p.seq <= reserved);
                    seqs += 1;
                }
            }
            _ => {}
        }
    }
    assert!(seqs > SEQ_RESERVATION_BLOCK);
    assert_eq!(persists, seqs.div_ceil(SEQ_RESERVATION_BLOCK));
}

#[test]
fn i4_entry_mode_does_not_end_while_the_picture_cannot_be_trusted() {
    let rig = rig(14);
    for attack in [Attack::Cover, Attack::Freeze, Attack::Loop { frames: 8 }] {
        // The lens is covered (or the feed replaced) mid-entry and stays so.
        let script = SceneScript::delivery(14, T0).attack(T0 + 8_000, T0 + 600_000, attack);
        let mut h = Harness::new(rig.camera(T0 - 5_000), script, T0 - 5_000);
        let out = h.run_until(T0 + 120_000);
        assert_eq!(h.camera.mode(), Mode::Entry, "{attack:?}");
        let late: Vec<u64> = proofs(&out)
            .iter()
            .map(|p| p.at_ms)
            .filter(|t| *t > T0 + 60_000)
            .collect();
        assert!(late.windows(2).all(|w| w[1] - w[0] <= 125), "{attack:?}");
    }
}
