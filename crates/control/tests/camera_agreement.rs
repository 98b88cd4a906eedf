//! The server and the real camera state machine agree on the message chain that signed
//! checkpoints commit to: the camera's checkpoints verify against what the server accepted,
//! and a proof replaced on the way is caught by the camera's next checkpoint (I7, I10).

mod harness;

use doorward_camera::testkit::{Harness, SceneScript};
use doorward_camera::{Camera, CameraConfig, CameraState, Input as CamInput, Output as CamOutput};
use doorward_control::*;
use doorward_proto::*;
use harness::*;

/// The camera's clock when it starts, chosen so its offset to server time matches the hand
/// played camera's (no clock skew across the switch).
const CAM_START_MS: u64 = 5_000;

struct Rig {
    w: World,
    h: Harness,
}

impl Rig {
    fn new() -> Rig {
        let w = World::new();
        let cfg = CameraConfig::new(
            w.cam.id.clone(),
            w.cam.key.clone(),
            w.lock.id.clone(),
            w.lock.key.public(),
        );
        // The real camera takes over the hand-played one's stream a few sequence numbers on
        // (a small, tolerated loss), with a fresh chain: the server holds no anchor for it.
        let stored = CameraState {
            seq_reserved: w.cam.seq + 4,
        };
        let camera = Camera::new(cfg, stored, CAM_START_MS);
        let script = SceneScript::delivery(3, CAM_START_MS + 2_000);
        let h = Harness::new(camera, script, CAM_START_MS);
        Rig { w, h }
    }

    /// Server time for camera time `t`.
    fn server_ms(&self, t: u64) -> u64 {
        T0 + (t - CAM_START_MS)
    }

    /// Delivers what the camera sent to the server, each at its time.
    fn deliver(&mut self, outs: Vec<(u64, CamOutput)>) -> Vec<Output> {
        let mut server = Vec::new();
        for (t, o) in outs {
            if let CamOutput::Send(env) = o {
                self.w.now = self.w.now.max(self.server_ms(t));
                let cam_id = self.w.cam.id.clone();
                server.extend(self.w.device(&cam_id, &env));
            }
        }
        server
    }
}

fn count(out: &[Output], f: impl Fn(&AuditKind) -> bool) -> usize {
    audits(out).iter().filter(|a| f(&a.what)).count()
}

fn stream_alarms(out: &[Output]) -> Vec<AlarmKind> {
    // The hand-played lock reports the door closed while the camera sees it open: the scene
    // check is not what this test is about.
    alarms(out)
        .into_iter()
        .filter(|k| *k != AlarmKind::SceneMismatch)
        .collect()
}

#[test]
fn i10_the_real_cameras_checkpoints_verify_and_expose_a_replaced_proof() {
    let mut rig = Rig::new();
    let session = rig.w.cam.session.clone().unwrap();
    let outs = rig.h.input(CamInput::Session(session.clone()));
    let mut out = rig.deliver(outs);
    let outs = rig.h.run_until(CAM_START_MS + 12_000);
    out.extend(rig.deliver(outs));
    assert!(stream_alarms(&out).is_empty(), "{:?}", stream_alarms(&out));
    let checkpoints = count(&out, |a| {
        matches!(a, AuditKind::Accepted { envelope, .. }
            if matches!(Envelope::decode(envelope).map(|e| e.body), Ok(Body::Checkpoint(_))))
    });
    assert!(checkpoints >= 8, "{checkpoints} checkpoints");
    // Anchored once (the server met this chain mid-way), then every checkpoint verified.
    assert_eq!(
        count(&out, |a| matches!(a, AuditKind::Reanchored { .. })),
        1
    );
    assert_eq!(
        count(&out, |a| matches!(a, AuditKind::CheckpointMismatch { .. })),
        0
    );

    // The session key leaked: the next proof is replaced by one that sees nobody, re-MAC'd.
    let mut outs = rig.h.run_until(CAM_START_MS + 16_000);
    let i = outs
        .iter()
        .position(
            |(_, o)| matches!(o, CamOutput::Send(e) if matches!(e.body, Body::CameraProof(_))),
        )
        .unwrap();
    if let (_, CamOutput::Send(env)) = &mut outs[i] {
        let Body::CameraProof(mut p) = env.body.clone() else {
            unreachable!()
        };
        p.obs.people_in_zone = 0;
        p.obs.door_open = false;
        *env = Envelope::maced(Body::CameraProof(p), &session);
    }
    let out = rig.deliver(outs);
    assert!(stream_alarms(&out).contains(&AlarmKind::StreamTampered));
    assert_eq!(
        count(&out, |a| matches!(a, AuditKind::CheckpointMismatch { .. })),
        1
    );
}
