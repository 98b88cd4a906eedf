//! Recorded frames as pictures: `GET /homes/{home}/footage/{camera}/{seq}/{frame}` answers
//! one frame of an uploaded segment as a PNG, for the entries timeline's player. The frames
//! are read through the footage service's owner check ([`crate::footage`]: the home must be
//! the caller's, I11), opened and checked against the proof they were accepted under.
//!
//! A frame is the reference camera's 64×48 8-bit greyscale picture (docs/PROTOCOL.md §18);
//! the PNG is written here (greyscale, 8 bits, one stored deflate block): 3 KiB per frame
//! needs no compression and no image crate.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use doorward_proto::footage::UPLOAD_FRAME_BYTES;

use crate::api::auth::Principal;
use crate::api::ApiError;
use crate::server::Shared;

/// Width of an uploaded frame, pixels.
pub const FRAME_WIDTH: usize = 64;
/// Height of an uploaded frame, pixels.
pub const FRAME_HEIGHT: usize = UPLOAD_FRAME_BYTES / FRAME_WIDTH;
const _: () = assert!(FRAME_WIDTH * FRAME_HEIGHT == UPLOAD_FRAME_BYTES);

/// Largest picture [`grey_png`] writes, bytes of pixels (one stored deflate block).
const MAX_STORED_BLOCK: usize = 65_535;

/// `GET /homes/{home}/footage/{camera}/{seq}/{frame}`: frame number `frame` (from 0) of an
/// uploaded segment, as a PNG. 404 for a segment that is not the caller's, not uploaded, or
/// has no such frame.
pub async fn frame_png(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, camera, seq, frame)): Path<(String, String, u64, usize)>,
) -> Response {
    let frames = match crate::footage::owner_frames(&s, &p, &home, &camera, seq).await {
        Ok(f) => f,
        Err(e) => return super::pages::fail(e),
    };
    let Some(pixels) = frames.get(frame) else {
        return super::pages::fail(ApiError::not_found("frame"));
    };
    match grey_png(FRAME_WIDTH, FRAME_HEIGHT, pixels) {
        Some(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                // Footage is private: never kept by a shared cache, kept briefly by the browser.
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            png,
        )
            .into_response(),
        None => super::pages::fail(ApiError::not_found("frame")),
    }
}

/// An 8-bit greyscale PNG of `pixels` (row-major, `width × height` bytes); `None` when the
/// sizes disagree or the picture is too large for one stored deflate block.
pub fn grey_png(width: usize, height: usize, pixels: &[u8]) -> Option<Vec<u8>> {
    if width == 0 || height == 0 || pixels.len() != width * height {
        return None;
    }
    // Each row is preceded by its filter type (0: none).
    let mut raw = Vec::with_capacity((width + 1) * height);
    for row in pixels.chunks(width) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    if raw.len() > MAX_STORED_BLOCK {
        return None;
    }
    // zlib: header (deflate, 32 KiB window, no dictionary), one final stored block, Adler-32.
    let mut z = vec![0x78, 0x01, 0x01];
    let len = raw.len() as u16;
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    // 8 bits, greyscale, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    Some(png)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO 3309, as PNG uses it), bit by bit: a few KiB per frame.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % MOD;
        b = (b + a) % MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_standards() {
        // Check values from the CRC catalogue and RFC 1950's example.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn a_frame_becomes_a_well_formed_greyscale_png() {
        let pixels: Vec<u8> = (0..UPLOAD_FRAME_BYTES).map(|i| (i % 251) as u8).collect();
        let png = grey_png(FRAME_WIDTH, FRAME_HEIGHT, &pixels).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 48);
        assert_eq!(png[24..26], [8, 0], "8-bit greyscale");
        // The IHDR chunk's CRC covers its type and data.
        assert_eq!(
            u32::from_be_bytes(png[29..33].try_into().unwrap()),
            crc32(&png[12..29])
        );
        // The pixels are in the IDAT's stored block, each row after its filter byte.
        let idat = 33;
        assert_eq!(&png[idat + 4..idat + 8], b"IDAT");
        let z = &png[idat + 8..];
        assert_eq!(z[2], 0x01, "one final stored block");
        let raw = &z[7..7 + (FRAME_WIDTH + 1) * FRAME_HEIGHT];
        assert_eq!(raw[0], 0);
        assert_eq!(&raw[1..1 + FRAME_WIDTH], &pixels[..FRAME_WIDTH]);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
    }

    #[test]
    fn wrong_sizes_are_refused() {
        assert!(grey_png(64, 48, &[0; 10]).is_none());
        assert!(grey_png(0, 0, &[]).is_none());
        assert!(grey_png(1000, 1000, &vec![0; 1_000_000]).is_none());
    }
}
