//! Detectors that read pixels: freeze, loop, blind, door and people.
//!
//! Each works on the frame alone (plus a bounded history of its own), never on the scene the
//! frame came from, so the same code reads real footage. All of them together take a few
//! microseconds per frame and allocate nothing after construction.
//!
//! Limits of what pixels can prove, stated plainly: freeze and loop detection compare exact
//! digests, so they catch a stream replayed byte for byte (what a spoofed feed does) but not
//! footage re-encoded or re-filmed; loops longer than [`MAX_DIGEST_HISTORY`] frames go unseen
//! by the camera (the server's footage store can check further back). Two people walking
//! side by side closer than a pixel merge into one blob.

use doorward_proto::guard::{self, Guard};
use doorward_proto::Digest;

use crate::frame::*;

/// Frame digests remembered for loop detection (64 s at 8 fps).
pub const MAX_DIGEST_HISTORY: usize = 512;
/// A frame whose mean luminance (overlay excluded) is at most this is dark: a covered lens.
pub const DARK_MEAN_MAX: u32 = 20;
/// A frame whose luminance variance (overlay excluded) is at most this is uniform: a blinded
/// or covered sensor. A lit scene has a variance in the thousands.
pub const UNIFORM_VARIANCE_MAX: u32 = 40;
/// Door leaf angle from which the picture counts the door as open, degrees.
pub const DOOR_OPEN_ANGLE_DEG: f64 = 10.0;
/// Change of the door's open fraction (0 closed … 1 fully open) over the last
/// [`DOOR_MOVING_SPAN_FRAMES`] frames from which the door counts as moving.
pub const DOOR_MOVING_MIN_CHANGE: f32 = 0.004;
/// Frames back over which door motion is measured.
pub const DOOR_MOVING_SPAN_FRAMES: usize = 2;
/// Smallest bright blob counted as a person, pixels.
pub const MIN_BLOB_PIXELS: u16 = 4;
/// Most blobs measured per frame; more are counted in `people_in_zone` but not tracked.
pub const MAX_BLOBS: usize = 16;
/// Most people tracked across frames at once; more are counted but their crossings are not.
pub const MAX_TRACKED_PEOPLE: usize = 8;
/// Farthest a tracked person may move between two frames and still be the same person, in
/// half pixels (x and y distances added).
pub const MAX_TRACK_STEP_X2: u32 = 12;
/// Frames a track survives without a matching blob before it is dropped.
pub const MAX_TRACK_MISSES: u8 = 2;
/// Half-width of the band around the threshold where a person's side is not yet decided, in
/// half pixels: standing on the line does not count as crossings back and forth.
pub const THRESHOLD_DEAD_BAND_X2: u32 = 2;

/// Freeze and loop detection over frame digests, with a bounded history.
pub struct DigestHistory {
    keys: Box<[u64; MAX_DIGEST_HISTORY]>,
    digests: Box<[Digest; MAX_DIGEST_HISTORY]>,
    len: usize,
    next: usize,
    prev: Option<Digest>,
}

/// What [`DigestHistory::observe`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCheck {
    /// The frame repeats the previous one.
    pub frozen: bool,
    /// The frame repeats an earlier one, but not the previous one.
    pub looped: bool,
}

impl Default for DigestHistory {
    fn default() -> Self {
        DigestHistory {
            keys: Box::new([0; MAX_DIGEST_HISTORY]),
            digests: Box::new([Digest::ZERO; MAX_DIGEST_HISTORY]),
            len: 0,
            next: 0,
            prev: None,
        }
    }
}

impl DigestHistory {
    /// Checks one frame digest against the previous frame and the history, then remembers it.
    pub fn observe(&mut self, d: &Digest) -> StreamCheck {
        let mut out = StreamCheck::default();
        let repeat = self.prev == Some(*d);
        if guard::enabled(Guard::FreezeDetection) && repeat {
            out.frozen = true;
        }
        if guard::enabled(Guard::LoopDetection) && !repeat && self.contains(d) {
            out.looped = true;
        }
        if !repeat {
            self.keys[self.next] = key(d);
            self.digests[self.next] = *d;
            self.next = (self.next + 1) % MAX_DIGEST_HISTORY;
            self.len = (self.len + 1).min(MAX_DIGEST_HISTORY);
        }
        self.prev = Some(*d);
        out
    }

    fn contains(&self, d: &Digest) -> bool {
        let k = key(d);
        let keys = &self.keys[..self.len];
        // A branch-free scan over 8-byte keys vectorises and beats hashing at this size; the
        // rare key match is then confirmed on the whole digest.
        if !keys.iter().fold(false, |hit, kk| hit | (*kk == k)) {
            return false;
        }
        keys.iter()
            .zip(self.digests.iter())
            .any(|(kk, dd)| *kk == k && dd == d)
    }

    /// Digests remembered (at most [`MAX_DIGEST_HISTORY`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn key(d: &Digest) -> u64 {
    u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes"))
}

/// Luminance statistics of a frame below the overlay band.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlindCheck {
    /// Mean luminance.
    pub mean: u32,
    /// Luminance variance.
    pub variance: u32,
    /// Dark: a covered lens.
    pub dark: bool,
    /// Uniform: a blinded (or covered) sensor.
    pub uniform: bool,
}

impl BlindCheck {
    /// Dark or uniform.
    pub fn blinded(&self) -> bool {
        self.dark || self.uniform
    }
}

/// Measures whether a frame is dark or uniform. The overlay band is left out: the camera
/// burns the time in after the sensor, so it shows even through a covered lens.
pub fn blind_check(frame: &Frame) -> BlindCheck {
    let px = &frame.pixels[OVERLAY.y1 * FRAME_WIDTH..];
    let (mut sum, mut sq) = (0u32, 0u32);
    for &p in px {
        sum += p as u32;
        sq += p as u32 * p as u32;
    }
    // 2,688 pixels × 255² fits in u32 (1.75e8).
    let n = px.len() as u64;
    let mean = sum as u64 / n;
    let variance = (sq as u64 * n - sum as u64 * sum as u64) / (n * n);
    let (mean, variance) = (mean as u32, variance as u32);
    BlindCheck {
        mean,
        variance,
        dark: mean <= DARK_MEAN_MAX,
        uniform: variance <= UNIFORM_VARIANCE_MAX,
    }
}

/// The door as the picture shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DoorView {
    /// How much of the doorway shows: 0 closed, 1 fully open (`1 - cos(angle)`).
    pub open_fraction: f32,
    /// Open past [`DOOR_OPEN_ANGLE_DEG`].
    pub open: bool,
    /// The leaf moved over the last frames.
    pub moving: bool,
}

/// Estimates the door's state from the door region, normalised by the lighting read off the
/// wall reference, and its motion from the region's change between frames.
#[derive(Clone, Debug, Default)]
pub struct DoorDetector {
    /// Door region mean luminance of the last frames, newest last.
    recent: [f32; DOOR_MOVING_SPAN_FRAMES],
    seen: usize,
    last: DoorView,
}

/// Wall reference readings outside this range (percent of nominal) mean the picture is not a
/// lit scene, so the door cannot be read from it.
const DOOR_LIGHT_RANGE_PCT: (u32, u32) = (35, 160);

impl DoorDetector {
    /// Reads the door from one frame. When the lighting reference is implausible (covered or
    /// blinded lens) the previous reading is held, since nothing can be read.
    pub fn observe(&mut self, frame: &Frame) -> DoorView {
        let wall = region_sum(frame, WALL_REFERENCE) as f32 / WALL_REFERENCE.area() as f32;
        let light = wall / WALL_LEVEL as f32;
        let pct = (light * 100.0) as u32;
        if pct < DOOR_LIGHT_RANGE_PCT.0 || pct > DOOR_LIGHT_RANGE_PCT.1 {
            self.last.moving = false;
            return self.last;
        }
        let mean = region_sum(frame, DOOR) as f32 / DOOR.area() as f32;
        let span = (PANEL_LEVEL - DOORWAY_LEVEL) as f32 * light;
        let fraction = ((PANEL_LEVEL as f32 * light - mean) / span).clamp(0.0, 1.0);
        // Motion from the region's own change, normalised by the lighting: the lighting
        // estimate's noise would otherwise count twice.
        let moving = self.recent
            [DOOR_MOVING_SPAN_FRAMES - self.seen.min(DOOR_MOVING_SPAN_FRAMES)..]
            .iter()
            .any(|m| (mean - m).abs() / span >= DOOR_MOVING_MIN_CHANGE);
        self.recent.rotate_left(1);
        self.recent[DOOR_MOVING_SPAN_FRAMES - 1] = mean;
        self.seen = self.seen.saturating_add(1);
        let open_min = (1.0 - (DOOR_OPEN_ANGLE_DEG.to_radians()).cos()) as f32;
        self.last = DoorView {
            open_fraction: fraction,
            open: fraction >= open_min,
            moving,
        };
        self.last
    }
}

fn region_sum(frame: &Frame, r: Rect) -> u32 {
    let mut sum = 0u32;
    for y in r.y0..r.y1 {
        let row = &frame.pixels[y * FRAME_WIDTH + r.x0..y * FRAME_WIDTH + r.x1];
        sum += row.iter().map(|&p| p as u32).sum::<u32>();
    }
    sum
}

/// People in the entry zone and threshold crossings so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeopleView {
    /// Blobs in the entry zone now (saturating).
    pub in_zone: u8,
    /// Inward threshold crossings since the detector started (wrapping).
    pub entered: u16,
    /// Outward threshold crossings since the detector started (wrapping).
    pub exited: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Outside,
    Inside,
}

#[derive(Clone, Copy, Debug, Default)]
struct Track {
    active: bool,
    x2: u32,
    y2: u32,
    side: Option<Side>,
    misses: u8,
}

#[derive(Clone, Copy, Debug, Default)]
struct Blob {
    x2: u32,
    y2: u32,
}

const ZONE_W: usize = ENTRY_ZONE.width();
const ZONE_PIXELS: usize = ENTRY_ZONE.area();

/// Finds bright blobs in the entry zone and tracks them across frames to count threshold
/// crossings (I13).
#[derive(Clone, Debug, Default)]
pub struct PeopleDetector {
    tracks: [Track; MAX_TRACKED_PEOPLE],
    entered: u16,
    exited: u16,
}

impl PeopleDetector {
    /// Reads one frame.
    pub fn observe(&mut self, frame: &Frame) -> PeopleView {
        let mut blobs = [Blob::default(); MAX_BLOBS];
        let (found, count) = find_blobs(frame, &mut blobs);
        self.track(&blobs[..found]);
        PeopleView {
            in_zone: count.min(u8::MAX as usize) as u8,
            entered: self.entered,
            exited: self.exited,
        }
    }

    /// Tracks currently followed (at most [`MAX_TRACKED_PEOPLE`]).
    pub fn tracked(&self) -> usize {
        self.tracks.iter().filter(|t| t.active).count()
    }

    fn track(&mut self, blobs: &[Blob]) {
        let mut claimed = [false; MAX_BLOBS];
        let mut matched = [false; MAX_TRACKED_PEOPLE];
        // Greedy nearest pairs first: with a handful of people this is as good as optimal
        // assignment and needs no allocation.
        loop {
            let mut best: Option<(u32, usize, usize)> = None;
            for (ti, t) in self.tracks.iter().enumerate() {
                if !t.active || matched[ti] {
                    continue;
                }
                for (bi, b) in blobs.iter().enumerate() {
                    if claimed[bi] {
                        continue;
                    }
                    let d = t.x2.abs_diff(b.x2) + t.y2.abs_diff(b.y2);
                    if d <= MAX_TRACK_STEP_X2 && best.is_none_or(|(bd, _, _)| d < bd) {
                        best = Some((d, ti, bi));
                    }
                }
            }
            let Some((_, ti, bi)) = best else { break };
            matched[ti] = true;
            claimed[bi] = true;
            let b = blobs[bi];
            let t = &mut self.tracks[ti];
            t.x2 = b.x2;
            t.y2 = b.y2;
            t.misses = 0;
            if let Some(now) = side_of(b.x2) {
                if guard::enabled(Guard::EgressCheck) {
                    match (t.side, now) {
                        (Some(Side::Outside), Side::Inside) => {
                            self.entered = self.entered.wrapping_add(1)
                        }
                        (Some(Side::Inside), Side::Outside) => {
                            self.exited = self.exited.wrapping_add(1)
                        }
                        _ => {}
                    }
                }
                t.side = Some(now);
            }
        }
        for (ti, t) in self.tracks.iter_mut().enumerate() {
            if t.active && !matched[ti] {
                t.misses += 1;
                if t.misses > MAX_TRACK_MISSES {
                    *t = Track::default();
                }
            }
        }
        for (bi, b) in blobs.iter().enumerate() {
            if claimed[bi] {
                continue;
            }
            let Some(slot) = self.tracks.iter_mut().find(|t| !t.active) else {
                break;
            };
            *slot = Track {
                active: true,
                x2: b.x2,
                y2: b.y2,
                side: side_of(b.x2),
                misses: 0,
            };
        }
    }
}

fn side_of(x2: u32) -> Option<Side> {
    if x2 + THRESHOLD_DEAD_BAND_X2 < THRESHOLD_X2 {
        Some(Side::Outside)
    } else if x2 > THRESHOLD_X2 + THRESHOLD_DEAD_BAND_X2 {
        Some(Side::Inside)
    } else {
        None
    }
}

/// Labels 4-connected bright regions of the entry zone. Returns how many blobs were measured
/// into `out` and how many there were in all.
fn find_blobs(frame: &Frame, out: &mut [Blob; MAX_BLOBS]) -> (usize, usize) {
    let z = ENTRY_ZONE;
    let mut sum = 0u32;
    let mut px = [0u8; ZONE_PIXELS];
    for y in z.y0..z.y1 {
        let row = &frame.pixels[y * FRAME_WIDTH + z.x0..y * FRAME_WIDTH + z.x1];
        px[(y - z.y0) * ZONE_W..(y - z.y0 + 1) * ZONE_W].copy_from_slice(row);
        sum += row.iter().map(|&p| p as u32).sum::<u32>();
    }
    // Bright relative to the floor: holds from dim to bright lighting, and a uniform frame
    // (blinded or covered) has no bright pixels at all.
    let threshold = sum / ZONE_PIXELS as u32 * 3 / 2 + 8;
    let mut todo = [false; ZONE_PIXELS];
    let mut any = false;
    for (t, &p) in todo.iter_mut().zip(px.iter()) {
        *t = p as u32 > threshold;
        any |= *t;
    }
    if !any {
        return (0, 0);
    }
    let mut stack = [0u16; ZONE_PIXELS];
    let (mut found, mut count) = (0, 0);
    for start in 0..ZONE_PIXELS {
        if !todo[start] {
            continue;
        }
        todo[start] = false;
        let mut sp = 0;
        stack[sp] = start as u16;
        sp += 1;
        let (mut n, mut min_x, mut max_x, mut min_y, mut max_y) = (0u16, ZONE_W, 0, usize::MAX, 0);
        while sp > 0 {
            sp -= 1;
            let i = stack[sp] as usize;
            let (x, y) = (i % ZONE_W, i / ZONE_W);
            n += 1;
            min_x = min_x.min(x);
            max_x = max_x.max(x);
            min_y = min_y.min(y);
            max_y = max_y.max(y);
            let mut push = |j: usize| {
                if todo[j] {
                    todo[j] = false;
                    stack[sp] = j as u16;
                    sp += 1;
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < ZONE_W {
                push(i + 1);
            }
            if y > 0 {
                push(i - ZONE_W);
            }
            if i + ZONE_W < ZONE_PIXELS {
                push(i + ZONE_W);
            }
        }
        if n < MIN_BLOB_PIXELS {
            continue;
        }
        count += 1;
        if found < MAX_BLOBS {
            out[found] = Blob {
                x2: (2 * z.x0 + min_x + max_x) as u32,
                y2: (2 * z.y0 + min_y + max_y) as u32,
            };
            found += 1;
        }
    }
    (found, count)
}

/// Everything the detectors read from one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameReport {
    /// The frame's digest.
    pub digest: Digest,
    /// Repeats the previous frame.
    pub frozen: bool,
    /// Repeats an earlier frame.
    pub looped: bool,
    /// Dark or uniform.
    pub blinded: bool,
    /// The door.
    pub door: DoorView,
    /// People in the entry zone and crossings.
    pub people: PeopleView,
}

impl FrameReport {
    /// Whether the frame shows an entry going on: the door open or moving, or someone in
    /// the entry zone.
    pub fn activity(&self) -> bool {
        self.door.open || self.door.moving || self.people.in_zone > 0
    }
}

/// All detectors, fed frame by frame.
#[derive(Default)]
pub struct Detectors {
    history: DigestHistory,
    door: DoorDetector,
    people: PeopleDetector,
}

impl Detectors {
    /// Fresh detectors with empty histories.
    pub fn new() -> Self {
        Detectors::default()
    }

    /// Reads one frame.
    pub fn observe(&mut self, frame: &Frame) -> FrameReport {
        let digest = frame.digest();
        let stream = self.history.observe(&digest);
        let blinded = guard::enabled(Guard::BlindDetection) && blind_check(frame).blinded();
        let door = self.door.observe(frame);
        let people = self.people.observe(frame);
        FrameReport {
            digest,
            frozen: stream.frozen,
            looped: stream.looped,
            blinded,
            door,
            people,
        }
    }

    /// The people detector (for its track count).
    pub fn people(&self) -> &PeopleDetector {
        &self.people
    }

    /// The digest history.
    pub fn history(&self) -> &DigestHistory {
        &self.history
    }
}
