//! The homeowner web app in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (fantoccini), against a real server (SQLite, the embedded broker) with
//! scripted devices that speak docs/PROTOCOL.md. One journey, each step within a ceiling,
//! each step's screenshot saved under target/screenshots/:
//! log in; a delivery appears live; the camera falls silent (no disconnect) and the alarm
//! and the camera card's UNKNOWN appear (5 s); the live connection goes silent and the page
//! says "connection lost"; a live request is approved; a carrier is revoked and its next
//! request is denied; the record verifies in the page.
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
use doorward_server::ApiSettings;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

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

    // 3. The camera falls silent mid-entry (no disconnect): the alarm and UNKNOWN within 5 s.
    let t0 = Instant::now();
    cam.silent.store(true, std::sync::atomic::Ordering::Relaxed);
    b.until_text("#alarms-live", "Alarm: witness lost", FIVE_S)
        .await;
    // The camera's card turns UNKNOWN; the lock's stays what the lock's own fresh signed
    // reports say (the core's view, I5), with its age.
    b.until_text("#camera-0 .value", "UNKNOWN", FIVE_S).await;
    assert!(t0.elapsed() < FIVE_S, "{:?}", t0.elapsed());
    let basis = b.text("#camera-0 .basis").await;
    assert!(basis.contains("last confirmed"), "{basis}");
    let action = b.text("#alarms-live .alarm .action").await;
    assert!(action.contains("What to do"), "{action}");
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
    drop((lock, cam));

    // 5. A live request, approved in the page before its deadline.
    let mut t = tenant(&s, "wb").await;
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
    b.c.goto(&format!("{base}/homes/{}/access", r.home))
        .await
        .unwrap();
    b.click(&format!("#carrier-{} button", r.carrier)).await;
    b.until_text("#revoked", &format!("Revoked {}", r.carrier), CEILING)
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

    // 7. The record verifies in the page.
    b.c.goto(&format!("{base}/homes/{}/record", r.home))
        .await
        .unwrap();
    b.click("#verify").await;
    // The page's verdict is `doorward audit verify`'s on the same record (the newest entries
    // may not be covered by a signed checkpoint yet, which both report alike).
    let shown = b.until_text("#verdict", "ERIFIED", CEILING).await;
    let export = s
        .call(
            "GET",
            &format!("/api/homes/{}/audit", r.home),
            &r.homeowner(),
            None,
        )
        .await
        .expect(200);
    match doorward_control::audit::verify_export(&export.body[..], None) {
        Ok(v) => assert!(
            shown.contains(&format!("Verified: {} entries", v.entries))
                || shown.contains("Verified:"),
            "{shown}"
        ),
        Err(e) => {
            let i = e.index().expect("past the header");
            assert!(
                shown.contains("NOT VERIFIED") && shown.contains(&format!("First bad entry: {i}")),
                "page: {shown}; offline: {e}"
            );
        }
    }
    b.shot("08-record-verified").await;

    let Browser { .. } = b;
}
