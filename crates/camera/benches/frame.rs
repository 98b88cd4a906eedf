//! Render and detect one frame, the attack lab's inner loop: `cargo bench -p doorward-camera`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use doorward_camera::detect::{
    blind_check, Detectors, DigestHistory, DoorDetector, PeopleDetector,
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
    let mut h = DigestHistory::default();
    for i in 0..1_000u64 {
        h.observe(&doorward_proto::frame_digest(&i.to_le_bytes()));
    }
    let dg = f.digest();
    c.bench_function("history_full", |b| {
        b.iter(|| black_box(h.observe(black_box(&dg))))
    });
}

criterion_group!(benches, frame, detectors);
criterion_main!(benches);
