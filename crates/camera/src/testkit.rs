//! Drives a camera through a scripted scene, with attacks on its feed: scene timeline in,
//! proofs and observations out. Used by this crate's tests and by the attack lab.
//!
//! Attacks replace the frames the camera receives. Because rendering is deterministic, replays
//! re-render earlier frame times and so give exactly the bytes the camera saw then, with no
//! footage kept in memory.

use doorward_proto::{Auth, Body, CameraProof, Checkpoint, Envelope, Observations, Signed};
use doorward_proto::{WitnessAttestation, WitnessRequest};

use crate::camera::{Camera, Input, Output, Refusal};
use crate::frame::Frame;
use crate::render::{Person, Renderer, Scene};

/// An attack on the camera's feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// The last frame before the attack, again and again.
    Freeze,
    /// The `frames` frames before the attack, replayed in a loop (2 is an A/B alternation).
    Loop {
        /// Length of the replayed stretch, in frames (at least 1).
        frames: u64,
    },
    /// A covered lens: dark frames (the time overlay still burned in).
    Cover,
    /// A blinded sensor: uniform bright frames.
    Blind,
    /// Live frames, but the door region is pasted from the attack's start: the door seems not
    /// to move whatever it does.
    StaticDoor,
}

/// An attack over a stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttackSpan {
    /// First affected time (inclusive).
    pub from_ms: u64,
    /// End (exclusive).
    pub to_ms: u64,
    /// What is done.
    pub attack: Attack,
}

/// One person's walk: `(time, position)` keys, interpolated linearly; the person is in the
/// scene from the first key to the last.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonPath {
    /// Walking lane (0 to 2).
    pub lane: u8,
    /// `(time_ms, position)` in time order.
    pub keys: Vec<(u64, f32)>,
}

/// A scene over time.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneScript {
    /// Scene seed (texture and noise).
    pub seed: u64,
    /// Lighting, percent.
    pub lighting_pct: u8,
    /// Door angle keys `(time_ms, degrees)`, interpolated linearly; closed before the first.
    pub door: Vec<(u64, f32)>,
    /// People.
    pub people: Vec<PersonPath>,
    /// Attacks on the feed.
    pub attacks: Vec<AttackSpan>,
}

/// Linear interpolation over time-ordered keyframes `(time_ms, value)`: the first value
/// before the first key, the last after the last; `None` without keys.
pub fn interpolate(keys: &[(u64, f32)], t: u64) -> Option<f32> {
    let first = keys.first()?;
    if t <= first.0 {
        return Some(first.1);
    }
    for w in keys.windows(2) {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        if t <= t1 {
            if t1 == t0 {
                return Some(v1);
            }
            let a = (t - t0) as f32 / (t1 - t0) as f32;
            return Some(v0 + (v1 - v0) * a);
        }
    }
    keys.last().map(|k| k.1)
}

impl SceneScript {
    /// An empty scene: door closed, nobody, nominal light.
    pub fn new(seed: u64) -> Self {
        SceneScript {
            seed,
            lighting_pct: 100,
            door: Vec::new(),
            people: Vec::new(),
            attacks: Vec::new(),
        }
    }

    /// A normal delivery starting at `t0`: the driver walks up, the door opens, the driver
    /// steps in, drops the parcel, walks out and out of view, and the door closes. Activity
    /// ends at `t0 + 16 s`.
    pub fn delivery(seed: u64, t0: u64) -> Self {
        let mut s = SceneScript::new(seed);
        s.door = vec![
            (t0 + 3_000, 0.0),
            (t0 + 4_500, 80.0),
            (t0 + 14_000, 80.0),
            (t0 + 15_500, 0.0),
        ];
        s.people.push(PersonPath {
            lane: 1,
            keys: vec![
                (t0, -1.0),
                (t0 + 2_000, -0.3),
                (t0 + 5_000, -0.3),
                (t0 + 7_000, 0.6),
                (t0 + 10_000, 0.6),
                (t0 + 13_000, -1.0),
                (t0 + 13_400, -1.2),
            ],
        });
        s
    }

    /// Adds a second person who follows `gap_ms` behind the driver's walk in, on another lane,
    /// and goes on into the house (out of view inside) instead of coming back out.
    pub fn with_follower(mut self, t0: u64, gap_ms: u64) -> Self {
        let t = t0 + gap_ms;
        self.people.push(PersonPath {
            lane: 2,
            keys: vec![
                (t + 2_000, -1.0),
                (t + 4_000, -0.3),
                (t + 5_000, -0.3),
                (t + 7_000, 0.6),
                (t + 8_000, 1.0),
                (t + 8_200, 1.2),
            ],
        });
        self
    }

    /// Adds an attack.
    pub fn attack(mut self, from_ms: u64, to_ms: u64, attack: Attack) -> Self {
        self.attacks.push(AttackSpan {
            from_ms,
            to_ms,
            attack,
        });
        self
    }

    /// The door angle at `t`.
    pub fn door_at(&self, t: u64) -> f32 {
        interpolate(&self.door, t).unwrap_or(0.0)
    }

    /// Fills `scene` with the true scene at `t` (reusing its people buffer).
    pub fn scene_at(&self, t: u64, scene: &mut Scene) {
        scene.seed = self.seed;
        scene.time_ms = t;
        scene.lighting_pct = self.lighting_pct;
        scene.door_angle_deg = self.door_at(t);
        scene.people.clear();
        for p in &self.people {
            let (Some(first), Some(last)) = (p.keys.first(), p.keys.last()) else {
                continue;
            };
            if t < first.0 || t > last.0 {
                continue;
            }
            if let Some(position) = interpolate(&p.keys, t) {
                scene.people.push(Person {
                    position,
                    lane: p.lane,
                });
            }
        }
    }

    fn attack_at(&self, t: u64) -> Option<AttackSpan> {
        self.attacks
            .iter()
            .copied()
            .find(|a| a.from_ms <= t && t < a.to_ms)
    }
}

/// The camera's sensor under a script: frame `k` is taken at `start_ms + k · 1000 / fps`.
pub struct Feed {
    /// The script.
    pub script: SceneScript,
    renderer: Renderer,
    scene: Scene,
    start_ms: u64,
    fps: u64,
}

impl Feed {
    /// A feed of `script` at `fps` frames per second from `start_ms`.
    pub fn new(script: SceneScript, start_ms: u64, fps: u32) -> Self {
        Feed {
            renderer: Renderer::new(script.seed),
            scene: Scene::new(script.seed, start_ms),
            script,
            start_ms,
            fps: fps.max(1) as u64,
        }
    }

    /// When frame `k` is taken.
    pub fn frame_time_ms(&self, k: u64) -> u64 {
        self.start_ms + k * 1000 / self.fps
    }

    /// The first frame taken at or after `t`.
    pub fn frame_at_or_after(&self, t: u64) -> u64 {
        let mut k = t.saturating_sub(self.start_ms) * self.fps / 1000;
        while self.frame_time_ms(k) < t {
            k += 1;
        }
        while k > 0 && self.frame_time_ms(k - 1) >= t {
            k -= 1;
        }
        k
    }

    /// The true scene at `t`.
    pub fn truth(&mut self, t: u64) -> &Scene {
        self.script.scene_at(t, &mut self.scene);
        &self.scene
    }

    /// Renders the true frame `k`, without attacks.
    pub fn true_frame(&mut self, k: u64, out: &mut Frame) {
        let t = self.frame_time_ms(k);
        self.script.scene_at(t, &mut self.scene);
        self.renderer.render(&self.scene, out);
    }

    /// Renders frame `k` as the camera receives it, attacks included.
    pub fn frame(&mut self, k: u64, out: &mut Frame) {
        let t = self.frame_time_ms(k);
        let Some(span) = self.script.attack_at(t) else {
            return self.true_frame(k, out);
        };
        let k0 = self.frame_at_or_after(span.from_ms);
        match span.attack {
            Attack::Freeze => self.true_frame(k0.saturating_sub(1), out),
            Attack::Loop { frames } => {
                let n = frames.max(1);
                self.true_frame(k0.saturating_sub(n) + (k - k0) % n, out)
            }
            Attack::Cover => self.renderer.render_covered(self.script.seed, t, out),
            Attack::Blind => self.renderer.render_blinded(self.script.seed, t, out),
            Attack::StaticDoor => {
                self.script.scene_at(t, &mut self.scene);
                self.scene.door_angle_deg = self.script.door_at(span.from_ms);
                self.renderer.render(&self.scene, out);
            }
        }
    }
}

/// A camera and its feed, stepped together in time.
pub struct Harness {
    /// The camera under test.
    pub camera: Camera,
    /// Its sensor.
    pub feed: Feed,
    frame: Frame,
    next_frame: u64,
    now_ms: u64,
}

impl Harness {
    /// A camera fed `script` from `start_ms` at the camera's configured frame rate.
    pub fn new(camera: Camera, script: SceneScript, start_ms: u64) -> Self {
        let fps = camera.config().fps;
        Harness {
            camera,
            feed: Feed::new(script, start_ms, fps),
            frame: Frame::black(),
            next_frame: 0,
            now_ms: start_ms,
        }
    }

    /// The harness's current time.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Delivers frames and timer ticks up to and including `end_ms`, handing each output to
    /// `sink` with its time.
    pub fn run_with(&mut self, end_ms: u64, sink: &mut impl FnMut(u64, Output)) {
        self.step(end_ms, true, sink);
    }

    /// Like [`Harness::run_with`] with no frames: the sensor is cut off, or an idle stretch the
    /// attack lab does not render. Frames that would have been taken are skipped.
    pub fn idle_with(&mut self, end_ms: u64, sink: &mut impl FnMut(u64, Output)) {
        self.step(end_ms, false, sink);
    }

    /// [`Harness::run_with`], collecting the outputs.
    pub fn run_until(&mut self, end_ms: u64) -> Vec<(u64, Output)> {
        let mut v = Vec::new();
        self.run_with(end_ms, &mut |t, o| v.push((t, o)));
        v
    }

    /// [`Harness::idle_with`], collecting the outputs.
    pub fn idle_until(&mut self, end_ms: u64) -> Vec<(u64, Output)> {
        let mut v = Vec::new();
        self.idle_with(end_ms, &mut |t, o| v.push((t, o)));
        v
    }

    /// Hands the camera an input at the current time.
    pub fn input(&mut self, input: Input) -> Vec<(u64, Output)> {
        let now = self.now_ms;
        self.camera
            .handle(now, input)
            .into_iter()
            .map(|o| (now, o))
            .collect()
    }

    fn step(&mut self, end_ms: u64, frames: bool, sink: &mut impl FnMut(u64, Output)) {
        loop {
            let tf = self.feed.frame_time_ms(self.next_frame);
            let td = self.camera.next_deadline_ms();
            if frames && tf <= td && tf <= end_ms {
                self.now_ms = self.now_ms.max(tf);
                self.feed.frame(self.next_frame, &mut self.frame);
                self.next_frame += 1;
                for o in self.camera.on_frame(self.now_ms, &self.frame) {
                    sink(self.now_ms, o);
                }
            } else if td <= end_ms {
                if !frames {
                    self.next_frame = self.feed.frame_at_or_after(td + 1).max(self.next_frame);
                }
                self.now_ms = self.now_ms.max(td);
                for o in self.camera.handle(self.now_ms, Input::Tick) {
                    sink(self.now_ms, o);
                }
            } else {
                break;
            }
        }
        if !frames {
            self.next_frame = self.feed.frame_at_or_after(end_ms + 1).max(self.next_frame);
        }
        self.now_ms = self.now_ms.max(end_ms);
    }
}

/// A proof as sent, with how it was authenticated.
#[derive(Clone, Debug)]
pub struct SentProof {
    /// When it was sent.
    pub at_ms: u64,
    /// The proof.
    pub proof: CameraProof,
    /// The envelope it travelled in.
    pub envelope: Envelope,
}

impl SentProof {
    /// Whether it was MAC'd (else signed).
    pub fn maced(&self) -> bool {
        matches!(self.envelope.auth, Auth::Mac { .. })
    }
}

/// The proofs among `outputs`.
pub fn proofs(outputs: &[(u64, Output)]) -> Vec<SentProof> {
    outputs
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Send(env) => match &env.body {
                Body::CameraProof(p) => Some(SentProof {
                    at_ms: *t,
                    proof: p.clone(),
                    envelope: env.clone(),
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The checkpoints among `outputs`, with their times.
pub fn checkpoints(outputs: &[(u64, Output)]) -> Vec<(u64, Checkpoint, Envelope)> {
    outputs
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Send(env) => match &env.body {
                Body::Checkpoint(c) => Some((*t, c.clone(), env.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The attestations among `outputs`.
pub fn attestations(outputs: &[(u64, Output)]) -> Vec<Signed<WitnessAttestation>> {
    outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Send(env) => match &env.body {
                Body::WitnessAttestation(a) => Some(a.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The refusals among `outputs`.
pub fn refusals(outputs: &[(u64, Output)]) -> Vec<Refusal> {
    outputs
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Refused { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// Every observation flag raised in any proof among `outputs`, and the last proof's counts.
pub fn summary(outputs: &[(u64, Output)]) -> Observations {
    let mut s = Observations::default();
    for p in proofs(outputs) {
        let o = p.proof.obs;
        s.frozen |= o.frozen;
        s.looped |= o.looped;
        s.blinded |= o.blinded;
        s.door_moving |= o.door_moving;
        s.door_open = o.door_open;
        s.people_in_zone = o.people_in_zone;
        s.entered = o.entered;
        s.exited = o.exited;
    }
    s
}

/// A witness request for `nonce`, as the server would relay it.
pub fn witness_request(camera: &Camera, nonce: Signed<doorward_proto::UnlockNonce>) -> Input {
    Input::WitnessRequest(WitnessRequest {
        camera: camera.config().camera.clone(),
        nonce,
    })
}
