//! Render and detect one frame, the attack lab's inner loop: `cargo bench -p doorward-camera`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use doorward_camera::detect::{
    blind_check, Detectors, DigestHistory, DoorDetector, PeopleDetector, MAX_DIGEST_HISTORY,
};
use doorward_camera::render::{Person, Renderer, Scene};
use doorward_camera::Frame;

fn frame(c: &mut Criterion) {
    let mut renderer = Renderer::new(42);
    let mut det = Detectors::new();
    let mut scene = Scene::new(42, 0);
    scene.door_angle_deg = 30.0;
    scene.people.push(Person {
        position: -0.2,
        lane: 1,
    });
    let mut f = Frame::black();
    let mut t = 0u64;
    c.bench_function("render", |b| {
        b.iter(|| {
            t += 125;
            scene.time_ms = t;
            renderer.render(black_box(&scene), &mut f);
        })
    });
    c.bench_function("detect", |b| {
        b.iter(|| {
            // Detect on a fresh frame each time, as the camera sees them.
            f.pixels[3000] = f.pixels[3000].wrapping_add(1);
            black_box(det.observe(black_box(&f)));
        })
    });
    c.bench_function("render_and_detect", |b| {
        b.iter(|| {
            t += 125;
            scene.time_ms = t;
            scene.people[0].position = ((t / 125) % 200) as f32 / 100.0 - 1.0;
            renderer.render(&scene, &mut f);
            black_box(det.observe(&f));
        })
    });
}

/// Each detector alone, to see where the time goes.
fn detectors(c: &mut Criterion) {
    let mut scene = Scene::new(42, 0);
    scene.door_angle_deg = 30.0;
    scene.people.push(Person {
        position: -0.2,
        lane: 1,
    });
    let mut f = Frame::black();
    Renderer::new(42).render(&scene, &mut f);
    c.bench_function("digest", |b| b.iter(|| black_box(black_box(&f).digest())));
    c.bench_function("blind", |b| {
        b.iter(|| black_box(blind_check(black_box(&f))))
    });
    let mut d = DoorDetector::default();
    c.bench_function("door", |b| b.iter(|| black_box(d.observe(black_box(&f)))));
    let mut p = PeopleDetector::default();
    c.bench_function("people", |b| b.iter(|| black_box(p.observe(black_box(&f)))));
    // A miss scans the whole history: cycle through more digests than it holds.
    let mut h = DigestHistory::default();
    let fresh: Vec<_> = (0..4 * MAX_DIGEST_HISTORY as u64)
        .map(|i| doorward_proto::frame_digest(&i.to_le_bytes()))
        .collect();
    let mut i = 0;
    c.bench_function("history_miss", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            black_box(h.observe(black_box(&fresh[i])))
        })
    });
}

/// One simulated home-day of the camera alone: 24 h of idle supervision and two 60 s entries
/// at 8 fps with rendered frames, proofs MAC'd under a session key, checkpoints signed. The
/// attack lab's budget for a whole home-day is 20 ms (3,000 per CPU-minute).
fn home_day(c: &mut Criterion) {
    use doorward_camera::testkit::{Harness, SceneScript};
    use doorward_camera::{Camera, CameraConfig, CameraState, Input};
    use doorward_proto::session::SessionKey;
    use doorward_proto::{Id, KeyPair};

    const DAY_MS: u64 = 86_400_000;
    let (t1, t2) = (10 * 3_600_000, 15 * 3_600_000);
    let mut script = SceneScript::delivery(7, t1);
    let second = SceneScript::delivery(7, t2);
    script.door.extend(second.door);
    script.people.extend(second.people);
    let cfg = CameraConfig::new(
        Id::new("cam-1").unwrap(),
        KeyPair::from_seed(&[1; 32]),
        Id::new("lock-1").unwrap(),
        KeyPair::from_seed(&[2; 32]).public(),
    );
    let mut group = c.benchmark_group("home_day");
    group.sample_size(10);
    let cases = [
        ("default", 30_000, true),
        ("idle_checkpoint_10min", 600_000, true),
        ("idle_only_checkpoint_10min", 600_000, false),
    ];
    for (name, idle_checkpoint_ms, entries) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut cfg = cfg.clone();
                cfg.upload_segments = false;
                cfg.idle_checkpoint_interval_ms = idle_checkpoint_ms;
                let cam = Camera::new(cfg, CameraState::default(), 0);
                let mut h = Harness::new(cam, script.clone(), 0);
                let mut sent = 0usize;
                let mut sink = |_: u64, _: doorward_camera::Output| sent += 1;
                h.input(Input::Session(SessionKey::from_parts(1, [3; 32])));
                if entries {
                    h.idle_with(t1 - 5_000, &mut sink);
                    h.run_with(t1 + 55_000, &mut sink);
                    h.idle_with(t2 - 5_000, &mut sink);
                    h.run_with(t2 + 55_000, &mut sink);
                }
                h.idle_with(DAY_MS, &mut sink);
                black_box(sent)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frame, detectors, home_day);
criterion_main!(benches);
