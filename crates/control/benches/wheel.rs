//! Supervision timer wheel at 10^6 devices: the cost of moving one deadline (every proof does)
//! and of expiring. `cargo bench -p doorward-control --bench wheel`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use doorward_control::wheel::TimerWheel;
use std::hint::black_box;

const DEVICES: u32 = 1_000_000;
const IDLE_GAP_MS: u64 = 90_000;
const ENTRY_GAP_MS: u64 = 500;
const T0: u64 = 1_700_000_000_000;

/// A wheel as supervision holds it: every device idle, deadlines spread over 30 s.
fn loaded(granularity_ms: u64) -> TimerWheel<u32> {
    let mut w = TimerWheel::new(granularity_ms, T0);
    w.reserve(DEVICES as usize);
    for k in 0..DEVICES {
        w.schedule(k, T0 + IDLE_GAP_MS + u64::from(k % 30_000));
    }
    w
}

/// A fixed pseudo-random walk over the keys, so the cache sees what 10^6 devices reporting
/// in arbitrary order look like (not a sequential scan).
fn scramble(i: u64) -> u32 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) as u32 % DEVICES
}

fn bench(c: &mut Criterion) {
    let w = loaded(1);
    eprintln!(
        "wheel: {} keys, {} heap bytes, {:.1} bytes per key",
        w.len(),
        w.heap_bytes(),
        w.heap_bytes() as f64 / w.len() as f64
    );
    drop(w);
    // The control core's key: an enum of device and delivery slots, 16 bytes.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Timer {
        Silence(u32),
        #[allow(dead_code)]
        Request(u64),
    }
    let mut w = TimerWheel::new(8, T0);
    w.reserve(DEVICES as usize);
    for k in 0..DEVICES {
        w.schedule(Timer::Silence(k), T0 + IDLE_GAP_MS + u64::from(k % 30_000));
    }
    eprintln!(
        "wheel: {} enum keys of {} bytes, {:.1} bytes per key",
        w.len(),
        std::mem::size_of::<Timer>(),
        w.heap_bytes() as f64 / w.len() as f64
    );
    drop(w);

    let mut g = c.benchmark_group("wheel_1e6");
    g.sample_size(20);

    let mut w = loaded(1);
    let mut i = 0u64;
    g.bench_function("reschedule_idle_proof", |b| {
        b.iter(|| {
            i += 1;
            // An idle proof: the deadline moves 90 s past "now" (which drifts with i).
            w.schedule(scramble(i), T0 + IDLE_GAP_MS + i / 32);
        })
    });
    drop(w);

    let mut w = loaded(1);
    let mut i = 0u64;
    g.bench_function("reschedule_entry_proof", |b| {
        b.iter(|| {
            i += 1;
            // One device in an entry reports at 8 Hz: its deadline moves by 125 ms each time.
            w.schedule(scramble(i % 1024), T0 + ENTRY_GAP_MS + i * 125 / 1024);
        })
    });
    drop(w);

    // Steady state: time advances 1 ms per expire; every fired device proves itself again
    // and is rescheduled, as a server that keeps up would do. ~11 keys per ms at 10^6 / 90 s.
    let mut w = loaded(1);
    let mut now = T0 + IDLE_GAP_MS;
    let mut out = Vec::new();
    g.bench_function("expire_tick_1ms_with_reschedule", |b| {
        b.iter(|| {
            now += 1;
            out.clear();
            w.expire(now, &mut out);
            for &k in &out {
                w.schedule(k, now + IDLE_GAP_MS);
            }
            black_box(out.len())
        })
    });
    drop(w);

    g.sample_size(10);
    g.bench_function("expire_all_1e6", |b| {
        b.iter_batched(
            || (loaded(1), Vec::with_capacity(DEVICES as usize)),
            |(mut w, mut out)| {
                w.expire(u64::MAX, &mut out);
                assert_eq!(out.len(), DEVICES as usize);
                (w, out)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
