//! The unlock decision, one attack per check (I1, I2, I8, S2, S6, S7, S9, S10, S22), each with
//! its guard-off twin showing that the check is what stops the attack.

mod common;

use common::*;
use doorward_lock::testkit::RECEIPT_SEQ;
use doorward_lock::{Input, InputError, Output};
use doorward_proto::grant;
use doorward_proto::guard::{disable, Guard};
use doorward_proto::{Body, DenyReason, Digest, Envelope, Id, IssuerCert, KeyPair, Nonce, Signed};

// ----- I1: the server's context, bound to the lock's own nonce ---------------------------------

/// An attacker (or a compromised broker) signs a context with a key of its own.
fn forged_context_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    let mallory = KeyPair::generate(&mut rng(99));
    let mut c = cmd.clone();
    c.context = Signed::sign(cmd.context.body.clone(), &mallory);
    c
}

#[test]
fn i1_context_not_signed_by_the_server_is_denied() {
    let mut h = harness(10);
    let cmd = forged_context_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::BadSignature);
}

#[test]
fn i1_without_the_context_guard_a_forged_context_unlocks() {
    let mut h = harness(10);
    let cmd = forged_context_command(&mut h);
    let _off = disable(Guard::UnlockContext);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i1_envelope_not_signed_by_the_server_is_denied() {
    let mut h = harness(11);
    let (cmd, _, _) = h.valid_command();
    let mallory = KeyPair::generate(&mut rng(98));
    let bytes = Envelope::signed(Body::UnlockCommand(Box::new(cmd)), &mallory).to_bytes();
    assert_denied(&h.input(Input::Message(bytes)), DenyReason::BadSignature);
}

#[test]
fn i1_without_the_envelope_guard_a_foreign_envelope_is_opened() {
    let mut h = harness(11);
    let (cmd, _, _) = h.valid_command();
    let mallory = KeyPair::generate(&mut rng(98));
    let bytes = Envelope::signed(Body::UnlockCommand(Box::new(cmd)), &mallory).to_bytes();
    let _off = disable(Guard::EnvelopeAuth);
    assert_unlocked(&h.input(Input::Message(bytes)));
}

/// Why the unlock command keeps its envelope signature although every part is signed on its
/// own: the context names the grant by id and driver, not by its bytes, and attenuation makes
/// several valid tokens with one id. A broker that saw the wider token in an earlier command
/// that was never spent splices it into a later command the server signed for the narrower
/// one: every part still verifies on its own, and only the envelope's signature (over the
/// whole body) refuses the splice.
fn wider_token_spliced_into_a_command(h: &mut H) -> Vec<u8> {
    let nonce = h.nonce();
    let (spec, wide) = h.fresh_grant();
    let narrow = narrowed_to_later(h, &wide);
    let cmd = h.command_for(nonce, &spec, &narrow);
    let mut env = Envelope::signed(Body::UnlockCommand(Box::new(cmd)), &h.kit.server);
    let Body::UnlockCommand(c) = &mut env.body else {
        unreachable!()
    };
    c.grant = wide;
    env.to_bytes()
}

#[test]
fn i2_a_wider_token_spliced_into_a_signed_command_is_denied() {
    let mut h = harness(13);
    let bytes = wider_token_spliced_into_a_command(&mut h);
    assert_denied(&h.input(Input::Message(bytes)), DenyReason::BadSignature);
}

#[test]
fn i2_without_the_envelope_guard_a_spliced_wider_token_unlocks() {
    let mut h = harness(13);
    let bytes = wider_token_spliced_into_a_command(&mut h);
    let _off = disable(Guard::EnvelopeAuth);
    assert_unlocked(&h.input(Input::Message(bytes)));
}

#[test]
fn i1_context_for_another_lock_is_denied() {
    let mut h = harness(12);
    let (cmd, _, _) = h.valid_command();
    let cmd = with_context(&h, &cmd, |c| c.lock = Id::new("lock-2").unwrap());
    assert_denied(&h.send(&cmd), DenyReason::WrongLock);
}

/// A nonce the lock never issued (guessed, or from another lock).
fn wrong_nonce_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let _issued = h.nonce();
    let (spec, token) = h.fresh_grant();
    h.command_for(Nonce([7; 32]), &spec, &token)
}

#[test]
fn i1_wrong_nonce_is_denied() {
    let mut h = harness(13);
    let cmd = wrong_nonce_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::NonceUnknown);
}

#[test]
fn i1_without_the_context_guard_a_wrong_nonce_unlocks() {
    let mut h = harness(13);
    let cmd = wrong_nonce_command(&mut h);
    let _off = disable(Guard::UnlockContext);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i1_expired_nonce_is_denied() {
    let mut h = harness(14);
    let nonce = h.nonce();
    h.advance(h.lock.config().nonce_ttl_ms);
    let (spec, token) = h.fresh_grant();
    let cmd = h.command_for(nonce, &spec, &token);
    assert_denied(&h.send(&cmd), DenyReason::NonceExpired);
}

#[test]
fn i1_without_the_context_guard_an_expired_nonce_unlocks() {
    let mut h = harness(14);
    let nonce = h.nonce();
    h.advance(h.lock.config().nonce_ttl_ms);
    let (spec, token) = h.fresh_grant();
    let cmd = h.command_for(nonce, &spec, &token);
    let _off = disable(Guard::UnlockContext);
    assert_unlocked(&h.send(&cmd));
}

/// S6: a captured command whose first use failed (here on a low battery) is replayed once
/// the obstacle is gone. The nonce was consumed by the first attempt.
fn replay_after_failed_first_use(h: &mut H) -> Vec<Output> {
    let (cmd, _, _) = h.valid_command();
    h.input(Input::Battery(5));
    assert_denied(&h.send(&cmd), DenyReason::LowBattery);
    h.input(Input::Battery(80));
    h.send(&cmd)
}

#[test]
fn i1_s6_replayed_context_is_denied() {
    let mut h = harness(15);
    assert_denied(
        &replay_after_failed_first_use(&mut h),
        DenyReason::NonceUnknown,
    );
}

#[test]
fn i1_s6_without_the_context_guard_a_replayed_context_unlocks() {
    let mut h = harness(15);
    let _off = disable(Guard::UnlockContext);
    assert_unlocked(&replay_after_failed_first_use(&mut h));
}

// ----- I1, S22: the server's receipt of the camera chain --------------------------------------

/// S22: the camera's uplink is cut; the server's newest receipt is 1.2 s old.
fn stale_receipt_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    let fresh = h.lock.config().witness_fresh_ms;
    with_context(h, &cmd, |c| {
        c.receipt.received_ms = c.server_ms - fresh - 200
    })
}

#[test]
fn i1_s22_stale_receipt_is_denied() {
    let mut h = harness(20);
    let cmd = stale_receipt_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::StaleWitnessReceipt);
}

#[test]
fn i1_s22_without_the_receipt_guard_a_stale_receipt_unlocks() {
    let mut h = harness(20);
    let cmd = stale_receipt_command(&mut h);
    let _off = disable(Guard::WitnessReceipt);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i1_receipt_for_an_unpaired_camera_is_denied() {
    let mut h = harness(21);
    let (cmd, _, _) = h.valid_command();
    let cmd = with_context(&h, &cmd, |c| c.receipt.camera = Id::new("cam-9").unwrap());
    assert_denied(&h.send(&cmd), DenyReason::WitnessNotPaired);
}

#[test]
fn i1_receipt_just_inside_witness_fresh_ms_unlocks() {
    let mut h = harness(22);
    let (cmd, _, _) = h.valid_command();
    let fresh = h.lock.config().witness_fresh_ms;
    let cmd = with_context(&h, &cmd, |c| c.receipt.received_ms = c.server_ms - fresh);
    assert_unlocked(&h.send(&cmd));
}

// ----- I1, S2: the camera's own attestation ----------------------------------------------------

/// S2: the camera is cut off before the driver arrives, so the attacker has no attestation
/// for this nonce and signs one with a key of its own.
fn forged_attestation_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    let mallory = KeyPair::generate(&mut rng(97));
    let mut c = cmd.clone();
    c.witness = Signed::sign(cmd.witness.body.clone(), &mallory);
    c
}

#[test]
fn i1_s2_forged_attestation_is_denied() {
    let mut h = harness(30);
    let cmd = forged_attestation_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::BadSignature);
}

#[test]
fn i1_s2_without_the_attestation_guard_a_forged_attestation_unlocks() {
    let mut h = harness(30);
    let cmd = forged_attestation_command(&mut h);
    let _off = disable(Guard::WitnessAttestation);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i1_s2_missing_attestation_replayed_from_an_earlier_nonce_is_denied() {
    let mut h = harness(31);
    let (old, _, _) = h.valid_command();
    let (cmd, _, _) = h.valid_command();
    let mut c = cmd.clone();
    c.witness = old.witness.clone();
    assert_denied(&h.send(&c), DenyReason::WitnessMismatch);
}

#[test]
fn i1_s2_attestation_not_recording_is_denied() {
    let mut h = harness(32);
    let (cmd, _, _) = h.valid_command();
    let cmd = with_witness(&h, &cmd, |w| w.recording = false);
    assert_denied(&h.send(&cmd), DenyReason::WitnessNotRecording);
}

#[test]
fn i1_s2_attestation_for_another_lock_or_camera_is_denied() {
    let mut h = harness(33);
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| w.lock = Id::new("lock-2").unwrap());
    assert_denied(&h.send(&c), DenyReason::WitnessMismatch);
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| w.camera = Id::new("cam-9").unwrap());
    assert_denied(&h.send(&c), DenyReason::WitnessNotPaired);
}

#[test]
fn i1_s2_attestation_out_of_step_with_the_receipt_is_denied() {
    let mut h = harness(34);
    let max = h.lock.config().max_unreceipted_segments;
    // Behind the receipt: an old attestation.
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| w.seq = RECEIPT_SEQ - 1);
    assert_denied(&h.send(&c), DenyReason::WitnessMismatch);
    // Too far ahead: the camera's footage is not reaching the server.
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| w.seq = RECEIPT_SEQ + max + 1);
    assert_denied(&h.send(&c), DenyReason::WitnessMismatch);
    // Same segment, another chain head: a fork.
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| {
        w.seq = RECEIPT_SEQ;
        w.head = Digest([9; 32]);
    });
    assert_denied(&h.send(&c), DenyReason::WitnessMismatch);
    // At the limit and on the same head: accepted.
    let (cmd, _, _) = h.valid_command();
    let c = with_witness(&h, &cmd, |w| w.seq = RECEIPT_SEQ + max);
    assert_unlocked(&h.send(&c));
}

// ----- I8, S10: time -----------------------------------------------------------------------------

fn skewed_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    let skew = h.lock.config().max_skew_ms;
    with_context(h, &cmd, |c| {
        c.server_ms += skew + 1;
        c.receipt.received_ms = c.server_ms - 100;
    })
}

#[test]
fn i8_s10_clock_skew_is_denied() {
    let mut h = harness(40);
    let cmd = skewed_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::ClockSkew);
}

#[test]
fn i8_s10_without_the_skew_guard_a_skewed_context_unlocks() {
    let mut h = harness(40);
    let cmd = skewed_command(&mut h);
    let _off = disable(Guard::ClockSkew);
    assert_unlocked(&h.send(&cmd));
}

/// A lock that has not heard the server's time since boot.
fn unsynced(seed: u64) -> H {
    let mut h = harness(seed);
    h.answer_time = false;
    h.reboot();
    assert_eq!(h.lock.wall_ms(h.now_ms), None);
    h
}

#[test]
fn i8_time_unknown_is_denied() {
    let mut h = unsynced(41);
    let (cmd, _, _) = h.valid_command();
    assert_denied(&h.send(&cmd), DenyReason::TimeUnknown);
}

#[test]
fn i8_without_the_skew_guard_an_unsynchronised_lock_unlocks() {
    let mut h = unsynced(41);
    let (cmd, _, _) = h.valid_command();
    let _off = disable(Guard::ClockSkew);
    assert_unlocked(&h.send(&cmd));
}

/// S10: the attacker recorded the server's time answer from boot and replays it ten minutes
/// later, after the lock resynchronised, to roll the lock's clock back.
fn replay_old_time_answer(h: &mut H) -> Vec<Output> {
    let old = h
        .log
        .iter()
        .find_map(|o| match o {
            Output::Send(Envelope {
                body: Body::TimeRequest(t),
                ..
            }) => Some(t.nonce),
            _ => None,
        })
        .unwrap();
    let old_answer = h
        .kit
        .time_sync(old, h.kit.server_ms(doorward_lock::testkit::BOOT_MONO_MS));
    h.advance(h.lock.config().time_resync_ms + 1_000);
    h.input(Input::Message(old_answer))
}

#[test]
fn s10_replayed_time_answer_is_ignored() {
    let mut h = harness(42);
    let out = replay_old_time_answer(&mut h);
    assert_eq!(out, vec![Output::Rejected(InputError::TimeSyncUnsolicited)]);
    assert_eq!(h.lock.wall_ms(h.now_ms), Some(h.kit.server_ms(h.now_ms)));
}

#[test]
fn s10_without_the_skew_guard_a_replayed_time_answer_rolls_the_clock_back() {
    let mut h = harness(42);
    let _off = disable(Guard::ClockSkew);
    replay_old_time_answer(&mut h);
    let rolled_back = h.kit.server_ms(h.now_ms) - h.lock.wall_ms(h.now_ms).unwrap();
    assert!(rolled_back >= 600_000, "rolled back by {rolled_back} ms");
    // With the clock ten minutes behind, a grant that expired five minutes ago opens the door.
    let nonce = h.nonce();
    let (mut spec, _) = h.fresh_grant();
    spec.not_after_ms = h.kit.server_ms(h.now_ms) - 300_000;
    spec.not_before_ms = spec.not_after_ms - 3_600_000;
    let token = h.kit.grant(&spec, &mut h.rng);
    let cmd = h.command_for(nonce, &spec, &token);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn s10_delayed_time_answer_is_not_trusted() {
    let mut h = harness(43);
    h.answer_time = false;
    h.reboot();
    let nonce = h
        .log
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Send(Envelope {
                body: Body::TimeRequest(t),
                ..
            }) => Some(t.nonce),
            _ => None,
        })
        .unwrap();
    let sent_at = h.now_ms;
    h.now_ms += h.lock.config().max_skew_ms + 1;
    let answer = h.kit.time_sync(nonce, h.kit.server_ms(sent_at));
    let out = h.input(Input::Message(answer));
    assert!(out.contains(&Output::Rejected(InputError::TimeSyncTooLate)));
    assert_eq!(h.lock.wall_ms(h.now_ms), None);
}

// ----- I2: the grant ------------------------------------------------------------------------------

/// S7: a grant issued for another lock of the same home.
fn other_lock_grant(h: &mut H) -> doorward_proto::UnlockCommand {
    let nonce = h.nonce();
    let (mut spec, _) = h.fresh_grant();
    spec.lock = Id::new("lock-2").unwrap();
    let token = h.kit.grant(&spec, &mut h.rng);
    h.command_for(nonce, &spec, &token)
}

#[test]
fn i2_s7_grant_for_another_lock_is_denied() {
    let mut h = harness(50);
    let cmd = other_lock_grant(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::WrongLock);
}

#[test]
fn i2_s7_without_the_grant_guard_another_locks_grant_unlocks() {
    let mut h = harness(50);
    let cmd = other_lock_grant(&mut h);
    let _off = disable(Guard::GrantChain);
    assert_unlocked(&h.send(&cmd));
}

/// S7: another driver (with a key of their own, so their signature is valid) presents a grant
/// bound to the kit's driver.
fn other_driver_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (cmd, _, _) = h.valid_command();
    let other = KeyPair::generate(&mut rng(96));
    let nonce = cmd.context.body.nonce;
    let mut c = with_context(h, &cmd, |c| c.driver = other.public());
    c.driver_sig = h.kit.driver_sig(&other, &nonce);
    c
}

#[test]
fn i2_s7_other_driver_is_denied() {
    let mut h = harness(51);
    let cmd = other_driver_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::WrongDriver);
}

#[test]
fn i2_s7_without_the_grant_guard_another_driver_unlocks() {
    let mut h = harness(51);
    let cmd = other_driver_command(&mut h);
    let _off = disable(Guard::GrantChain);
    assert_unlocked(&h.send(&cmd));
}

/// The context names the grant's driver, but someone else signed the nonce (the grant's
/// driver is not at the door).
fn driver_absent_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let (mut cmd, _, _) = h.valid_command();
    let other = KeyPair::generate(&mut rng(95));
    cmd.driver_sig = h.kit.driver_sig(&other, &cmd.context.body.nonce);
    cmd
}

#[test]
fn i2_driver_signature_by_someone_else_is_denied() {
    let mut h = harness(52);
    let cmd = driver_absent_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::BadSignature);
}

#[test]
fn i2_without_the_driver_guard_someone_elses_signature_unlocks() {
    let mut h = harness(52);
    let cmd = driver_absent_command(&mut h);
    let _off = disable(Guard::DriverSignature);
    assert_unlocked(&h.send(&cmd));
}

/// S7: a grant whose window closed a minute ago.
fn expired_grant_command(h: &mut H) -> doorward_proto::UnlockCommand {
    let nonce = h.nonce();
    let (mut spec, _) = h.fresh_grant();
    spec.not_after_ms = h.kit.server_ms(h.now_ms) - 60_000;
    spec.not_before_ms = spec.not_after_ms - 3_600_000;
    let token = h.kit.grant(&spec, &mut h.rng);
    h.command_for(nonce, &spec, &token)
}

#[test]
fn i2_s7_grant_outside_its_window_is_denied() {
    let mut h = harness(53);
    let cmd = expired_grant_command(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::GrantOutsideWindow);
}

#[test]
fn i2_s7_without_the_grant_guard_an_expired_grant_unlocks() {
    let mut h = harness(53);
    let cmd = expired_grant_command(&mut h);
    let _off = disable(Guard::GrantChain);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i2_attenuated_window_is_enforced() {
    let mut h = harness(54);
    let nonce = h.nonce();
    let (spec, token) = h.fresh_grant();
    let narrow = narrowed_to_later(&mut h, &token);
    let cmd = h.command_for(nonce, &spec, &narrow);
    assert_denied(&h.send(&cmd), DenyReason::GrantOutsideWindow);
}

/// `token` attenuated to a 10-minute window starting 10 minutes from now.
fn narrowed_to_later(h: &mut H, token: &[u8]) -> Vec<u8> {
    let later = h.kit.server_ms(h.now_ms) + 600_000;
    grant::attenuate_window(
        token,
        &h.kit.issuer.public(),
        later,
        later + 600_000,
        &mut h.rng,
    )
    .unwrap()
}

/// S9: a carrier the home never opted in mints a token with its own key, once presenting the
/// home's real certificate and once a certificate it signed itself.
fn carrier_minted_commands(h: &mut H) -> Vec<doorward_proto::UnlockCommand> {
    let carrier = KeyPair::generate(&mut rng(94));
    let mut out = Vec::new();
    let nonce = h.nonce();
    let (spec, _) = h.fresh_grant();
    let token = grant::issue(&spec, &carrier, &mut h.rng).unwrap();
    out.push(h.command_for(nonce, &spec, &token));
    let nonce = h.nonce();
    let mut self_cert = h.kit.cert.body.clone();
    self_cert.issuer = carrier.public();
    let mut c = h.command_for(nonce, &spec, &token);
    c.issuer = Signed::sign(self_cert, &carrier);
    out.push(c);
    out
}

#[test]
fn i2_s9_carrier_minted_token_is_denied() {
    let mut h = harness(55);
    let cmds = carrier_minted_commands(&mut h);
    assert_denied(&h.send(&cmds[0]), DenyReason::GrantInvalid);
    assert_denied(&h.send(&cmds[1]), DenyReason::IssuerCertInvalid);
}

#[test]
fn i2_s9_without_the_grant_guard_a_carrier_minted_token_unlocks() {
    let mut h = harness(55);
    let cmds = carrier_minted_commands(&mut h);
    let _off = disable(Guard::GrantChain);
    assert_unlocked(&h.send(&cmds[1]));
}

#[test]
fn i2_certificate_for_another_home_or_expired_is_denied() {
    let mut h = harness(56);
    for tweak in [
        (|c: &mut IssuerCert| c.home = Id::new("home-2").unwrap()) as fn(&mut IssuerCert),
        |c: &mut IssuerCert| c.not_after_ms = c.not_before_ms + 1,
    ] {
        let (mut cmd, _, _) = h.valid_command();
        let mut cert = h.kit.cert.body.clone();
        tweak(&mut cert);
        cmd.issuer = Signed::sign(cert, &h.kit.home_root);
        assert_denied(&h.send(&cmd), DenyReason::IssuerCertInvalid);
    }
}

/// After the home rotated its issuing key (serial 2), the old key's certificate (serial 1,
/// perhaps leaked) is refused even while it is inside its validity.
fn rotated_out_cert(h: &mut H) -> doorward_proto::UnlockCommand {
    let new_issuer = KeyPair::generate(&mut rng(93));
    let mut cert = h.kit.cert.body.clone();
    cert.issuer = new_issuer.public();
    cert.serial = 2;
    let new_cert = Signed::sign(cert, &h.kit.home_root);
    let nonce = h.nonce();
    let (spec, _) = h.fresh_grant();
    let token = grant::issue(&spec, &new_issuer, &mut h.rng).unwrap();
    let mut cmd = h.command_for(nonce, &spec, &token);
    cmd.issuer = new_cert;
    let out = h.send(&cmd);
    assert_unlocked(&out);
    h.input(Input::Door(doorward_proto::Door::Open));
    h.input(Input::Door(doorward_proto::Door::Closed));
    assert!(!h.lock.in_cycle());
    assert_eq!(h.disk.as_ref().unwrap().issuer_serial, 2);
    h.valid_command().0
}

#[test]
fn i2_rotated_out_issuer_certificate_is_denied() {
    let mut h = harness(57);
    let cmd = rotated_out_cert(&mut h);
    assert_denied(&h.send(&cmd), DenyReason::IssuerCertInvalid);
}

#[test]
fn i2_without_the_grant_guard_a_rotated_out_certificate_unlocks() {
    let mut h = harness(57);
    let cmd = rotated_out_cert(&mut h);
    let _off = disable(Guard::GrantChain);
    assert_unlocked(&h.send(&cmd));
}

#[test]
fn i2_context_naming_another_grant_is_denied() {
    let mut h = harness(58);
    let (cmd, _, _) = h.valid_command();
    let cmd = with_context(&h, &cmd, |c| c.grant.0[0] ^= 1);
    assert_denied(&h.send(&cmd), DenyReason::GrantInvalid);
}

// ----- bad input never panics ---------------------------------------------------------------------

#[test]
fn garbage_and_unexpected_messages_are_rejected_not_decided() {
    let mut h = harness(60);
    let out = h.input(Input::Message(vec![0xff, 0x00, 0x13]));
    assert!(matches!(
        out[..],
        [Output::Rejected(InputError::Malformed(_))]
    ));
    let ack = Body::Ack(doorward_proto::Ack {
        device: h.kit.lock.clone(),
        seq: 1,
    });
    let out = h.input(Input::Message(h.kit.from_server(ack)));
    assert_eq!(out, vec![Output::Rejected(InputError::Unexpected)]);
    let cmd = h.valid_command().0;
    let mut big = h.kit.seal(&cmd);
    big.resize(doorward_proto::MAX_ENVELOPE_BYTES + 1, 0);
    let out = h.input(Input::Message(big));
    assert!(matches!(
        out[..],
        [Output::Rejected(InputError::Malformed(_))]
    ));
}

#[test]
fn a_second_command_during_a_cycle_is_denied() {
    let mut h = harness(61);
    let (cmd, _, _) = h.valid_command();
    assert_unlocked(&h.send(&cmd));
    let (cmd, _, _) = h.valid_command();
    assert_denied(&h.send(&cmd), DenyReason::CycleInProgress);
}
