//! Doorward's device agents: the IO shells that run the pure lock and camera cores against
//! MQTT and hardware.
//!
//! - [`lock_agent`] runs [`doorward_lock::Lock`] with a [`hardware::LockHardware`] adapter,
//!   the lock's [`local_channel`] (BLE's stand-in, where a driver's device reads a nonce and
//!   the camera hands over its checkpoints), and a real monotonic clock;
//! - [`camera_agent`] runs [`doorward_camera::Camera`] with a [`hardware::CameraHardware`]
//!   frame source; [`upload`] sends the frames behind its entry proofs to the server over
//!   HTTP (docs/PROTOCOL.md §18) from a bounded queue;
//! - [`pairing`] is the device's side of out-of-band pairing over the broker; [`files`] its
//!   data directory (key, id, setup code, pairing, durable state, all 0600);
//! - [`link`] is the MQTT connection (resubscribed on every reconnect) and the outbox kept
//!   until the server acknowledges; [`scene`] and [`hardware`] are the virtual hardware.
//!
//! What it is not: it makes no security decision. Every unlock, relock, attestation,
//! proof and checkpoint is the cores' output; the agents carry bytes, read sensors, drive the
//! motor and write state to disk. It depends on `doorward-proto`, `doorward-lock`,
//! `doorward-camera` and IO libraries (tokio, rumqttc, hyper), never on the server.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod camera_agent;
pub mod files;
pub mod hardware;
pub mod link;
pub mod local_channel;
pub mod lock_agent;
pub mod pairing;
pub mod scene;
pub mod upload;

pub use camera_agent::{CameraAgentConfig, CameraStatus};
pub use lock_agent::{LockAgentConfig, LockStatus, Say};
