//! The detectors on rendered frames: a normal delivery raises nothing and counts one in, one
//! out; each attack on the feed is seen by its detector.

use doorward_camera::detect::*;
use doorward_camera::frame::Frame;
use doorward_camera::testkit::{Attack, Feed, SceneScript};

const T0: u64 = 1_000_000;
const FPS: u32 = 8;

/// Feeds frames of `script` from `from_ms` to `to_ms` through fresh detectors.
fn run(script: SceneScript, from_ms: u64, to_ms: u64) -> Vec<FrameReport> {
    let mut feed = Feed::new(script, from_ms, FPS);
    let mut det = Detectors::new();
    let mut frame = Frame::black();
    let mut out = Vec::new();
    let mut k = 0;
    while feed.frame_time_ms(k) < to_ms {
        feed.frame(k, &mut frame);
        out.push(det.observe(&frame));
        k += 1;
    }
    out
}

fn any(r: &[FrameReport], f: impl Fn(&FrameReport) -> bool) -> bool {
    r.iter().any(f)
}

#[test]
fn i13_normal_delivery_counts_one_in_one_out_and_raises_nothing() {
    for (seed, light) in [(1, 100), (2, 50), (3, 140), (4, 75)] {
        let mut s = SceneScript::delivery(seed, T0);
        s.lighting_pct = light;
        let r = run(s, T0 - 5_000, T0 + 30_000);
        assert!(
            !any(&r, |r| r.frozen || r.looped || r.blinded),
            "seed {seed}"
        );
        let last = r.last().unwrap();
        assert_eq!(
            (last.people.entered, last.people.exited),
            (1, 1),
            "seed {seed} light {light}"
        );
        assert_eq!(last.people.in_zone, 0);
        assert!(!last.door.open && !last.door.moving);
        assert!(any(&r, |r| r.door.moving) && any(&r, |r| r.door.open));
        assert!(any(&r, |r| r.people.in_zone == 1));
    }
}

#[test]
fn door_reading_follows_the_door_and_is_still_when_the_door_is() {
    let s = SceneScript::delivery(9, T0);
    let r = run(s, T0, T0 + 20_000);
    // Frame k is at T0 + 125 k. Closed and still before 3 s; moving while it swings
    // (3.0–4.5 s); open and still while held (5–14 s); closed and still after 16 s.
    for (k, rep) in r.iter().enumerate() {
        let t = 125 * k as u64;
        if !(3_000..16_000).contains(&t) {
            assert!(!rep.door.open && !rep.door.moving, "t={t} {rep:?}");
        }
        if (3_250..=4_500).contains(&t) || (14_250..=15_500).contains(&t) {
            assert!(rep.door.moving, "t={t} {rep:?}");
        }
        if (5_000..14_000).contains(&t) {
            assert!(rep.door.open && !rep.door.moving, "t={t} {rep:?}");
        }
    }
}

#[test]
fn a_still_scene_never_reads_as_moving_at_any_lighting() {
    for light in [50u8, 80, 100, 140] {
        for angle in [0.0f32, 45.0, 90.0] {
            let mut s = SceneScript::new(light as u64);
            s.lighting_pct = light;
            s.door = vec![(0, angle)];
            let r = run(s, 0, 250_000);
            assert!(!any(&r, |r| r.door.moving), "light {light} angle {angle}");
            assert!(!any(&r, |r| r.blinded
                || r.frozen
                || r.looped
                || r.people.in_zone > 0));
            assert!(r.iter().all(|r| r.door.open == (angle > 0.0)));
        }
    }
}

#[test]
fn i7_freeze_is_seen_on_frame_digests() {
    let s = SceneScript::delivery(5, T0).attack(T0 + 6_000, T0 + 8_000, Attack::Freeze);
    let r = run(s, T0, T0 + 10_000);
    let frozen: Vec<usize> = (0..r.len()).filter(|&k| r[k].frozen).collect();
    // Frames at 6.0 s … 7.875 s repeat the frame at 5.875 s.
    assert_eq!(frozen, (48..64).collect::<Vec<_>>());
    assert!(!any(&r, |r| r.looped || r.blinded));
}

#[test]
fn i7_loop_and_ab_alternation_are_seen_on_frame_digests() {
    for n in [2u64, 3, 40] {
        let s = SceneScript::delivery(6, T0).attack(
            T0 + 6_000,
            T0 + 12_000,
            Attack::Loop { frames: n },
        );
        let r = run(s, T0, T0 + 14_000);
        let looped: Vec<usize> = (0..r.len()).filter(|&k| r[k].looped).collect();
        assert_eq!(looped, (48..96).collect::<Vec<_>>(), "loop of {n}");
        assert!(!any(&r, |r| r.frozen || r.blinded));
    }
}

#[test]
fn i7_covered_and_blinded_lenses_are_seen() {
    for attack in [Attack::Cover, Attack::Blind] {
        let s = SceneScript::delivery(7, T0).attack(T0 + 6_000, T0 + 8_000, attack);
        let r = run(s, T0, T0 + 10_000);
        let blind: Vec<usize> = (0..r.len()).filter(|&k| r[k].blinded).collect();
        assert_eq!(blind, (48..64).collect::<Vec<_>>(), "{attack:?}");
        // Every blind frame differs (noise, time overlay): only the blind check sees it.
        assert!(!any(&r, |r| r.frozen || r.looped), "{attack:?}");
    }
}

#[test]
fn i5_a_door_region_that_does_not_follow_the_door_reads_closed_and_still() {
    // The attacker pastes a closed door over the picture from before the door opens.
    let s = SceneScript::delivery(8, T0).attack(T0 + 2_000, T0 + 20_000, Attack::StaticDoor);
    let r = run(s.clone(), T0, T0 + 20_000);
    assert!(!any(&r, |r| r.door.open || r.door.moving));
    // The people in the live picture are still counted, and nothing else is raised: the
    // contradiction is for the server, which holds the door sensor's report, to see.
    assert_eq!(r.last().unwrap().people.entered, 1);
    assert!(!any(&r, |r| r.frozen || r.looped || r.blinded));
    let truth = SceneScript::delivery(8, T0);
    assert!(truth.door_at(T0 + 8_000) > 45.0);
}

#[test]
fn i13_a_second_person_following_in_counts_two_in_one_out() {
    let s = SceneScript::delivery(10, T0).with_follower(T0, 1_500);
    let r = run(s, T0 - 2_000, T0 + 30_000);
    let last = r.last().unwrap();
    assert_eq!((last.people.entered, last.people.exited), (2, 1));
    assert!(any(&r, |r| r.people.in_zone == 2));
}

#[test]
fn digest_history_is_bounded_and_forgets_the_oldest() {
    let mut h = DigestHistory::default();
    let d = |i: u64| doorward_proto::frame_digest(&i.to_le_bytes());
    for i in 0..(MAX_DIGEST_HISTORY as u64 + 10) {
        assert_eq!(h.observe(&d(i)), StreamCheck::default());
    }
    assert_eq!(h.len(), MAX_DIGEST_HISTORY);
    // The first ten have been forgotten; the eleventh is still remembered.
    assert!(!h.observe(&d(0)).looped);
    assert!(h.observe(&d(11)).looped);
}

#[test]
fn people_tracks_are_bounded() {
    use doorward_camera::render::{Person, Renderer, Scene};
    let mut scene = Scene::new(1, 0);
    // Ten people spread over the zone, well apart.
    for i in 0..10 {
        scene.people.push(Person {
            position: -0.95 + 0.42 * (i / 2) as f32,
            lane: (i % 2 * 2) as u8,
        });
    }
    let mut r = Renderer::new(1);
    let mut f = Frame::black();
    r.render(&scene, &mut f);
    let mut p = PeopleDetector::default();
    let v = p.observe(&f);
    assert_eq!(v.in_zone, 10);
    assert_eq!(p.tracked(), MAX_TRACKED_PEOPLE);
}

#[test]
fn blobs_past_the_measuring_limit_are_still_counted() {
    use doorward_camera::frame::{ENTRY_ZONE, FRAME_WIDTH};
    let mut f = Frame::black();
    doorward_camera::Renderer::new(1).render(&doorward_camera::Scene::new(1, 0), &mut f);
    // 20 bright 2×2 blobs, two rows of ten, each 3 pixels apart.
    let mut n = 0;
    for row in [ENTRY_ZONE.y0 + 2, ENTRY_ZONE.y0 + 8] {
        for i in 0..10 {
            let x = ENTRY_ZONE.x0 + 1 + 3 * i;
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                f.pixels[(row + dy) * FRAME_WIDTH + x + dx] = 250;
            }
            n += 1;
        }
    }
    assert!(n > MAX_BLOBS);
    let mut p = PeopleDetector::default();
    assert_eq!(p.observe(&f).in_zone as usize, n);
    assert_eq!(p.tracked(), MAX_TRACKED_PEOPLE);
}

#[test]
fn a_jump_longer_than_one_step_is_a_new_person_not_a_crossing() {
    use doorward_camera::render::{Person, Renderer, Scene};
    let mut r = Renderer::new(2);
    let mut f = Frame::black();
    let mut p = PeopleDetector::default();
    let mut scene = Scene::new(2, 0);
    // Outside, then far inside in the next frame: too far to be the same person.
    for (t, pos) in [(0, -0.5), (125, 0.5), (250, 0.5)] {
        scene.time_ms = t;
        scene.people = vec![Person {
            position: pos,
            lane: 0,
        }];
        r.render(&scene, &mut f);
        p.observe(&f);
    }
    let v = p.observe(&f);
    assert_eq!((v.entered, v.exited), (0, 0));
    // The same walk in small steps is a crossing.
    let mut p = PeopleDetector::default();
    for k in 0..=20 {
        scene.time_ms = 1_000 + 125 * k;
        scene.people = vec![Person {
            position: -0.5 + 0.05 * k as f32,
            lane: 0,
        }];
        r.render(&scene, &mut f);
        p.observe(&f);
    }
    assert_eq!(p.observe(&f).entered, 1);
}

#[test]
fn arbitrary_frames_never_panic() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut det = Detectors::new();
    let mut f = Frame::black();
    for i in 0..2_000 {
        rng.fill_bytes(&mut f.pixels);
        if i % 3 == 0 {
            // Sparse bright pixels: many tiny blobs.
            for p in f.pixels.iter_mut() {
                *p = if *p > 200 { 255 } else { 0 };
            }
        }
        det.observe(&f);
    }
}
