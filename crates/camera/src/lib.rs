//! Doorward's camera witness: a frame renderer for the virtual camera, detectors that read
//! pixels, and the camera agent's sans-IO state machine.
//!
//! - [`render`] draws small grayscale frames of a scene (door, people, lighting, a burned-in
//!   time, sensor noise); the attack lab and the virtual camera feed them to the camera.
//! - [`detect`] reads frames: freeze and loop detection on frame digests, blind and covered
//!   lens detection, the door's state and motion, and people crossing the threshold (I7, I13).
//! - [`camera`] turns frames into segments, a hash chain and proofs, signed checkpoints, and
//!   witness attestations for the paired lock's nonces (I1, I4, I10).
//! - [`testkit`] drives a camera through a scripted scene, with attacks on its feed.
//!
//! Guards (see `doorward_proto::guard`): `FreezeDetection` and `LoopDetection` in
//! [`detect::DigestHistory`], `BlindDetection` in [`detect::Detectors`], `EgressCheck` on the
//! threshold-crossing count in [`detect::PeopleDetector`]. Comparing the camera's view of the
//! door with the door sensor (`SceneCheck`) is the server's job: the camera reports
//! `door_open` and `door_moving` read from pixels, and holds no door sensor.
//!
//! It is not the camera's IO: it reads no sensor, clock or network and draws no randomness.
//! It may depend only on `doorward-proto` and pure libraries.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod camera;
pub mod detect;
pub mod frame;
pub mod render;
pub mod testkit;

pub use camera::{Camera, CameraConfig, CameraState, Input, Mode, Output, Refusal};
pub use detect::{Detectors, FrameReport};
pub use frame::{Frame, FRAME_BYTES, FRAME_HEIGHT, FRAME_WIDTH};
pub use render::{Person, Renderer, Scene};
