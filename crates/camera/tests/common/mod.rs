//! Shared set-up for the camera's integration tests.
#![allow(dead_code)]

use doorward_camera::{Camera, CameraConfig, CameraState};
use doorward_proto::{Id, KeyPair, Nonce, Signed, UnlockNonce};
use rand_chacha::rand_core::SeedableRng;

/// Start of every scripted delivery.
pub const T0: u64 = 1_000_000;

/// A camera paired with a lock, and the lock's key.
pub struct Rig {
    pub config: CameraConfig,
    pub lock_key: KeyPair,
}

pub fn rig(seed: u64) -> Rig {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let cam_key = KeyPair::generate(&mut rng);
    let lock_key = KeyPair::generate(&mut rng);
    let config = CameraConfig::new(
        Id::new("cam-1").unwrap(),
        cam_key,
        Id::new("lock-1").unwrap(),
        lock_key.public(),
    );
    Rig { config, lock_key }
}

impl Rig {
    pub fn camera(&self, now_ms: u64) -> Camera {
        Camera::new(self.config.clone(), CameraState::default(), now_ms)
    }

    /// A nonce signed by the paired lock.
    pub fn nonce(&self, byte: u8) -> Signed<UnlockNonce> {
        Signed::sign(
            UnlockNonce {
                lock: self.config.lock.clone(),
                nonce: Nonce([byte; 32]),
                mono_ms: 5,
                epoch: 1,
            },
            &self.lock_key,
        )
    }
}
