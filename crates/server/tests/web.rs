//! The homeowner web app in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (fantoccini), against a real server (SQLite, the embedded broker) with
//! scripted devices that speak docs/PROTOCOL.md. One journey, each step within a ceiling,
//! each step's screenshot saved under target/screenshots/:
//! log in; a delivery appears live; the camera falls silent (no disconnect) and the alarm
//! and the camera card's UNKNOWN appear (5 s); the live connection goes silent and the page
//! says "connection lost"; the entry's footage (uploaded signed by the camera, as the camera
//! agent does) plays frame by frame in the timeline with the entry's verification mark, and
//! another homeowner cannot read its frames; a live request is approved; a carrier is revoked,
//! the page shows when the lock confirmed it, and its next request is denied; a guest with a
//! weekly schedule is added, listed and revoked; the record verifies in the page.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`./scripts/test` installs them). Under
//! CI=true a missing browser fails the test; elsewhere `DOORWARD_SKIP_BROWSER=1` skips it
//! loudly.

mod apikit;
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apikit::*;
use doorward_proto::footage::sign_upload;
use doorward_proto::{Body, Envelope, KeyPair, LockEvent, LockReport};
use doorward_server::ApiSettings;
use doorward_store::FootageQuery;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The page's live ceiling for what the issue asks within 5 s.
const FIVE_S: Duration = Duration::from_secs(5);
/// A phone's screen.
const WIDTH: u32 = 390;
const HEIGHT: u32 = 844;

/// Whether the browser test runs: fails when the browser is missing, unless
/// `DOORWARD_SKIP_BROWSER=1` outside CI, which skips loudly.
fn browser_or_skip(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let skip = std::env::var("DOORWARD_SKIP_BROWSER")
        .map(|v| v == "1")
        .unwrap_or(false);
    if !ci && skip {
        eprintln!("\n*** {test}: SKIPPED: {missing:?} missing and DOORWARD_SKIP_BROWSER=1 ***\n");
        return false;
    }
    panic!(
        "{test}: {missing:?} missing. Install them (`apt-get install -y chromium \
         chromium-driver`; ./scripts/test does it), or set DOORWARD_SKIP_BROWSER=1 to skip \
         outside CI"
    );
}

/// chromedriver on a free port, and a headless Chromium session with a phone-sized window.
struct Browser {
    driver: Child,
    c: Client,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < CEILING, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={WIDTH},{HEIGHT}")],
                "mobileEmulation": {"deviceMetrics": {"width": WIDTH, "height": HEIGHT, "pixelRatio": 1.0}},
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { driver, c, shots }
    }

    async fn shot(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs `script` (with `arguments[0]` = `arg`) in the page.
    async fn js(&self, script: &str, arg: &str) -> Value {
        self.c.execute(script, vec![json!(arg)]).await.unwrap()
    }

    /// The text of the first element `css` selects ("" when none).
    async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            css,
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    /// Waits until the text of `css` contains `want`; returns it.
    async fn until_text(&self, css: &str, want: &str, within: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.text(css).await;
            if t.contains(want) {
                return t;
            }
            assert!(
                t0.elapsed() < within,
                "{css} did not show {want:?} within {within:?}; it shows {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `#conn` (the connection banner) is shown (`true`) or hidden.
    async fn until_banner(&self, shown: bool, within: Duration) {
        let t0 = Instant::now();
        loop {
            let v = self
                .js(
                    "const e = document.querySelector(arguments[0]); return !!e && !e.hidden \
                     && document.body.classList.contains('stale');",
                    "#conn",
                )
                .await;
            if v.as_bool() == Some(shown) {
                return;
            }
            assert!(
                t0.elapsed() < within,
                "banner shown={shown} not within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn login(&self, base: &str, email: &str) {
        self.c.goto(&format!("{base}/login")).await.unwrap();
        self.c
            .find(Locator::Css("#email"))
            .await
            .unwrap()
            .send_keys(email)
            .await
            .unwrap();
        self.c
            .find(Locator::Css("#password"))
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
    }

    async fn until_path(&self, path: &str) {
        let t0 = Instant::now();
        while self.c.current_url().await.unwrap().path() != path {
            if t0.elapsed() > CEILING {
                let at = self.c.current_url().await.unwrap();
                let body = self.text("body").await;
                panic!("the browser did not reach {path}: it is at {at}, showing {body:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Starts the tenant's lock and camera (someone in view) and waits until the lock's report
/// is evidence.
async fn devices(s: &ApiServer, t: &Tenant) -> (common::LockDev, common::CameraDev) {
    let home = t.common_home();
    let lock = common::LockDev::start(&s.mqtt, &home).await;
    let cam = common::CameraDev::start(&s.mqtt, &home, true).await;
    until(CEILING, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    let hp = format!("/api/homes/{}", t.home);
    let owner = t.homeowner();
    until(CEILING, "the lock's report is evidence", || {
        let (owner, hp) = (&owner, hp.clone());
        async move {
            let st = s.call("GET", &hp, owner, None).await;
            st.json["doors"][0]["lock"]["evidence"].is_object()
        }
    })
    .await;
    (lock, cam)
}

/// Waits until the server holds at least `n` footage rows of the tenant's delivery whose
/// frames the camera kept; returns them with their frames.
async fn delivery_segments(
    s: &ApiServer,
    t: &Tenant,
    cam: &common::CameraDev,
    n: usize,
) -> Vec<(u64, Vec<Vec<u8>>)> {
    let t0 = Instant::now();
    loop {
        let query = FootageQuery {
            delivery: Some(t.delivery.clone()),
            ..FootageQuery::all()
        };
        let rows = s.handle.footage_list(&t.home, query, 1_000).await.unwrap();
        let kept = cam.segments.lock().unwrap().clone();
        let both: Vec<(u64, Vec<Vec<u8>>)> = rows
            .iter()
            .filter_map(|r| kept.iter().find(|(q, _)| *q == r.seq).cloned())
            .collect();
        if both.len() >= n {
            return both;
        }
        assert!(
            t0.elapsed() < CEILING,
            "only {} segments of delivery {} proved with frames within {CEILING:?}",
            both.len(),
            t.delivery
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads one segment's frames as the camera agent does: `PUT
/// /api/devices/{camera}/segments/{seq}` signed by the camera key (docs/PROTOCOL.md §18).
async fn upload_segment(s: &ApiServer, t: &Tenant, seq: u64, frames: &[Vec<u8>]) -> u16 {
    let body = frames.concat();
    let now = wall_ms();
    let sig = sign_upload(&t.cam_key, &t.cam_id, seq, now, &body);
    let mut c = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let head = format!(
        "PUT /api/devices/{}/segments/{seq} HTTP/1.0\r\nHost: test\r\n\
         Content-Type: application/octet-stream\r\nDoorward-Timestamp: {now}\r\n\
         Doorward-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        t.cam_id,
        hex::encode(sig.0),
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(CEILING, c.read_to_end(&mut answer))
        .await
        .expect("an answer to the upload")
        .unwrap();
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The scripted lock applies revocation `epoch` and says so in a signed report, as a real
/// lock does (`EpochApplied`).
async fn lock_applies_epoch(lock: &common::LockDev, key: &KeyPair, epoch: u64) {
    let bytes = {
        let mut st = lock.state.lock().unwrap();
        st.seq += 1;
        Envelope::signed(
            Body::LockReport(LockReport {
                lock: lock.id.clone(),
                seq: st.seq,
                mono_ms: st.t0.elapsed().as_millis() as u64 + 1_000,
                bolt: st.bolt,
                door: st.door,
                battery_pct: 90,
                epoch,
                event: LockEvent::EpochApplied,
                cycle: st.cycle,
            }),
            key,
        )
        .to_bytes()
    };
    lock.conn_up
        .publish(lock.up.clone(), rumqttc::QoS::AtLeastOnce, false, bytes)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn homeowner_web_app_in_chromium() {
    if !browser_or_skip("homeowner_web_app_in_chromium") {
        return;
    }
    let s = std::sync::Arc::new(ApiServer::start(ApiSettings::default()).await);
    let base = format!("http://{}", s.http);
    let b = Browser::start().await;

    // 1. Log in.
    let mut a = tenant(&s, "wa").await;
    b.login(&base, &a.email).await;
    b.shot("01-login").await;
    b.click("#sign-in").await;
    b.until_path(&format!("/homes/{}", a.home)).await;
    b.until_text("#main h1", "Home", CEILING).await;

    // 2. A delivery appears live (no reload): the driver asks, the door unlocks.
    let (lock, cam) = devices(&s, &a).await;
    b.until_text("#lock-0 .basis", "confirmed by the lock", CEILING)
        .await;
    b.until_text("#camera-0 .value", "Recording", CEILING).await;
    let marker = b.js("window.__same_page = 1; return 1;", "").await.as_i64();
    assert_eq!(marker, Some(1));
    let dp = format!("/api/driver/deliveries/{}", a.delivery);
    s.call("POST", &format!("{dp}/arrive"), &a.driver_auth(), None)
        .await
        .expect(200);
    let body = entry_body(&mut a, &lock);
    let e = s
        .call(
            "POST",
            &format!("{dp}/entry"),
            &a.driver_auth(),
            Some(&body),
        )
        .await
        .expect(200);
    assert_eq!(e.json["decision"], "authorised", "{}", e.text());
    b.until_text(
        "#delivery-0",
        &format!("Delivery {} · door unlocked for the entry", a.delivery),
        CEILING,
    )
    .await;
    b.until_text("#lock-0 .value", "Unlocked", CEILING).await;
    let same = b.js("return window.__same_page === 1;", "").await;
    assert_eq!(same, json!(true), "the page was reloaded");
    let dash = b.shot("02-delivery-live").await;
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(&dash, docs.join("dashboard.png")).unwrap();
    // The camera has proved some of the entry's footage before it falls silent.
    let footage = delivery_segments(&s, &a, &cam, 2).await;

    // 3. The camera falls silent mid-entry (no disconnect): the alarm and UNKNOWN within 5 s.
    let t0 = Instant::now();
    cam.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    b.until_text("#alarms-live", "Alarm: witness lost", FIVE_S)
        .await;
    // The camera's card turns UNKNOWN, and so does the lock's: an entry nobody witnesses
    // proves no door state (the core's view, I5).
    b.until_text("#camera-0 .value", "UNKNOWN", FIVE_S).await;
    b.until_text("#lock-0 .value", "UNKNOWN", FIVE_S).await;
    assert!(t0.elapsed() < FIVE_S, "{:?}", t0.elapsed());
    let basis = b.text("#camera-0 .basis").await;
    assert!(basis.contains("last confirmed"), "{basis}");
    let lock_basis = b.text("#lock-0 .basis").await;
    assert!(lock_basis.contains("last confirmed"), "{lock_basis}");
    let action = b.text("#alarms-live .alarm .action").await;
    assert!(action.contains("What to do"), "{action}");
    b.js(
        "document.getElementById(arguments[0]).scrollIntoView(); return 1;",
        "lock-0",
    )
    .await;
    b.shot("03-camera-silenced").await;

    // 4. The live connection goes silent: "connection lost — states unknown", greyed cards;
    //    back when it returns.
    b.until_banner(false, CEILING).await;
    s.handle.cut_live_connections(true);
    b.until_banner(true, FIVE_S).await;
    assert_eq!(
        b.text("#conn").await.trim(),
        "connection lost — states unknown"
    );
    b.shot("04-connection-lost").await;
    s.handle.cut_live_connections(false);
    b.until_banner(false, CEILING).await;

    // 4b. The entry in the timeline: its footage, uploaded signed by the camera, plays frame
    //     by frame; its record carries a verification mark.
    for (seq, frames) in &footage {
        let code = upload_segment(&s, &a, *seq, frames).await;
        assert!(
            code == 201 || code == 200,
            "upload of segment {seq}: {code}"
        );
    }
    let n_frames: usize = footage.iter().map(|(_, f)| f.len()).sum();
    let entry = format!("li.entry[data-delivery='{}']", a.delivery);
    let img = format!("{entry} figure.clip img.frame");
    let entries_url = format!("{base}/homes/{}/entries", a.home);
    b.c.goto(&entries_url).await.unwrap();
    // The mark turns to "verifies" once a signed checkpoint covers the entry (every second).
    let t1 = Instant::now();
    loop {
        let mark = b
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.dataset.mark : '';",
                &format!("{entry} .mark"),
            )
            .await;
        if mark == json!("ok") {
            break;
        }
        assert!(
            mark == json!("pending") && t1.elapsed() < CEILING,
            "the entry's mark is {mark} after {:?}",
            t1.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.c.goto(&entries_url).await.unwrap();
    }
    let mark = b.text(&format!("{entry} .mark")).await;
    assert!(mark.contains("Record verifies"), "{mark}");
    // A frame is shown: a decoded 64×48 picture from this server's footage route, the
    // player's `want`-th (frames of every uploaded segment, in order).
    let srcs = b
        .js(
            "return document.querySelector(arguments[0]).dataset.srcs;",
            &format!("{entry} figure.clip"),
        )
        .await;
    let srcs: Vec<String> = srcs
        .as_str()
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(srcs.len(), n_frames, "{srcs:?}");
    let shown = "const i = document.querySelector(arguments[0]); \
                 return i && i.complete ? [i.naturalWidth, i.naturalHeight, i.getAttribute('src')] : null;";
    let until_frame = |want: usize| {
        let (b, img, src) = (&b, img.clone(), srcs[want].clone());
        async move {
            let t0 = Instant::now();
            loop {
                let v = b.js(shown, &img).await;
                if v == json!([64, 48, src]) {
                    return src;
                }
                assert!(
                    t0.elapsed() < CEILING,
                    "frame {want} ({src}) not shown: {v}"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    let first = until_frame(0).await;
    let counter = b.text(&format!("{entry} .counter")).await;
    assert!(
        counter.contains(&format!("Frame 1 of {n_frames}")),
        "{counter} (uploaded {n_frames} frames)"
    );
    b.click(&format!("{entry} button.next")).await;
    let second = until_frame(1).await;
    b.until_text(&format!("{entry} .counter"), "Frame 2 of", CEILING)
        .await;
    let shot = b.shot("04b-entry-footage").await;
    std::fs::copy(&shot, docs.join("entry.png")).unwrap();
    // The route answers the owner with the frame's PNG, whose pixels are the camera's.
    let png = s
        .call("GET", &first, &a.homeowner(), None)
        .await
        .expect(200);
    assert_eq!(png.headers["content-type"], "image/png");
    assert_eq!(&png.body[..8], b"\x89PNG\r\n\x1a\n");
    let row0 = &footage[0].1[0];
    assert!(
        png.body.windows(64).any(|w| w == &row0[..64]),
        "the PNG holds the frame's first row"
    );
    drop((lock, cam));

    // 5. A live request, approved in the page before its deadline.
    let mut t = tenant(&s, "wb").await;
    // Another homeowner cannot read the first one's frames (I11): not found, like nothing.
    for path in [&first, &second] {
        s.call("GET", path, &t.homeowner(), None).await.expect(404);
        let anon = s.call("GET", path, &Cred::None, None).await;
        assert_eq!(anon.status, 303, "{}", anon.text());
        assert_eq!(anon.headers["location"], "/login");
    }
    b.click("form.logout button").await;
    b.until_path("/login").await;
    b.login(&base, &t.email).await;
    b.click("#sign-in").await;
    b.until_path(&format!("/homes/{}", t.home)).await;
    b.c.goto(&format!("{base}/homes/{}/access", t.home))
        .await
        .unwrap();
    b.click("#live_approval").await;
    b.click("#save-policy").await;
    b.until_text("#saved", "Rules saved", CEILING).await;
    let pol = s
        .call(
            "GET",
            &format!("/api/homes/{}/policy", t.home),
            &t.homeowner(),
            None,
        )
        .await
        .expect(200);
    assert_eq!(pol.json["live_approval"], true);
    b.c.goto(&format!("{base}/homes/{}", t.home)).await.unwrap();
    let (lock, cam) = devices(&s, &t).await;
    let body = entry_body(&mut t, &lock);
    let path = format!("/api/driver/deliveries/{}/entry", t.delivery);
    let (s2, drv) = (s.clone(), t.driver_auth());
    let pending = tokio::spawn(async move { s2.call("POST", &path, &drv, Some(&body)).await });
    b.until_text("#approvals-live", &t.delivery.to_string(), CEILING)
        .await;
    b.until_text("#approvals-live .countdown", "Answer within", CEILING)
        .await;
    b.shot("05-approval").await;
    b.click("#approvals-live .approval button.approve").await;
    let e = tokio::time::timeout(CEILING, pending)
        .await
        .expect("the driver is answered")
        .unwrap();
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json["decision"], "authorised");
    drop((lock, cam));

    // 6. A carrier revoked in the page: its next request is denied.
    let mut r = tenant(&s, "wc").await;
    b.click("form.logout button").await;
    b.until_path("/login").await;
    b.login(&base, &r.email).await;
    b.click("#sign-in").await;
    b.until_path(&format!("/homes/{}", r.home)).await;
    let (lock, _cam) = devices(&s, &r).await;
    // A delivery called off in the page before anybody is let in.
    let called_off = create_delivery(
        &s,
        &r.carrier_auth(),
        &r.home,
        &r.lock_id,
        Some(&r.driver_id),
    )
    .await
    .to_string();
    b.c.goto(&format!("{base}/homes/{}/entries", r.home))
        .await
        .unwrap();
    b.until_text("#upcoming", &called_off, CEILING).await;
    b.click(&format!(
        "#upcoming li[data-delivery='{called_off}'] button"
    ))
    .await;
    b.until_text("#timeline", "called off before anybody was let in", CEILING)
        .await;
    assert!(!b.text("#upcoming").await.contains(&called_off));
    let phase = s
        .call(
            "GET",
            &format!("/api/carrier/deliveries/{called_off}"),
            &r.carrier_auth(),
            None,
        )
        .await
        .expect(200);
    assert_eq!(phase.json["phase"], "cancelled");
    b.shot("06a-delivery-called-off").await;
    b.c.goto(&format!("{base}/homes/{}/access", r.home))
        .await
        .unwrap();
    b.click(&format!("#carrier-{} button", r.carrier)).await;
    b.until_text(
        "#revoked",
        &format!("Revoked carrier {}", r.carrier),
        CEILING,
    )
    .await;
    // Until the lock confirms the new epoch, the page says so; once its signed report holds
    // it, the page (which keeps asking) says when the revocation reached the lock.
    b.until_text("#revocations", "not yet confirmed by the lock", CEILING)
        .await;
    let revs = s
        .call(
            "GET",
            &format!("/api/homes/{}/revocations", r.home),
            &r.homeowner(),
            None,
        )
        .await
        .expect(200);
    let last = revs.json["revocations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["items"], json!([{"carrier": r.carrier.as_str()}]));
    assert_eq!(last["acks"], json!([]));
    let epoch = last["epoch"].as_u64().unwrap();
    lock_applies_epoch(&lock, &r.lock_key, epoch).await;
    let shown = b
        .until_text(
            "#revocations",
            &format!("Reached lock {} at", r.lock_id),
            CEILING,
        )
        .await;
    assert!(shown.contains(&format!("holds epoch {epoch}")), "{shown}");
    assert!(!shown.contains("not yet confirmed"), "{shown}");
    b.js(
        "document.getElementById(arguments[0]).scrollIntoView(); return 1;",
        "revocations",
    )
    .await;
    b.shot("06-revoked").await;
    let body = entry_body(&mut r, &lock);
    let e = s
        .call(
            "POST",
            &format!("/api/driver/deliveries/{}/entry", r.delivery),
            &r.driver_auth(),
            Some(&body),
        )
        .await;
    assert_eq!(e.status, 403, "{}", e.text());
    assert_eq!(e.json["decision"], "denied", "{}", e.text());
    b.c.goto(&format!("{base}/homes/{}/entries", r.home))
        .await
        .unwrap();
    b.until_text("#timeline", "denied", CEILING).await;
    b.shot("07-denied-after-revoke").await;

    // 6b. A guest with a weekly schedule (every day, 00:00–23:59 UTC): added in the page,
    //     listed with their visits, then revoked.
    let guest = KeyPair::generate(&mut r.rng);
    b.c.goto(&format!("{base}/homes/{}/access", r.home))
        .await
        .unwrap();
    for (css, text) in [
        ("#g-name", "Gwen"),
        ("#g-key", &guest.public().to_hex()[..]),
    ] {
        b.c.find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    b.click("#g-weekly").await;
    for d in 0..7 {
        b.click(&format!("#g-day{d}")).await;
    }
    b.js(
        "document.getElementById('g-daily-start').value = '00:00'; \
          document.getElementById('g-daily-end').value = '23:59'; return 1;",
        "",
    )
    .await;
    b.click("#add-guest").await;
    b.until_text("#guest-added", "Guest Gwen added", CEILING)
        .await;
    let listed = b.until_text("#guests", "Gwen", CEILING).await;
    assert!(listed.contains("active"), "{listed}");
    let visits = b
        .js(
            "return document.querySelectorAll('#guests .visits li').length;",
            "",
        )
        .await;
    let api = s
        .call(
            "GET",
            &format!("/api/homes/{}/guests", r.home),
            &r.homeowner(),
            None,
        )
        .await
        .expect(200);
    let g = &api.json["guests"][0];
    assert_eq!(g["name"], "Gwen");
    assert_eq!(g["key"], guest.public().to_hex());
    let n = g["visits"].as_array().unwrap().len();
    assert!(n >= 1, "{api:?}");
    assert_eq!(visits, json!(n), "the page lists every visit");
    b.js(
        "document.getElementById(arguments[0]).scrollIntoView(); return 1;",
        "guests",
    )
    .await;
    b.shot("06b-guest-added").await;
    b.click("#guests li.guest form button.deny").await;
    b.until_text("#revoked", "Revoked guest Gwen", CEILING)
        .await;
    let listed = b.until_text("#guests", "revoked", CEILING).await;
    assert!(!listed.contains("active"), "{listed}");
    let revs = b
        .until_text("#revocations", &guest.public().to_hex()[..16], CEILING)
        .await;
    assert!(revs.contains("not yet confirmed by the lock"), "{revs}");
    b.js(
        "document.getElementById(arguments[0]).scrollIntoView(); return 1;",
        "revocations",
    )
    .await;
    b.shot("06c-guest-revoked").await;

    // 7. The record verifies in the page.
    b.c.goto(&format!("{base}/homes/{}/record", r.home))
        .await
        .unwrap();
    b.click("#verify").await;
    // The page's verdict is `doorward audit verify`'s on the same record. An export ends at
    // the last signed checkpoint, so an intact live record verifies, however recent its
    // newest entries.
    let shown = b.until_text("#verdict", "Verified: ", CEILING).await;
    assert!(!shown.contains("NOT"), "{shown}");
    let export = s
        .call(
            "GET",
            &format!("/api/homes/{}/audit", r.home),
            &r.homeowner(),
            None,
        )
        .await
        .expect(200);
    let v = doorward_control::audit::verify_export(&export.body[..], None)
        .unwrap_or_else(|e| panic!("the record exported after the page's verdict: {e}"));
    assert!(v.entries > 0 && v.checkpoints > 0, "{v:?}");
    b.shot("08-record-verified").await;

    let Browser { .. } = b;
}
