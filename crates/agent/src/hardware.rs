//! The hardware adapters: what an agent needs from the device it runs on, and the virtual
//! hardware that stands in for it (a simulated bolt motor, door and battery; a camera that
//! renders frames of the shared virtual scene, [`crate::scene`]).
//!
//! Adapters report only what their sensors read; nothing is inferred from a command. A real
//! adapter (GPIO, a Zigbee bolt, a V4L2 camera) implements the same traits.
//!
//! The virtual bolt writes its true position to the scene directory (`bolt.json`) for
//! observers, and obeys the scene's fault switch `bolt_jammed` (the motor moves nothing:
//! the S3 attack). The virtual camera obeys the scene's `feed` (frozen, covered, blinded).

use std::collections::VecDeque;

use doorward_camera::{Frame, Renderer};
use doorward_lock::{BoltCommand, Sensors};
use doorward_proto::{Bolt, Door};

use crate::scene::{wall_ms, DoorFile, DoorIntent, Feed, SceneDir};
use crate::scene::{DOOR_OPEN_DEG, DOOR_SENSOR_DEG, DOOR_SWING_MS};

/// A sensor reading that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockSensor {
    /// The bolt sensor.
    Bolt(Bolt),
    /// The door sensor.
    Door(Door),
    /// The battery, percent.
    Battery(u8),
}

/// A lock's hardware: a bolt motor, a bolt sensor, a door sensor, a battery.
pub trait LockHardware: Send {
    /// The sensors as they read now (at boot).
    fn sensors(&mut self) -> Sensors;
    /// Drives the motor; the bolt sensor reports the outcome later through [`Self::poll`].
    fn actuate(&mut self, cmd: BoltCommand);
    /// Readings that changed since the last call, in order. Called every
    /// [`crate::lock_agent::HW_POLL_MS`].
    fn poll(&mut self) -> Vec<LockSensor>;
}

/// A camera's hardware: a frame source.
pub trait CameraHardware: Send {
    /// Captures the frame of this moment into `out`, with `frame_ms` (the camera's clock)
    /// burned in. `false` if no frame could be captured.
    fn capture(&mut self, frame_ms: u64, out: &mut Frame) -> bool;
}

/// A simulated bolt and door, driven by the shared scene.
pub struct VirtualLock {
    scene: Option<SceneDir>,
    motor_ms: u64,
    bolt: Bolt,
    /// Where the motor is taking the bolt, and when it gets there (wall ms).
    motion: Option<(Bolt, u64)>,
    door_keys: Vec<(u64, f32)>,
    door_target_open: bool,
    door: Door,
    battery_pct: u8,
    changes: VecDeque<LockSensor>,
    /// Where a command the jammed motor could not carry out wanted the bolt; the motor
    /// finishes the stroke once the jam is cleared.
    jammed_cmd: Option<BoltCommand>,
}

impl VirtualLock {
    /// A thrown bolt, a closed door, a full battery; `motor_ms` per bolt movement. Without a
    /// scene the door never opens.
    pub fn new(scene: Option<SceneDir>, motor_ms: u64) -> VirtualLock {
        let mut v = VirtualLock {
            scene,
            motor_ms,
            bolt: Bolt::Thrown,
            motion: None,
            door_keys: Vec::new(),
            door_target_open: false,
            door: Door::Closed,
            battery_pct: 100,
            changes: VecDeque::new(),
            jammed_cmd: None,
        };
        // A door left open by an earlier run stays where it is.
        if let Some(s) = &v.scene {
            let now = wall_ms();
            let angle = s.door_angle(now);
            v.door_keys = vec![(now, angle)];
            v.door_target_open = angle > DOOR_SENSOR_DEG;
            v.door = if angle > DOOR_SENSOR_DEG {
                Door::Open
            } else {
                Door::Closed
            };
            if v.door == Door::Open {
                // An open door cannot have had its bolt thrown into the frame.
                v.bolt = Bolt::Retracted;
            }
        }
        v.record_bolt();
        v
    }

    /// Writes the bolt's true position for observers (never read by the lock).
    fn record_bolt(&self) {
        if let Some(s) = &self.scene {
            if let Err(e) = s.set_bolt(self.bolt) {
                tracing::warn!(error = %e, "cannot write the virtual bolt's file");
            }
        }
    }

    /// Sets the battery reading (tests, demo).
    pub fn set_battery(&mut self, pct: u8) {
        self.battery_pct = pct.min(100);
        self.changes
            .push_back(LockSensor::Battery(self.battery_pct));
    }

    fn swing(&mut self, now: u64, open: bool) {
        let from = crate::scene::at(&self.door_keys, now).unwrap_or(0.0);
        let to = if open { DOOR_OPEN_DEG } else { 0.0 };
        let dur = (DOOR_SWING_MS as f32 * ((to - from).abs() / DOOR_OPEN_DEG)) as u64;
        self.door_keys = vec![(now, from), (now + dur.max(1), to)];
        self.door_target_open = open;
        if let Some(s) = &self.scene {
            if let Err(e) = s.set_door(&DoorFile {
                keys: self.door_keys.clone(),
            }) {
                tracing::warn!(error = %e, "cannot write the virtual door's file");
            }
        }
    }
}

impl LockHardware for VirtualLock {
    fn sensors(&mut self) -> Sensors {
        Sensors {
            bolt: self.bolt,
            door: self.door,
            battery_pct: self.battery_pct,
        }
    }

    fn actuate(&mut self, cmd: BoltCommand) {
        let to = match cmd {
            BoltCommand::Retract => Bolt::Retracted,
            BoltCommand::Throw => Bolt::Thrown,
        };
        if self.scene.as_ref().is_some_and(|s| s.scene().bolt_jammed) {
            // The fault switch: the motor runs and nothing moves; the sensor keeps reading
            // where the bolt is.
            tracing::debug!(?cmd, "bolt jammed: the command moves nothing");
            self.motion = None;
            self.jammed_cmd = Some(cmd);
            return;
        }
        self.jammed_cmd = None;
        if self.bolt != to {
            self.bolt = Bolt::Moving;
            self.changes.push_back(LockSensor::Bolt(Bolt::Moving));
            self.record_bolt();
        }
        self.motion = Some((to, wall_ms() + self.motor_ms));
    }

    fn poll(&mut self) -> Vec<LockSensor> {
        if let Some(cmd) = self.jammed_cmd {
            if self.scene.as_ref().is_some_and(|s| !s.scene().bolt_jammed) {
                self.actuate(cmd);
            }
        }
        let now = wall_ms();
        if let Some((to, done)) = self.motion {
            if now >= done {
                self.motion = None;
                if self.bolt != to {
                    self.bolt = to;
                    self.changes.push_back(LockSensor::Bolt(to));
                    self.record_bolt();
                }
            }
        }
        if let Some(s) = &self.scene {
            let intent = s.scene().door;
            match intent {
                // The leaf moves only if the bolt is out of the frame.
                DoorIntent::Open if !self.door_target_open && self.bolt == Bolt::Retracted => {
                    self.swing(now, true)
                }
                DoorIntent::Closed if self.door_target_open => self.swing(now, false),
                _ => {}
            }
        }
        let angle = crate::scene::at(&self.door_keys, now).unwrap_or(0.0);
        let door = if angle > DOOR_SENSOR_DEG {
            Door::Open
        } else {
            Door::Closed
        };
        if door != self.door {
            self.door = door;
            self.changes.push_back(LockSensor::Door(door));
        }
        self.changes.drain(..).collect()
    }
}

/// A camera rendering the shared scene (or an empty one without a scene directory).
pub struct VirtualCamera {
    scene: Option<SceneDir>,
    renderer: Renderer,
    seed: u64,
    last_live: Option<Frame>,
}

impl VirtualCamera {
    /// A camera over `scene`.
    pub fn new(scene: Option<SceneDir>) -> VirtualCamera {
        let seed = scene.as_ref().map(|s| s.scene().seed).unwrap_or(7);
        VirtualCamera {
            scene,
            renderer: Renderer::new(seed),
            seed,
            last_live: None,
        }
    }
}

impl CameraHardware for VirtualCamera {
    fn capture(&mut self, frame_ms: u64, out: &mut Frame) -> bool {
        let now = wall_ms();
        let (scene, feed) = match &self.scene {
            Some(s) => s.render_scene(now, frame_ms),
            None => (doorward_camera::Scene::new(self.seed, frame_ms), Feed::Live),
        };
        if scene.seed != self.seed {
            self.seed = scene.seed;
            self.renderer = Renderer::new(scene.seed);
        }
        match feed {
            Feed::Live => {
                self.renderer.render(&scene, out);
                self.last_live = Some(out.clone());
            }
            Feed::Frozen => match &self.last_live {
                Some(f) => *out = f.clone(),
                None => self.renderer.render(&scene, out),
            },
            Feed::Covered => self.renderer.render_covered(self.seed, frame_ms, out),
            Feed::Blinded => self.renderer.render_blinded(self.seed, frame_ms, out),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_door_opens_only_with_the_bolt_retracted_and_the_motor_takes_its_time() {
        let tmp = tempfile::tempdir().unwrap();
        let scene = SceneDir::open(tmp.path()).unwrap();
        let mut hw = VirtualLock::new(Some(scene.clone()), 50);
        assert_eq!(hw.sensors().bolt, Bolt::Thrown);
        scene.push_door(true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(hw.poll().is_empty(), "a thrown bolt holds the door");
        hw.actuate(BoltCommand::Retract);
        assert_eq!(hw.poll(), vec![LockSensor::Bolt(Bolt::Moving)]);
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(hw.poll(), vec![LockSensor::Bolt(Bolt::Retracted)]);
        // The push is still on: the next polls swing the door open.
        let t0 = std::time::Instant::now();
        let mut seen = Vec::new();
        while t0.elapsed().as_millis() < 1_000 && !seen.contains(&LockSensor::Door(Door::Open)) {
            seen.extend(hw.poll());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen.contains(&LockSensor::Door(Door::Open)), "{seen:?}");
        assert!(scene.door_angle(wall_ms() + DOOR_SWING_MS) > 79.0);
    }

    #[test]
    fn a_jammed_motor_moves_nothing_until_the_jam_is_cleared_and_the_truth_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let scene = SceneDir::open(tmp.path()).unwrap();
        let mut hw = VirtualLock::new(Some(scene.clone()), 10);
        assert_eq!(scene.bolt(), Some(Bolt::Thrown));
        hw.actuate(BoltCommand::Retract);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(hw.poll().contains(&LockSensor::Bolt(Bolt::Retracted)));
        assert_eq!(scene.bolt(), Some(Bolt::Retracted));
        scene.set_bolt_jammed(true).unwrap();
        hw.actuate(BoltCommand::Throw);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(hw.poll().is_empty(), "a jammed bolt does not move");
        assert_eq!(scene.bolt(), Some(Bolt::Retracted));
        scene.set_bolt_jammed(false).unwrap();
        assert_eq!(hw.poll(), vec![LockSensor::Bolt(Bolt::Moving)]);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(hw.poll(), vec![LockSensor::Bolt(Bolt::Thrown)]);
        assert_eq!(scene.bolt(), Some(Bolt::Thrown));
    }
}
