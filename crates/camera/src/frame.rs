//! One grayscale frame and the layout of the picture the camera looks at.
//!
//! The camera is mounted inside, looking at the front door. The picture has four fixed parts,
//! calibrated once at installation (here: constants): a timestamp band burned in at the top,
//! the door on the left, a patch of plain wall used as the lighting reference, and the entry
//! zone (the floor in front of the door) along the bottom, crossed by the threshold line.
//! The renderer draws these parts and the detectors read them; neither knows anything else
//! about the other.

use doorward_proto::{frame_digest, Digest};

/// Frame width in pixels.
pub const FRAME_WIDTH: usize = 64;
/// Frame height in pixels.
pub const FRAME_HEIGHT: usize = 48;
/// Bytes in one frame: one byte of luminance per pixel, row-major.
pub const FRAME_BYTES: usize = FRAME_WIDTH * FRAME_HEIGHT;

/// A rectangle of the picture, `x0..x1` × `y0..y1` (ends exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// First column.
    pub x0: usize,
    /// First row.
    pub y0: usize,
    /// Column past the last.
    pub x1: usize,
    /// Row past the last.
    pub y1: usize,
}

impl Rect {
    /// Width in pixels.
    pub const fn width(&self) -> usize {
        self.x1 - self.x0
    }
    /// Height in pixels.
    pub const fn height(&self) -> usize {
        self.y1 - self.y0
    }
    /// Number of pixels.
    pub const fn area(&self) -> usize {
        self.width() * self.height()
    }
}

/// The timestamp band: the camera burns the time into these rows; no detector reads them.
pub const OVERLAY: Rect = Rect {
    x0: 0,
    y0: 0,
    x1: FRAME_WIDTH,
    y1: 7,
};
/// The door leaf in its frame, hinged on the left; swinging open reveals the dark doorway.
pub const DOOR: Rect = Rect {
    x0: 4,
    y0: 9,
    x1: 24,
    y1: 45,
};
/// The door frame drawn around [`DOOR`].
pub const DOOR_FRAME: Rect = Rect {
    x0: 3,
    y0: 8,
    x1: 25,
    y1: 46,
};
/// Plain wall next to the door: the lighting reference. Even start and width, so the wall
/// texture (pairs of opposite deviations) averages to exactly zero over it.
pub const WALL_REFERENCE: Rect = Rect {
    x0: 28,
    y0: 9,
    x1: 62,
    y1: 27,
};
/// The entry zone: the floor in front of the door, where people are counted.
pub const ENTRY_ZONE: Rect = Rect {
    x0: 26,
    y0: 30,
    x1: FRAME_WIDTH,
    y1: 46,
};
/// The threshold line across the entry zone, in half pixels (a blob's `min_x + max_x`):
/// left of it is outside, right of it inside.
pub const THRESHOLD_X2: u32 = 89;

/// Wall luminance at 100 % lighting.
pub const WALL_LEVEL: u8 = 110;
/// Floor luminance at 100 % lighting.
pub const FLOOR_LEVEL: u8 = 80;
/// Door frame luminance at 100 % lighting.
pub const DOOR_FRAME_LEVEL: u8 = 60;
/// Mean luminance of the closed door leaf at 100 % lighting (rails go equally above and below).
pub const PANEL_LEVEL: u8 = 170;
/// How far the leaf's horizontal rails differ from [`PANEL_LEVEL`].
pub const PANEL_RAIL_DELTA: u8 = 8;
/// The dark doorway behind the leaf, at 100 % lighting.
pub const DOORWAY_LEVEL: u8 = 22;
/// A person, at 100 % lighting.
pub const PERSON_LEVEL: u8 = 230;
/// Background of the timestamp band (burned in, not lit).
pub const OVERLAY_BG_LEVEL: u8 = 16;
/// Digits of the timestamp band.
pub const OVERLAY_FG_LEVEL: u8 = 200;

/// One grayscale frame: [`FRAME_WIDTH`] × [`FRAME_HEIGHT`] bytes, row-major.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Luminance, one byte per pixel, row-major.
    pub pixels: [u8; FRAME_BYTES],
}

impl Frame {
    /// An all-black frame (a buffer to render into).
    pub const fn black() -> Self {
        Frame {
            pixels: [0; FRAME_BYTES],
        }
    }

    /// The pixel at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * FRAME_WIDTH + x]
    }

    /// Digest of the pixels ([`doorward_proto::frame_digest`]).
    pub fn digest(&self) -> Digest {
        frame_digest(&self.pixels)
    }
}

impl Default for Frame {
    fn default() -> Self {
        Frame::black()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?})", self.digest())
    }
}

// The detectors read the door, the wall reference and the entry zone independently of each
// other and of the overlay, so the regions must fit and not overlap; checked at compile time.
const _: () = {
    let all = [OVERLAY, DOOR, DOOR_FRAME, WALL_REFERENCE, ENTRY_ZONE];
    let mut i = 0;
    while i < all.len() {
        let r = all[i];
        assert!(r.x0 < r.x1 && r.x1 <= FRAME_WIDTH);
        assert!(r.y0 < r.y1 && r.y1 <= FRAME_HEIGHT);
        i += 1;
    }
    assert!(OVERLAY.y1 <= DOOR_FRAME.y0 && OVERLAY.y1 <= WALL_REFERENCE.y0);
    assert!(DOOR_FRAME.x1 <= WALL_REFERENCE.x0 && DOOR_FRAME.x1 <= ENTRY_ZONE.x0);
    assert!(WALL_REFERENCE.y1 <= ENTRY_ZONE.y0);
    // Pairs of opposite texture deviations must fall wholly inside the wall reference.
    assert!(WALL_REFERENCE.x0 & 1 == 0 && WALL_REFERENCE.width() & 1 == 0);
    let t = THRESHOLD_X2 as usize;
    assert!(2 * ENTRY_ZONE.x0 < t && t < 2 * ENTRY_ZONE.x1);
    // Flood fill indexes the entry zone with u16.
    assert!(ENTRY_ZONE.area() <= u16::MAX as usize);
};
