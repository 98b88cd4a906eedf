//! Recorded footage end to end: a real server and broker, a real camera core proving segments
//! during an entry over MQTT, and its frames uploaded over HTTP as docs/PROTOCOL.md §18 says.

mod apikit;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use doorward_control::audit::{EntryKind, MAX_AUDIT_PAYLOAD_BYTES};
use doorward_control::{AuditEvent, AuditKind};
use doorward_proto::footage::{body_digest, sign_upload, UPLOAD_SKEW_MS};
use doorward_proto::{codec, Id, KeyPair};
use doorward_server::footage::{verify_export, DAY_MS, DEFAULT_RETENTION_DAYS, FOOTAGE_DELETED};
use doorward_server::ServerError;
use doorward_store::{FootageQuery, FootageSegment, MAX_READ_ROWS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ceiling of each step (the entry opens in well under a second here).
const CEILING: Duration = Duration::from_secs(10);

/// `PUT path` over HTTP/1.0 with the upload headers; the status and the JSON body.
async fn put(
    addr: SocketAddr,
    path: &str,
    timestamp_ms: u64,
    sig_hex: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.0\r\nHost: test\r\nContent-Type: application/octet-stream\r\n\
         Doorward-Timestamp: {timestamp_ms}\r\nDoorward-Signature: {sig_hex}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(CEILING, s.read_to_end(&mut buf))
        .await
        .expect("an answer within the ceiling")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or_default())
}

/// Uploads `frames` as segment `seq` of `camera`, signed by `key` at `timestamp_ms`.
async fn upload(
    addr: SocketAddr,
    camera: &Id,
    seq: u64,
    frames: &[Vec<u8>],
    key: &KeyPair,
    timestamp_ms: u64,
) -> (u16, String) {
    let body = frames.concat();
    let sig = sign_upload(key, camera, seq, timestamp_ms, &body);
    let (code, v) = put(
        addr,
        &format!("/api/devices/{camera}/segments/{seq}"),
        timestamp_ms,
        &hex::encode(sig.0),
        &body,
    )
    .await;
    (code, v["result"].as_str().unwrap_or("").to_owned())
}

/// The rows of `home`, every page.
async fn rows(ts: &TestServer, home: &Id) -> Vec<FootageSegment> {
    ts.handle
        .footage_list(home, FootageQuery::all(), 1_000)
        .await
        .unwrap()
}

/// Waits until `n` segments the camera handed out have rows at the server; returns them
/// with their frames, oldest first.
async fn proved_segments(
    ts: &TestServer,
    home: &Home,
    cam: &CameraDev,
    n: usize,
) -> Vec<(FootageSegment, Vec<Vec<u8>>)> {
    let t0 = std::time::Instant::now();
    loop {
        let have = rows(ts, &home.id).await;
        let segs = cam.segments.lock().unwrap().clone();
        let both: Vec<_> = have
            .into_iter()
            .filter_map(|r| {
                segs.iter()
                    .find(|(s, _)| *s == r.seq)
                    .map(|(_, f)| (r, f.clone()))
            })
            .collect();
        if both.len() >= n {
            return both;
        }
        assert!(
            t0.elapsed() < CEILING,
            "only {} proved segments with frames within {CEILING:?}",
            both.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The raw bytes of the SQLite database and its WAL.
fn database_bytes(ts: &TestServer) -> Vec<u8> {
    let dir = ts.dir.path().join("data");
    let mut all = Vec::new();
    for f in ["doorward.db", "doorward.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            all.extend(b);
        }
    }
    all
}

/// Audit events of `home` of one kind.
fn audit_payloads(ts: &TestServer, home: &Id, kind: EntryKind) -> Vec<Vec<u8>> {
    ts.handle
        .store()
        .audit_entries(home, 0, MAX_READ_ROWS)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_is_checked_against_the_proof_sealed_read_back_exported_and_deleted() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (_lock, cam) = open_entry(&ts, &mut home, CEILING).await;
    eventually(
        CEILING,
        "segments recorded during the entry name its delivery",
        || {
            let (h, id, d) = (ts.handle.clone(), home.id.clone(), home.delivery.clone());
            async move {
                h.footage_list(&id, FootageQuery::all(), 1_000)
                    .await
                    .unwrap()
                    .iter()
                    .any(|r| r.delivery.as_ref() == Some(&d))
            }
        },
    )
    .await;
    let segs = proved_segments(&ts, &home, &cam, 4).await;
    let (row, frames) = &segs[0];
    assert_eq!(row.camera, home.cam_id);
    assert!(row.uploaded_ms.is_none());
    let addr = ts.http;
    let now = wall_ms();

    // Accepted, then a duplicate changes nothing.
    assert_eq!(
        upload(addr, &home.cam_id, row.seq, frames, &home.cam_key, now).await,
        (201, "stored".into())
    );
    assert_eq!(
        upload(addr, &home.cam_id, row.seq, frames, &home.cam_key, now).await,
        (200, "duplicate".into())
    );
    // Read back equal, and the database holds no frame in the clear.
    let back = ts
        .handle
        .footage_segment(&home.id, &home.cam_id, row.seq)
        .await
        .unwrap()
        .expect("the uploaded segment");
    assert_eq!(&back, frames);
    let db = database_bytes(&ts);
    for f in frames {
        assert!(
            !db.windows(256).any(|w| w == &f[1024..1280]),
            "a frame's pixels are in the database file in the clear"
        );
    }
    let sealed = ts
        .handle
        .store()
        .footage_sealed(&home.id, &home.cam_id, row.seq)
        .unwrap()
        .unwrap();
    assert!(!sealed.windows(256).any(|w| w == &frames[0][1024..1280]));

    // Refused: other frames (properly signed), a seq with no proof, a bad signature, a stale
    // or future timestamp, another home's camera key.
    let (row1, frames1) = &segs[1];
    let mut wrong = frames1.clone();
    wrong[0][100] ^= 0x40;
    assert_eq!(
        upload(addr, &home.cam_id, row1.seq, &wrong, &home.cam_key, now).await,
        (409, "mismatch".into())
    );
    assert_eq!(
        upload(addr, &home.cam_id, row1.seq, frames, &home.cam_key, now).await,
        (409, "mismatch".into()),
        "another segment's frames"
    );
    assert_eq!(
        upload(addr, &home.cam_id, 999_999_999, frames1, &home.cam_key, now).await,
        (404, "no_proof".into())
    );
    let stranger = KeyPair::from_seed(&[0x5a; 32]);
    assert_eq!(
        upload(addr, &home.cam_id, row1.seq, frames1, &stranger, now).await,
        (401, "bad_signature".into())
    );
    for t in [now - UPLOAD_SKEW_MS - 5_000, now + UPLOAD_SKEW_MS + 5_000] {
        assert_eq!(
            upload(addr, &home.cam_id, row1.seq, frames1, &home.cam_key, t).await,
            (401, "stale_timestamp".into())
        );
    }
    let other = provision(&ts.handle).await;
    assert_eq!(
        upload(addr, &home.cam_id, row1.seq, frames1, &other.cam_key, now).await,
        (401, "bad_signature".into()),
        "signed by another home's camera"
    );
    assert_eq!(
        upload(addr, &other.cam_id, row1.seq, frames1, &other.cam_key, now).await,
        (404, "no_proof".into()),
        "another home's camera has no such proof"
    );
    let unknown = Id::new("cam-nobody").unwrap();
    assert_eq!(
        upload(addr, &unknown, row1.seq, frames1, &home.cam_key, now).await,
        (401, "bad_signature".into())
    );
    // A body that is not whole frames, and headers that do not parse.
    let (code, v) = put(
        addr,
        &format!("/api/devices/{}/segments/{}", home.cam_id, row1.seq),
        now,
        &"00".repeat(64),
        &[1, 2, 3],
    )
    .await;
    assert_eq!((code, v["result"].as_str()), (400, Some("bad_length")));
    let (code, v) = put(
        addr,
        &format!("/api/devices/{}/segments/{}", home.cam_id, row1.seq),
        now,
        "zz",
        &frames1.concat(),
    )
    .await;
    assert_eq!((code, v["result"].as_str()), (400, Some("malformed")));
    // None of the refusals stored anything; the proper upload still goes through.
    assert_eq!(
        ts.handle
            .footage_segment(&home.id, &home.cam_id, row1.seq)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        upload(addr, &home.cam_id, row1.seq, frames1, &home.cam_key, now).await,
        (201, "stored".into())
    );
    for (result, n) in [
        ("stored", 2),
        ("duplicate", 1),
        ("mismatch", 2),
        ("no_proof", 2),
        ("bad_signature", 3),
        ("bad_length", 1),
        ("stale_timestamp", 2),
        ("malformed", 1),
    ] {
        assert_eq!(
            ts.metric(&format!(
                "doorward_footage_uploads_total{{result=\"{result}\"}}"
            ))
            .await,
            n,
            "{result}"
        );
    }
    // Another home sees none of it (I11).
    assert!(rows(&ts, &other.id).await.is_empty());
    assert_eq!(
        ts.handle
            .footage_segment(&other.id, &home.cam_id, row.seq)
            .await
            .unwrap(),
        None
    );

    // The export checks offline, and every proof in it is in the home's audit record.
    let export = ts
        .handle
        .footage_export(&home.id, FootageQuery::all())
        .await
        .unwrap();
    let sum = verify_export(&export.bytes).expect("the export verifies");
    assert_eq!(sum.segments, export.segments);
    assert_eq!(sum.with_frames, 2);
    assert!(sum.chain_links >= 1, "{sum:?}");
    let accepted: Vec<_> = audit_payloads(&ts, &home.id, EntryKind::EVENT)
        .iter()
        .filter_map(|p| codec::decode::<AuditEvent>(p, MAX_AUDIT_PAYLOAD_BYTES).ok())
        .filter_map(|e| match e.what {
            AuditKind::Accepted { digest, .. } => Some(digest),
            _ => None,
        })
        .collect();
    for d in &sum.proof_digests {
        assert!(
            accepted.contains(d),
            "proof {d:?} is not in the audit record"
        );
    }
    let mut flipped = export.bytes.clone();
    let at = flipped
        .windows(256)
        .position(|w| w == &frames[0][1024..1280])
        .expect("the export holds the frames");
    flipped[at + 7] ^= 1;
    assert!(
        verify_export(&flipped).is_err(),
        "a changed pixel is caught"
    );

    // Delete one segment: gone, recorded, and a second delete finds nothing.
    assert!(ts
        .handle
        .footage_delete_segment(&home.id, &home.cam_id, row.seq)
        .await
        .unwrap());
    assert_eq!(
        ts.handle
            .footage_segment(&home.id, &home.cam_id, row.seq)
            .await
            .unwrap(),
        None
    );
    assert!(!rows(&ts, &home.id).await.iter().any(|r| r.seq == row.seq));
    assert!(!ts
        .handle
        .footage_delete_segment(&home.id, &home.cam_id, row.seq)
        .await
        .unwrap());
    assert_eq!(
        upload(
            addr,
            &home.cam_id,
            row.seq,
            frames,
            &home.cam_key,
            wall_ms()
        )
        .await,
        (404, "no_proof".into()),
        "a deleted segment cannot be uploaded again"
    );
    eventually(CEILING, "the deletion is in the audit record", || {
        let n = audit_payloads(&ts, &home.id, FOOTAGE_DELETED).len();
        async move { n >= 1 }
    })
    .await;

    // Retention: default, bounds, then a sweep as at a later time deletes what expired.
    assert_eq!(
        ts.handle.footage_retention(&home.id).await.unwrap(),
        DEFAULT_RETENTION_DAYS
    );
    for bad in [0, 366] {
        assert!(matches!(
            ts.handle.set_footage_retention(&home.id, bad).await,
            Err(ServerError::Invalid(_))
        ));
    }
    ts.handle.set_footage_retention(&home.id, 1).await.unwrap();
    assert_eq!(ts.handle.footage_retention(&home.id).await.unwrap(), 1);
    let left = rows(&ts, &home.id).await;
    let oldest = left.iter().map(|r| r.at_ms).min().unwrap();
    let newest = left.iter().map(|r| r.at_ms).max().unwrap();
    assert_eq!(
        ts.handle
            .footage_sweep(oldest + DAY_MS, 1_000)
            .await
            .unwrap(),
        0,
        "nothing is a day old yet"
    );
    let later = newest + DAY_MS + 1;
    assert_eq!(
        ts.handle.footage_sweep(later, 1).await.unwrap(),
        1,
        "bounded"
    );
    let other_rows_before = rows(&ts, &other.id).await.len();
    let mut swept = 1;
    while swept < left.len() {
        let n = ts.handle.footage_sweep(later, 1_000).await.unwrap();
        assert!(
            n > 0,
            "the sweep stalls with {} rows left",
            left.len() - swept
        );
        swept += n;
    }
    // Rows the camera proved after `left` was read are newer than `newest`, so they stay.
    let after = rows(&ts, &home.id).await;
    assert!(after.iter().all(|r| r.at_ms > newest), "{after:?}");
    assert_eq!(
        ts.handle
            .footage_segment(&home.id, &home.cam_id, row1.seq)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        rows(&ts, &other.id).await.len(),
        other_rows_before,
        "the other home keeps its default retention"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footage_and_pending_uploads_survive_a_restart() {
    let ts = TestServer::start(Broker::Embedded).await;
    let mut home = provision(&ts.handle).await;
    let (_lock, cam) = open_entry(&ts, &mut home, CEILING).await;
    let segs = proved_segments(&ts, &home, &cam, 2).await;
    let (row, frames) = segs[0].clone();
    let (row1, frames1) = segs[1].clone();
    assert_eq!(
        upload(
            ts.http,
            &home.cam_id,
            row.seq,
            &frames,
            &home.cam_key,
            wall_ms()
        )
        .await,
        (201, "stored".into())
    );
    ts.handle.set_footage_retention(&home.id, 7).await.unwrap();
    let before = body_digest(&frames.concat());

    let dir = ts.stop().await;
    let ts = TestServer::start_in(Broker::Embedded, dir).await;
    let back = ts
        .handle
        .footage_segment(&home.id, &home.cam_id, row.seq)
        .await
        .unwrap()
        .expect("the segment is still there");
    assert_eq!(body_digest(&back.concat()), before);
    assert_eq!(ts.handle.footage_retention(&home.id).await.unwrap(), 7);
    // A segment proved before the restart is uploaded after it.
    assert_eq!(
        upload(
            ts.http,
            &home.cam_id,
            row1.seq,
            &frames1,
            &home.cam_key,
            wall_ms()
        )
        .await,
        (201, "stored".into())
    );
    assert_eq!(
        ts.handle
            .footage_segment(&home.id, &home.cam_id, row1.seq)
            .await
            .unwrap()
            .as_ref(),
        Some(&frames1)
    );
    ts.stop().await;
}

/// I11 over HTTP: the home's owner lists its footage and sets its retention; the home's own
/// (opted-in) carrier, another homeowner and an anonymous caller reach none of the footage
/// routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i11_only_the_homes_owner_reaches_its_footage_over_http() {
    use apikit::{tenant, ApiServer, Cred};
    let s = ApiServer::start(doorward_server::ApiSettings {
        allow_signup: true,
        ..Default::default()
    })
    .await;
    let t = tenant(&s, "fa").await;
    let u = tenant(&s, "fb").await;
    let base = format!("/api/homes/{}/footage", t.home);
    let r = s.call("GET", &base, &t.homeowner(), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json["segments"].is_array());
    let retention = format!("{base}/retention");
    let days = serde_json::json!({"days": 7});
    let r = s.call("PUT", &retention, &t.homeowner(), Some(&days)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.call("GET", &retention, &t.homeowner(), None).await;
    assert_eq!(r.json["days"], 7);
    let r = s
        .call(
            "PUT",
            &retention,
            &t.homeowner(),
            Some(&serde_json::json!({"days": 0})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let seg = format!("{base}/{}/1", t.cam_id);
    let export = format!("{base}/export");
    for (who, cred) in [
        ("the home's carrier", t.carrier_auth()),
        ("another homeowner", u.homeowner()),
        ("nobody", Cred::None),
    ] {
        for (m, p, body) in [
            ("GET", &base, None),
            ("DELETE", &base, None),
            ("GET", &export, None),
            ("GET", &retention, None),
            ("PUT", &retention, Some(&days)),
            ("GET", &seg, None),
            ("DELETE", &seg, None),
        ] {
            let r = s.call(m, p, &cred, body).await;
            assert!(
                matches!(r.status, 401 | 403 | 404),
                "{who}: {m} {p} answered {} {}",
                r.status,
                r.text()
            );
        }
    }
    assert_eq!(
        s.handle.footage_retention(&t.home).await.unwrap(),
        7,
        "nobody else changed it"
    );
}
