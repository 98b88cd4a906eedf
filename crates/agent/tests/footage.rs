//! The camera agent uploads its footage: a real server, the lock and camera agents in-process
//! with `server_url` set, one delivery through the real cores; then the homeowner's footage
//! API lists the delivery's segments as uploaded, and their frames hash to what the accepted
//! proofs listed and show the driver at the open door.

mod common;

use std::time::Duration;

use common::*;
use doorward_agent::scene::SceneDir;
use doorward_agent::upload::ServerUrl;
use doorward_camera::{Detectors, Frame, FRAME_BYTES};
use doorward_proto::{frame_digest, segment_digest, Body, Bolt, Digest, Envelope};
use doorward_server::footage::{verify_export, ExportHeader, ExportedSegment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_uploads_the_frames_behind_its_entry_proofs() {
    let ceiling = Duration::from_secs(10);
    let ts = TestServer::start(None).await;
    let (home, token) = add_owned_home(&ts).await;
    let scene = SceneDir::open(&ts.path("scene")).unwrap();
    let agents = start_agents(
        &ts,
        &home,
        &scene,
        Some(ServerUrl::parse(&format!("http://{}", ts.http)).unwrap()),
    )
    .await;
    pair_door(&ts.handle, &home, &agents.cam_data, &agents.lock_data).await;

    // One delivery: the driver arrives, is let in, drops off, leaves, the door relocks.
    let delivery = deliver_through(&ts, &home, &scene, &agents).await;
    eventually(ceiling, "the lock relocks", || {
        let s = agents.lock_st.borrow().clone();
        async move { s.is_some_and(|s| s.bolt == Bolt::Thrown && s.relocks == 1 && !s.in_cycle) }
    })
    .await;

    // Every segment the server kept for the delivery is uploaded: the homeowner's list shows
    // each with its upload time.
    let list = format!("/api/homes/{}/footage?delivery={delivery}", home.id);
    let t0 = std::time::Instant::now();
    let rows = loop {
        let (code, body) = http(ts.http, "GET", &list, Some(&token), None).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let rows = v["segments"].as_array().unwrap().clone();
        if !rows.is_empty() && rows.iter().all(|r| r["uploaded_ms"].is_u64()) {
            break rows;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "not every segment of the delivery is uploaded within 30 s: {rows:?}; camera {:?}",
            agents.cam_st.borrow().as_ref().map(|s| s.footage)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // An entry of several seconds at 8 proofs a second.
    assert!(rows.len() >= 16, "{} segments: {rows:?}", rows.len());
    let st = agents.cam_st.borrow().clone().unwrap();
    assert!(
        st.footage.stored >= rows.len() as u64,
        "the camera counts what the server stored: {:?}",
        st.footage
    );
    assert_eq!(st.footage.dropped_full, 0, "{:?}", st.footage);
    assert_eq!(st.footage.failed, 0, "{:?}", st.footage);

    // The export carries each proof as the server accepted it, with the uploaded frames.
    let (code, export) = http(
        ts.http,
        "GET",
        &format!("/api/homes/{}/footage/export?delivery={delivery}", home.id),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(code, 200);
    verify_export(&export).expect("the export checks offline");
    let mut d = minicbor::Decoder::new(&export);
    let header: ExportHeader = d.decode().unwrap();
    assert_eq!(header.segments as usize, rows.len());
    let (mut people, mut door_open) = (0, 0);
    while d.position() < export.len() {
        let seg: ExportedSegment = d.decode().unwrap();
        let Body::CameraProof(proof) = Envelope::decode(&seg.proof).unwrap().body else {
            panic!("segment {} carries no CameraProof", seg.seq);
        };
        assert_eq!((&proof.camera, proof.seq), (&home.camera, seg.seq));
        // The homeowner reads the segment back: whole 64×48 frames, the ones proved.
        let (code, body) = http(
            ts.http,
            "GET",
            &format!("/api/homes/{}/footage/{}/{}", home.id, home.camera, seg.seq),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(code, 200, "segment {}", seg.seq);
        assert_eq!(body.len() % FRAME_BYTES, 0);
        let frames: Vec<&[u8]> = body.chunks(FRAME_BYTES).collect();
        let digests: Vec<Digest> = frames.iter().map(|f| frame_digest(f)).collect();
        assert_eq!(digests, proof.frames, "segment {}", seg.seq);
        assert_eq!(segment_digest(&digests), proof.segment);
        assert_eq!(
            seg.frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>(),
            frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>()
        );
        // The pictures are the scene: read by the camera's own detectors.
        for f in frames {
            let mut frame = Frame::black();
            frame.pixels.copy_from_slice(f);
            let r = Detectors::new().observe(&frame);
            assert!(!r.blinded, "segment {}: a blank frame", seg.seq);
            people += usize::from(r.people.in_zone > 0);
            door_open += usize::from(r.door.open);
        }
    }
    assert!(people > 0, "the footage shows the driver");
    assert!(door_open > 0, "the footage shows the door open");

    agents.stop().await;
    ts.stop().await;
}
