//! The shared virtual scene: what the virtual hardware of both agents "sees", kept in a small
//! directory that the driver, the demo or a test update from outside.
//!
//! Two files, each with one writer, each replaced atomically (so a reader never sees half a
//! file):
//!
//! - `scene.json`, written by the world (the driver's CLI, the demo, a test): the people in
//!   view as keyframes in wall-clock milliseconds, what a person does to the door (`"open"`
//!   pushes it open, `"closed"` pulls it shut), the camera feed (`"live"`, or an attack on it:
//!   `"frozen"`, `"covered"`, `"blinded"`), lighting and the scene seed;
//! - `door.json`, written by the lock agent's virtual door: the door leaf's swing as
//!   keyframes `[[wall_ms, angle_deg], …]`. The door only opens when someone pushes it **and**
//!   the virtual bolt is retracted; it closes when pulled shut;
//! - `bolt.json`, written by the lock agent's virtual bolt: where the bolt really is
//!   (`{"bolt": "thrown"}`, `"retracted"`, `"moving"`), the truth a demo or a test compares
//!   the server's shown state with. Nothing in the lock reads it.
//!
//! One fault switch in `scene.json` stands for an attack on the lock's hardware:
//! `"bolt_jammed": true` jams the bolt motor (S3's "dropbox": the bolt never moves, whatever
//! the lock commands, and its sensor keeps reading where it is).
//!
//! The camera agent renders frames from both; the lock agent's door sensor reads the leaf's
//! angle. Times are wall-clock so that separate processes agree on them.
//!
//! ```json
//! {"seed": 7, "lighting_pct": 100, "door": "open", "feed": "live", "bolt_jammed": false,
//!  "people": [{"lane": 1, "keys": [[1732280000000, -1.0], [1732280002000, -0.3]]}]}
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use doorward_camera::render::{Person, Scene};
use doorward_proto::Bolt;
use serde::{Deserialize, Serialize};

use crate::files::{read_limited, write_atomic};

/// The world's file in a scene directory.
pub const SCENE_FILE: &str = "scene.json";
/// The lock's door file in a scene directory.
pub const DOOR_FILE: &str = "door.json";
/// The lock's bolt file in a scene directory (the bolt's true position, for observers).
pub const BOLT_FILE: &str = "bolt.json";
/// Most people kept in a scene file (the renderer draws at most 16).
pub const MAX_SCENE_PEOPLE: usize = 16;
/// Most keyframes per person or door swing.
pub const MAX_KEYFRAMES: usize = 32;
/// Angle the door swings open to, degrees.
pub const DOOR_OPEN_DEG: f32 = 80.0;
/// How long a swing takes, milliseconds.
pub const DOOR_SWING_MS: u64 = 1_500;
/// Above this angle the door sensor reads open, degrees.
pub const DOOR_SENSOR_DEG: f32 = 2.0;

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One person's walk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Walker {
    /// Walking lane, 0 to 2.
    pub lane: u8,
    /// `(wall_ms, position)` keyframes: position -1 outside edge of the picture, 0 the
    /// threshold, +1 inside; interpolated linearly, held after the last key.
    pub keys: Vec<(u64, f32)>,
}

/// The camera feed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feed {
    /// The real picture.
    #[default]
    Live,
    /// The last live frame, repeated.
    Frozen,
    /// A covered lens.
    Covered,
    /// A blinded sensor.
    Blinded,
}

/// What a person does to the door.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DoorIntent {
    /// Leaves it shut (or pulls it shut).
    #[default]
    Closed,
    /// Pushes it open (it opens only if the bolt is retracted).
    Open,
}

fn default_lighting() -> u8 {
    100
}

/// The world's file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneFile {
    /// Scene seed (wall texture, sensor noise).
    #[serde(default)]
    pub seed: u64,
    /// Lighting, percent of nominal.
    #[serde(default = "default_lighting")]
    pub lighting_pct: u8,
    /// What a person does to the door.
    #[serde(default)]
    pub door: DoorIntent,
    /// The camera feed.
    #[serde(default)]
    pub feed: Feed,
    /// People in view.
    #[serde(default)]
    pub people: Vec<Walker>,
    /// Fault switch: the bolt motor is jammed, commands move nothing (S3).
    #[serde(default)]
    pub bolt_jammed: bool,
}

impl Default for SceneFile {
    fn default() -> Self {
        SceneFile {
            seed: 7,
            lighting_pct: 100,
            door: DoorIntent::Closed,
            feed: Feed::Live,
            people: Vec::new(),
            bolt_jammed: false,
        }
    }
}

/// The door leaf's swing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DoorFile {
    /// `(wall_ms, angle_deg)` keyframes.
    pub keys: Vec<(u64, f32)>,
}

/// Linear interpolation over keyframes, held before the first and after the last.
pub fn at(keys: &[(u64, f32)], t: u64) -> Option<f32> {
    let first = keys.first()?;
    if t <= first.0 {
        return Some(first.1);
    }
    for w in keys.windows(2) {
        let ((t0, a), (t1, b)) = (w[0], w[1]);
        if t < t1 {
            let f = (t - t0) as f32 / (t1 - t0).max(1) as f32;
            return Some(a + (b - a) * f);
        }
    }
    keys.last().map(|k| k.1)
}

/// A scene directory.
#[derive(Clone, Debug)]
pub struct SceneDir {
    dir: PathBuf,
}

impl SceneDir {
    /// Opens (creating) a scene directory.
    pub fn open(dir: &Path) -> std::io::Result<SceneDir> {
        std::fs::create_dir_all(dir)?;
        Ok(SceneDir {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The world's file as it stands (defaults if missing or unreadable: a quiet scene).
    pub fn scene(&self) -> SceneFile {
        let Ok(Some(b)) = read_limited(&self.dir.join(SCENE_FILE)) else {
            return SceneFile::default();
        };
        let mut s: SceneFile = serde_json::from_slice(&b).unwrap_or_default();
        s.people.truncate(MAX_SCENE_PEOPLE);
        for p in &mut s.people {
            p.keys.truncate(MAX_KEYFRAMES);
        }
        s
    }

    /// Replaces the world's file.
    pub fn set_scene(&self, s: &SceneFile) -> std::io::Result<()> {
        let json = serde_json::to_vec(s).expect("a scene serialises");
        write_atomic(&self.dir.join(SCENE_FILE), &json).map_err(std::io::Error::other)
    }

    /// Changes the world's file with `f`.
    pub fn update(&self, f: impl FnOnce(&mut SceneFile)) -> std::io::Result<()> {
        let mut s = self.scene();
        f(&mut s);
        self.set_scene(&s)
    }

    /// Person `who` (added if missing) walks from where they are now through `keys`, given
    /// as `(ms from now, position)`.
    pub fn walk(&self, who: usize, lane: u8, keys: &[(u64, f32)]) -> std::io::Result<()> {
        let now = wall_ms();
        self.update(|s| {
            while s.people.len() <= who && s.people.len() < MAX_SCENE_PEOPLE {
                s.people.push(Walker {
                    lane,
                    keys: Vec::new(),
                });
            }
            let Some(p) = s.people.get_mut(who) else {
                return;
            };
            let from = at(&p.keys, now).unwrap_or(-1.5);
            p.lane = lane;
            p.keys = vec![(now, from)];
            p.keys.extend(
                keys.iter()
                    .take(MAX_KEYFRAMES - 1)
                    .map(|&(dt, x)| (now + dt, x)),
            );
        })
    }

    /// A person pushes the door open (`true`) or pulls it shut (`false`).
    pub fn push_door(&self, open: bool) -> std::io::Result<()> {
        self.update(|s| {
            s.door = if open {
                DoorIntent::Open
            } else {
                DoorIntent::Closed
            }
        })
    }

    /// Sets the camera feed (an attack on it, or live).
    pub fn set_feed(&self, feed: Feed) -> std::io::Result<()> {
        self.update(|s| s.feed = feed)
    }

    /// Jams (`true`) or frees (`false`) the virtual bolt motor (S3's fault switch).
    pub fn set_bolt_jammed(&self, jammed: bool) -> std::io::Result<()> {
        self.update(|s| s.bolt_jammed = jammed)
    }

    /// The bolt's true position as the lock's virtual bolt last wrote it (`None` before the
    /// lock agent started).
    pub fn bolt(&self) -> Option<Bolt> {
        let b = read_limited(&self.dir.join(BOLT_FILE)).ok().flatten()?;
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        match v["bolt"].as_str()? {
            "thrown" => Some(Bolt::Thrown),
            "retracted" => Some(Bolt::Retracted),
            "moving" => Some(Bolt::Moving),
            "jammed" => Some(Bolt::Jammed),
            _ => None,
        }
    }

    /// Records the bolt's true position (the lock agent's virtual bolt only).
    pub fn set_bolt(&self, bolt: Bolt) -> std::io::Result<()> {
        let name = match bolt {
            Bolt::Thrown => "thrown",
            Bolt::Retracted => "retracted",
            Bolt::Moving => "moving",
            Bolt::Jammed => "jammed",
        };
        let json = serde_json::json!({ "bolt": name }).to_string();
        write_atomic(&self.dir.join(BOLT_FILE), json.as_bytes()).map_err(std::io::Error::other)
    }

    /// The door leaf's swing as the lock last wrote it.
    pub fn door(&self) -> DoorFile {
        read_limited(&self.dir.join(DOOR_FILE))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Replaces the door's swing (the lock agent's virtual door only).
    pub fn set_door(&self, d: &DoorFile) -> std::io::Result<()> {
        let json = serde_json::to_vec(d).expect("a door serialises");
        write_atomic(&self.dir.join(DOOR_FILE), &json).map_err(std::io::Error::other)
    }

    /// The door angle at wall time `t`, degrees.
    pub fn door_angle(&self, t: u64) -> f32 {
        at(&self.door().keys, t).unwrap_or(0.0)
    }

    /// The renderer's scene at wall time `t` (frame time `frame_ms` burned in).
    pub fn render_scene(&self, t: u64, frame_ms: u64) -> (Scene, Feed) {
        let s = self.scene();
        let mut scene = Scene::new(s.seed, frame_ms);
        scene.lighting_pct = s.lighting_pct;
        scene.door_angle_deg = self.door_angle(t);
        for p in &s.people {
            if let Some(x) = at(&p.keys, t) {
                if (-1.0..=1.0).contains(&x) {
                    scene.people.push(Person {
                        position: x,
                        lane: p.lane,
                    });
                }
            }
        }
        (scene, s.feed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_interpolate_and_hold() {
        let k = [(1_000, 0.0), (2_000, 80.0)];
        assert_eq!(at(&k, 0), Some(0.0));
        assert_eq!(at(&k, 1_500), Some(40.0));
        assert_eq!(at(&k, 9_000), Some(80.0));
        assert_eq!(at(&[], 5), None);
    }

    #[test]
    fn the_world_and_the_door_round_trip_through_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let s = SceneDir::open(tmp.path()).unwrap();
        assert_eq!(s.scene(), SceneFile::default());
        s.walk(0, 1, &[(1_000, -0.3)]).unwrap();
        s.push_door(true).unwrap();
        let f = s.scene();
        assert_eq!(f.door, DoorIntent::Open);
        assert_eq!(f.people.len(), 1);
        assert_eq!(f.people[0].keys.last().unwrap().1, -0.3);
        let now = wall_ms();
        s.set_door(&DoorFile {
            keys: vec![(now, 0.0), (now + 1_000, 80.0)],
        })
        .unwrap();
        assert!(s.door_angle(now + 2_000) > 79.0);
        let (scene, feed) = s.render_scene(now + 5_000, 1);
        assert_eq!(feed, Feed::Live);
        assert_eq!(scene.people.len(), 1);
        assert!(scene.door_angle_deg > 79.0);
    }
}
