//! The virtual camera's sensor: draws grayscale frames of a [`Scene`].
//!
//! A frame shows the door leaf at its angle (the doorway behind it appears as it swings),
//! people in the entry zone as bright blobs, the scene's lighting, the time burned in as
//! digits, and sensor noise seeded by the scene seed and the frame time, so that frames of the
//! same scene at two times never have the same bytes while the same scene at the same time
//! always does (which is what lets an attack replay earlier footage exactly).
//!
//! Rendering is integer arithmetic plus one polynomial for the door's cosine, so it gives the
//! same bytes on every platform, and it writes into a caller's buffer without allocating.

use crate::frame::*;

/// Most people the renderer draws in one frame; the rest of [`Scene::people`] is ignored.
pub const MAX_SCENE_PEOPLE: usize = 16;
/// Dimmest lighting the scene model supports, percent of nominal.
pub const LIGHTING_MIN_PCT: u8 = 50;
/// Brightest lighting the scene model supports, percent of nominal (brighter saturates the
/// door leaf, and the door estimate relies on it not saturating).
pub const LIGHTING_MAX_PCT: u8 = 140;
/// Luminance of a covered lens (before noise).
pub const COVERED_LEVEL: u8 = 3;
/// Luminance of a blinded sensor (before noise).
pub const BLINDED_LEVEL: u8 = 250;
/// Digits in the timestamp band: the frame time in milliseconds, modulo 10^8 (about 27 hours).
pub const OVERLAY_DIGITS: usize = 8;

/// A person in view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Person {
    /// Position along the entry axis: -1 at the outer edge of the picture, 0 on the threshold,
    /// +1 at the inner edge. Outside `[-1, 1]` the person is out of view.
    pub position: f32,
    /// Which of three walking lanes (0 to 2) across the entry zone; larger values mean 2.
    pub lane: u8,
}

/// What the camera sees at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// Seeds the wall texture and the sensor noise.
    pub seed: u64,
    /// The time the frame is taken and burned into it, milliseconds.
    pub time_ms: u64,
    /// Door leaf angle: 0 closed, 90 fully open. Clamped to that range.
    pub door_angle_deg: f32,
    /// People in the picture (the first [`MAX_SCENE_PEOPLE`] are drawn).
    pub people: Vec<Person>,
    /// Lighting, percent of nominal, clamped to [`LIGHTING_MIN_PCT`]..=[`LIGHTING_MAX_PCT`].
    pub lighting_pct: u8,
}

impl Scene {
    /// A quiet scene: door closed, nobody in view, nominal lighting.
    pub fn new(seed: u64, time_ms: u64) -> Self {
        Scene {
            seed,
            time_ms,
            door_angle_deg: 0.0,
            people: Vec::new(),
            lighting_pct: 100,
        }
    }
}

/// Draws frames. Holds the static background of one scene seed so each frame only draws
/// what moves.
#[derive(Clone)]
pub struct Renderer {
    seed: u64,
    background: Box<[u8; FRAME_BYTES]>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new(0)
    }
}

impl Renderer {
    /// A renderer for scenes with this seed (others work too, at the cost of a rebuild).
    pub fn new(seed: u64) -> Self {
        let mut r = Renderer {
            seed,
            background: Box::new([0; FRAME_BYTES]),
        };
        r.build_background();
        r
    }

    fn build_background(&mut self) {
        let bg = &mut self.background;
        for y in 0..FRAME_HEIGHT {
            for x in (0..FRAME_WIDTH).step_by(2) {
                // Texture in pairs of opposite deviations, so it averages to exactly zero over
                // any even-aligned run: the lighting reference then reads the true lighting.
                let h = mix(self.seed ^ ((y as u64) << 32 | x as u64));
                let in_zone = y >= ENTRY_ZONE.y0;
                let (level, amp) = if in_zone {
                    (FLOOR_LEVEL, 6)
                } else {
                    (WALL_LEVEL, 8)
                };
                // Even deviations, so halving the lighting keeps the pairs exactly opposite.
                let t = 2 * ((h % (amp + 1)) as i16) - amp as i16;
                bg[y * FRAME_WIDTH + x] = (level as i16 + t) as u8;
                bg[y * FRAME_WIDTH + x + 1] = (level as i16 - t) as u8;
            }
        }
        let f = DOOR_FRAME;
        for y in f.y0..f.y1 {
            for x in f.x0..f.x1 {
                if y == f.y0 || y == f.y1 - 1 || x == f.x0 || x == f.x1 - 1 {
                    bg[y * FRAME_WIDTH + x] = DOOR_FRAME_LEVEL;
                }
            }
        }
    }

    /// Draws `scene` into `out`.
    pub fn render(&mut self, scene: &Scene, out: &mut Frame) {
        if scene.seed != self.seed {
            self.seed = scene.seed;
            self.build_background();
        }
        let px = &mut out.pixels;
        px.copy_from_slice(&self.background[..]);
        draw_door(px, scene.door_angle_deg);
        for p in scene.people.iter().take(MAX_SCENE_PEOPLE) {
            draw_person(px, p);
        }
        let light = scene.lighting_pct.clamp(LIGHTING_MIN_PCT, LIGHTING_MAX_PCT);
        let light_q8 = light as u32 * 256 / 100;
        let mut noise = [0u8; BODY_BYTES];
        Noise::new(scene.seed, scene.time_ms).fill(&mut noise);
        // Written so the compiler vectorises it: no table lookups, no branches.
        for (p, n) in px[OVERLAY.y1 * FRAME_WIDTH..].iter_mut().zip(noise.iter()) {
            let lit = (*p as u32 * light_q8 + 128) >> 8;
            *p = (lit as i32 + noise_of(*n)).clamp(0, 255) as u8;
        }
        draw_overlay(px, scene.time_ms);
    }

    /// Draws what a covered lens gives: near black with sensor noise, and the time overlay.
    pub fn render_covered(&self, seed: u64, time_ms: u64, out: &mut Frame) {
        uniform(out, COVERED_LEVEL, seed, time_ms);
    }

    /// Draws what a blinded (flooded) sensor gives: near white with noise, and the overlay.
    pub fn render_blinded(&self, seed: u64, time_ms: u64, out: &mut Frame) {
        uniform(out, BLINDED_LEVEL, seed, time_ms);
    }
}

fn uniform(out: &mut Frame, level: u8, seed: u64, time_ms: u64) {
    let mut noise = [0u8; BODY_BYTES];
    Noise::new(seed, time_ms).fill(&mut noise);
    for (p, n) in out.pixels[OVERLAY.y1 * FRAME_WIDTH..]
        .iter_mut()
        .zip(noise.iter())
    {
        *p = (level as i32 + noise_of(*n)).clamp(0, 255) as u8;
    }
    draw_overlay(&mut out.pixels, time_ms);
}

/// Pixels below the overlay band, which get lighting and sensor noise.
const BODY_BYTES: usize = FRAME_BYTES - OVERLAY.y1 * FRAME_WIDTH;

/// Sensor noise of one pixel from one random byte: -1, 0 or +1 with probabilities ¼, ½, ¼
/// (zero mean, standard deviation 0.7, a sensor after its own temporal denoising). Enough to
/// make every frame unique.
fn noise_of(b: u8) -> i32 {
    (b & 1) as i32 - ((b >> 1) & 1) as i32
}

/// SplitMix64 finaliser: a good 64-bit mix, deterministic everywhere.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The noise stream of one frame, seeded by (scene seed, frame time).
struct Noise(u64);

impl Noise {
    fn new(seed: u64, time_ms: u64) -> Self {
        Noise(mix(seed ^ mix(time_ms ^ 0x6e6f_6973_6500_0000)))
    }
    fn fill(&mut self, out: &mut [u8; BODY_BYTES]) {
        for chunk in out.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// cos(x) for x in [0, π/2] by its Taylor series: only + and ×, so the same on every platform
/// (libm's `cos` is not guaranteed to be).
fn cos_poly(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=8 {
        term *= -x2 / ((2 * k - 1) as f64 * (2 * k) as f64);
        sum += term;
    }
    sum
}

/// The leaf is seen edge-on as it swings: its visible width is `cos(angle)` of the doorway,
/// with the partly covered column blended, and the dark doorway shows in the rest.
fn draw_door(px: &mut [u8; FRAME_BYTES], angle_deg: f32) {
    let a = if angle_deg.is_nan() {
        0.0
    } else {
        angle_deg.clamp(0.0, 90.0) as f64
    };
    let visible_q8 = (DOOR.width() as f64 * 256.0 * cos_poly(a * std::f64::consts::PI / 180.0))
        .round()
        .clamp(0.0, (DOOR.width() * 256) as f64) as u32;
    for (i, x) in (DOOR.x0..DOOR.x1).enumerate() {
        let cover = visible_q8.saturating_sub(i as u32 * 256).min(256);
        for y in DOOR.y0..DOOR.y1 {
            let panel = panel_level(y) as u32;
            let v = (panel * cover + DOORWAY_LEVEL as u32 * (256 - cover) + 128) >> 8;
            px[y * FRAME_WIDTH + x] = v as u8;
        }
    }
}

/// Horizontal rails: bands above and below the mean in equal numbers, so every column of the
/// leaf averages exactly [`PANEL_LEVEL`].
fn panel_level(y: usize) -> u8 {
    match (y - DOOR.y0) % 6 {
        1 => PANEL_LEVEL + PANEL_RAIL_DELTA,
        4 => PANEL_LEVEL - PANEL_RAIL_DELTA,
        _ => PANEL_LEVEL,
    }
}

/// Where a person at `position` is drawn: the blob's centre column and row, if in view.
pub fn person_centre(p: &Person) -> Option<(usize, usize)> {
    if !(p.position >= -1.0 && p.position <= 1.0) {
        return None;
    }
    let span = (ENTRY_ZONE.width() - 5) as f32;
    let cx = ENTRY_ZONE.x0 + 2 + ((p.position + 1.0) * 0.5 * span).round() as usize;
    let cy = ENTRY_ZONE.y0 + 3 + 4 * p.lane.min(2) as usize;
    Some((cx, cy))
}

fn draw_person(px: &mut [u8; FRAME_BYTES], p: &Person) {
    if let Some((cx, cy)) = person_centre(p) {
        for y in cy - 1..=cy + 1 {
            for x in cx - 1..=cx + 1 {
                px[y * FRAME_WIDTH + x] = PERSON_LEVEL;
            }
        }
    }
}

/// 3×5 digit glyphs, one bit per pixel, top row first, most significant bit on the left.
const GLYPHS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

fn draw_overlay(px: &mut [u8; FRAME_BYTES], time_ms: u64) {
    px[..OVERLAY.y1 * FRAME_WIDTH].fill(OVERLAY_BG_LEVEL);
    let x_start = FRAME_WIDTH - 2 - 4 * OVERLAY_DIGITS;
    let mut t = time_ms % 10u64.pow(OVERLAY_DIGITS as u32);
    for i in (0..OVERLAY_DIGITS).rev() {
        let glyph = &GLYPHS[(t % 10) as usize];
        t /= 10;
        let x0 = x_start + 4 * i;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    px[(1 + row) * FRAME_WIDTH + x0 + col] = OVERLAY_FG_LEVEL;
                }
            }
        }
    }
}

/// Reads the time back from a frame's overlay (`None` if the band holds no digits): lets
/// tests and the server's footage check compare the burned-in time with the frame's slot.
pub fn read_overlay_ms(frame: &Frame) -> Option<u64> {
    let x_start = FRAME_WIDTH - 2 - 4 * OVERLAY_DIGITS;
    let mut t = 0u64;
    for i in 0..OVERLAY_DIGITS {
        let x0 = x_start + 4 * i;
        let mut glyph = [0u8; 5];
        for (row, g) in glyph.iter_mut().enumerate() {
            for col in 0..3 {
                if frame.at(x0 + col, 1 + row) > (OVERLAY_BG_LEVEL / 2 + OVERLAY_FG_LEVEL / 2) {
                    *g |= 0b100 >> col;
                }
            }
        }
        let d = GLYPHS.iter().position(|g| *g == glyph)?;
        t = t * 10 + d as u64;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(scene: &Scene) -> Frame {
        let mut f = Frame::black();
        Renderer::new(scene.seed).render(scene, &mut f);
        f
    }

    #[test]
    fn the_same_scene_at_the_same_time_gives_the_same_bytes() {
        let mut s = Scene::new(7, 12_345);
        s.door_angle_deg = 33.0;
        s.people.push(Person {
            position: -0.2,
            lane: 1,
        });
        assert_eq!(frame(&s), frame(&s));
        // A renderer built for another seed gives the same bytes once it has switched.
        let mut r = Renderer::new(99);
        let mut f = Frame::black();
        r.render(&s, &mut f);
        assert_eq!(f, frame(&s));
    }

    #[test]
    fn frames_at_different_times_always_differ() {
        let mut r = Renderer::new(3);
        let mut seen = std::collections::HashSet::new();
        let mut f = Frame::black();
        for t in 0..2_000u64 {
            r.render(&Scene::new(3, t), &mut f);
            assert!(seen.insert(f.pixels.to_vec()), "frame at {t} ms repeats");
        }
        // Also times a whole overlay period apart: the noise still tells them apart.
        let mut a = Frame::black();
        r.render(&Scene::new(3, 5), &mut a);
        r.render(&Scene::new(3, 5 + 100_000_000), &mut f);
        assert_ne!(a, f);
    }

    #[test]
    fn the_overlay_shows_the_scene_time() {
        for t in [0u64, 7, 1_234_567, 99_999_999, 100_000_042] {
            let f = frame(&Scene::new(1, t));
            assert_eq!(read_overlay_ms(&f), Some(t % 100_000_000));
        }
        let mut f = Frame::black();
        Renderer::new(1).render_covered(1, 4_321, &mut f);
        assert_eq!(read_overlay_ms(&f), Some(4_321));
    }

    #[test]
    fn the_door_region_changes_with_the_angle() {
        let closed = frame(&Scene::new(5, 0));
        let mean = |angle: f32| {
            let mut s = Scene::new(5, 0);
            s.door_angle_deg = angle;
            let f = frame(&s);
            let mut sum = 0u32;
            for y in DOOR.y0..DOOR.y1 {
                for x in DOOR.x0..DOOR.x1 {
                    sum += f.at(x, y) as u32;
                }
            }
            sum as f64 / DOOR.area() as f64
        };
        let means: Vec<f64> = [0.0, 10.0, 30.0, 60.0, 90.0]
            .iter()
            .map(|a| mean(*a))
            .collect();
        assert!(means.windows(2).all(|w| w[0] > w[1] + 1.0), "{means:?}");
        assert!((means[0] - PANEL_LEVEL as f64).abs() < 1.0);
        assert!((means[4] - DOORWAY_LEVEL as f64).abs() < 1.0);
        // Outside the door nothing changes but noise.
        let mut s = Scene::new(5, 0);
        s.door_angle_deg = 90.0;
        let open = frame(&s);
        assert_eq!(closed.at(40, 20), open.at(40, 20));
    }

    #[test]
    fn a_person_is_a_bright_blob_at_their_position() {
        let mut s = Scene::new(2, 0);
        s.lighting_pct = LIGHTING_MIN_PCT;
        s.people.push(Person {
            position: 0.5,
            lane: 0,
        });
        let f = frame(&s);
        let (cx, cy) = person_centre(&s.people[0]).unwrap();
        assert!(f.at(cx, cy) > 100 && f.at(cx, cy) > 2 * f.at(cx + 3, cy));
        let outside = Person {
            position: 1.5,
            lane: 0,
        };
        assert_eq!(person_centre(&outside), None);
        let nan = Person {
            position: f32::NAN,
            lane: 9,
        };
        assert_eq!(person_centre(&nan), None);
    }

    #[test]
    fn cos_poly_matches_cos_on_the_quarter_turn() {
        for i in 0..=90 {
            let x = i as f64 * std::f64::consts::PI / 180.0;
            assert!((cos_poly(x) - x.cos()).abs() < 1e-9);
        }
    }

    #[test]
    fn at_most_max_scene_people_are_drawn() {
        let mut s = Scene::new(4, 0);
        let first = Person {
            position: -1.0,
            lane: 0,
        };
        let extra = Person {
            position: 0.9,
            lane: 2,
        };
        s.people = vec![first; MAX_SCENE_PEOPLE];
        s.people.push(extra);
        let f = frame(&s);
        let last = person_centre(&extra).unwrap();
        let first = person_centre(&first).unwrap();
        assert!(f.at(first.0, first.1) > 200);
        assert!(
            f.at(last.0, last.1) < 150,
            "person past the limit was drawn"
        );
    }
}
