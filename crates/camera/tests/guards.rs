//! Each of the camera's guards stops its attack, and with the guard switched off the same
//! attack goes unseen: proof that the guard is what stops it.

mod common;

use common::*;
use doorward_camera::testkit::*;
use doorward_camera::Refusal;
use doorward_proto::guard::{disable, Guard};
use doorward_proto::Observations;

/// A delivery under `attack` from T0 + 6 s to T0 + 9 s; the server asks for an attestation at
/// T0 + 8 s. Returns what the proofs said and the refusals.
fn attacked_delivery(seed: u64, attack: Option<Attack>) -> (Observations, Vec<Refusal>, usize) {
    let rig = rig(seed);
    let mut script = SceneScript::delivery(seed, T0);
    if let Some(a) = attack {
        script = script.attack(T0 + 6_000, T0 + 9_000, a);
    }
    let mut h = Harness::new(rig.camera(T0 - 5_000), script, T0 - 5_000);
    let mut out = h.run_until(T0 + 8_000);
    out.extend(h.input(witness_request(&h.camera, rig.nonce(1))));
    out.extend(h.run_until(T0 + 40_000));
    (summary(&out), refusals(&out), attestations(&out).len())
}

fn clean(o: &Observations) -> bool {
    !o.frozen && !o.looped && !o.blinded
}

#[test]
fn benign_delivery_raises_nothing_and_is_attested() {
    let (obs, refused, attested) = attacked_delivery(1, None);
    assert!(clean(&obs));
    assert_eq!((obs.entered, obs.exited), (1, 1));
    assert!(refused.is_empty());
    assert_eq!(attested, 1);
}

#[test]
fn i7_s4_frozen_feed_is_flagged_and_not_attested() {
    let (obs, refused, attested) = attacked_delivery(2, Some(Attack::Freeze));
    assert!(obs.frozen && !obs.looped && !obs.blinded);
    assert_eq!(refused, vec![Refusal::Frozen]);
    assert_eq!(attested, 0);
}

#[test]
fn i7_s4_without_freeze_detection_a_frozen_feed_goes_unseen() {
    let _off = disable(Guard::FreezeDetection);
    let (obs, refused, attested) = attacked_delivery(2, Some(Attack::Freeze));
    assert!(clean(&obs), "{obs:?}");
    assert!(refused.is_empty());
    assert_eq!(attested, 1);
}

#[test]
fn i7_s5_looped_feed_and_ab_alternation_are_flagged_and_not_attested() {
    for frames in [2, 24] {
        let (obs, refused, attested) = attacked_delivery(3, Some(Attack::Loop { frames }));
        assert!(
            obs.looped && !obs.frozen && !obs.blinded,
            "{frames}: {obs:?}"
        );
        assert_eq!(refused, vec![Refusal::Looped]);
        assert_eq!(attested, 0);
    }
}

#[test]
fn i7_s5_without_loop_detection_a_looped_feed_goes_unseen() {
    let _off = disable(Guard::LoopDetection);
    for frames in [2, 24] {
        let (obs, refused, attested) = attacked_delivery(3, Some(Attack::Loop { frames }));
        assert!(clean(&obs), "{frames}: {obs:?}");
        assert!(refused.is_empty());
        assert_eq!(attested, 1);
    }
}

#[test]
fn i7_s18_covered_or_blinded_camera_is_flagged_and_not_attested() {
    for attack in [Attack::Cover, Attack::Blind] {
        let (obs, refused, attested) = attacked_delivery(4, Some(attack));
        assert!(
            obs.blinded && !obs.frozen && !obs.looped,
            "{attack:?}: {obs:?}"
        );
        assert_eq!(refused, vec![Refusal::Blinded]);
        assert_eq!(attested, 0);
    }
}

#[test]
fn i7_s18_without_blind_detection_a_covered_camera_goes_unseen() {
    let _off = disable(Guard::BlindDetection);
    for attack in [Attack::Cover, Attack::Blind] {
        let (obs, refused, attested) = attacked_delivery(4, Some(attack));
        assert!(clean(&obs), "{attack:?}: {obs:?}");
        assert!(refused.is_empty());
        assert_eq!(attested, 1);
    }
}

fn follower_delivery(seed: u64) -> Observations {
    let rig = rig(seed);
    let script = SceneScript::delivery(seed, T0).with_follower(T0, 1_500);
    let mut h = Harness::new(rig.camera(T0 - 5_000), script, T0 - 5_000);
    summary(&h.run_until(T0 + 40_000))
}

#[test]
fn i13_s20_a_second_person_following_in_shows_more_in_than_out() {
    let obs = follower_delivery(5);
    assert_eq!((obs.entered, obs.exited), (2, 1));
}

#[test]
fn i13_s20_without_egress_check_a_follower_goes_unseen() {
    let _off = disable(Guard::EgressCheck);
    let obs = follower_delivery(5);
    // No crossings are counted, so in and out agree and nothing looks wrong.
    assert_eq!(obs.entered, obs.exited);
}
