//! The HTTP API's happy paths for each kind of user, through real HTTP against a real server
//! (SQLite, the embedded broker, scripted devices), and its clear refusals: wrong password,
//! expired session, bad, stale or replayed driver signature, oversized body, login rate
//! limit.

mod apikit;
mod common;

use std::time::Duration;

use apikit::*;
use doorward_proto::*;
use doorward_server::api::accounts::LOGIN_MAX_PER_ACCOUNT;
use doorward_server::api::auth::{driver_request_message, DRIVER_REQUEST_CONTEXT};
use doorward_server::ApiSettings;
use serde_json::json;

fn signup_on() -> ApiSettings {
    ApiSettings {
        allow_signup: true,
        ..ApiSettings::default()
    }
}

/// A homeowner signs up, logs in (cookie and bearer), adds a home, reads its state, devices
/// and carriers, sets a policy, opts a carrier in and out, revokes a driver key, adds a
/// webhook, exports the audit record (which verifies offline), and logs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn homeowner_happy_path() {
    let s = ApiServer::start(signup_on()).await;
    let email = "Ann@Example.org";
    let r = s
        .call(
            "POST",
            "/api/accounts",
            &Cred::None,
            Some(&json!({"email": email, "password": PASSWORD})),
        )
        .await
        .expect(201);
    let account = r.json["account"].as_str().unwrap().to_owned();
    s.call(
        "POST",
        "/api/accounts",
        &Cred::None,
        Some(&json!({"email": "ann@example.org", "password": PASSWORD})),
    )
    .await
    .expect_error(409, "conflict");

    let r = s
        .call(
            "POST",
            "/api/login",
            &Cred::None,
            Some(&json!({"email": email, "password": PASSWORD})),
        )
        .await
        .expect(200);
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("dws_"));
    assert!(
        cookie.starts_with(&format!("dw_session={token}")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"), "not behind https: {cookie}");
    let owner = Cred::Cookie(token.clone());
    let me = s.call("GET", "/api/me", &owner, None).await.expect(200);
    assert_eq!(me.json["account"], account.as_str());
    assert_eq!(me.json["email"], "ann@example.org");
    let me = s
        .call("GET", "/api/me", &Cred::Bearer(token.clone()), None)
        .await
        .expect(200);
    assert_eq!(me.json["account"], account.as_str());

    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    let root = KeyPair::generate(&mut rng);
    let (home, events_token) = add_home(&s, &owner, &root).await;
    assert!(!events_token.is_empty());
    let homes = s.call("GET", "/api/homes", &owner, None).await.expect(200);
    assert_eq!(homes.json["homes"][0]["home"], home.as_str());

    let (lock, cam) = (id("lock-h1"), id("cam-h1"));
    s.handle
        .pair_door(
            home.clone(),
            doorward_control::DoorSetup {
                lock: lock.clone(),
                lock_key: KeyPair::generate(&mut rng).public(),
                camera: cam.clone(),
                camera_key: KeyPair::generate(&mut rng).public(),
                kind: doorward_control::DoorKind::Front,
            },
        )
        .await
        .unwrap();
    let st = s
        .call("GET", &format!("/api/homes/{home}"), &owner, None)
        .await
        .expect(200);
    let door = &st.json["doors"][0];
    assert_eq!(door["lock_id"], lock.as_str());
    // No report yet: unknown, never "locked" (I5).
    assert_eq!(door["lock"]["shown"]["known"], false, "{door}");
    assert_eq!(door["lock"]["evidence"], serde_json::Value::Null);
    let dev = s
        .call("GET", &format!("/api/homes/{home}/devices"), &owner, None)
        .await
        .expect(200);
    assert_eq!(dev.json["devices"].as_array().unwrap().len(), 2);

    let policy = json!({"windows": [{"start_min": 480, "end_min": 1080}], "garage_only": false, "vacation": true, "live_approval": true});
    let p = s
        .call(
            "PUT",
            &format!("/api/homes/{home}/policy"),
            &owner,
            Some(&policy),
        )
        .await
        .expect(200);
    assert_eq!(p.json, policy);
    let p = s
        .call("GET", &format!("/api/homes/{home}/policy"), &owner, None)
        .await
        .expect(200);
    assert_eq!(p.json, policy);
    s.call(
        "PUT",
        &format!("/api/homes/{home}/policy"),
        &owner,
        Some(&json!({"windows": [{"start_min": 900, "end_min": 100}]})),
    )
    .await
    .expect_error(422, "refused");

    let (carrier, _) = s.handle.create_carrier("Parcels").await.unwrap();
    let dir = s
        .call("GET", "/api/carriers", &owner, None)
        .await
        .expect(200);
    assert_eq!(dir.json["carriers"][0]["id"], carrier.as_str());
    s.call(
        "PUT",
        &format!("/api/homes/{home}/carriers/{carrier}"),
        &owner,
        None,
    )
    .await
    .expect(200);
    s.call(
        "PUT",
        &format!("/api/homes/{home}/carriers/c-unknown"),
        &owner,
        None,
    )
    .await
    .expect_error(404, "not_found");
    let cs = s
        .call("GET", &format!("/api/homes/{home}/carriers"), &owner, None)
        .await
        .expect(200);
    assert_eq!(cs.json["carriers"][0]["opted_in"], true);
    let epoch0 = st.json["epoch"].as_u64().unwrap();
    let out = s
        .call(
            "DELETE",
            &format!("/api/homes/{home}/carriers/{carrier}"),
            &owner,
            None,
        )
        .await
        .expect(200);
    assert_eq!(out.json["opted_in"], false);
    let cs = s
        .call("GET", &format!("/api/homes/{home}/carriers"), &owner, None)
        .await
        .expect(200);
    assert_eq!(cs.json["carriers"][0]["opted_in"], false);
    let rv = s
        .call(
            "POST",
            &format!("/api/homes/{home}/revocations"),
            &owner,
            Some(&json!({"driver": KeyPair::generate(&mut rng).public().to_hex()})),
        )
        .await
        .expect(200);
    assert_eq!(
        rv.json["epoch"].as_u64().unwrap(),
        epoch0 + 2,
        "opt-out and the driver revocation each bump the epoch"
    );
    s.call(
        "POST",
        &format!("/api/homes/{home}/revocations"),
        &owner,
        Some(&json!({})),
    )
    .await
    .expect_error(400, "bad_request");
    s.call(
        "POST",
        &format!("/api/homes/{home}/webhooks"),
        &owner,
        Some(&json!({"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})),
    )
    .await
    .expect(201);

    // The record verifies once a checkpoint covers its end (signed within the audit
    // tick); an export taken before that ends in an uncovered tail.
    let server_key = s.server.as_ref().unwrap().server_key();
    let t0 = std::time::Instant::now();
    let report = loop {
        let audit = s
            .call("GET", &format!("/api/homes/{home}/audit"), &owner, None)
            .await
            .expect(200);
        assert_eq!(audit.headers["content-type"], "application/octet-stream");
        match doorward_control::audit::verify_export(&audit.body[..], Some(&server_key)) {
            Ok(r) => break r,
            Err(e) => assert!(t0.elapsed() < CEILING, "the export does not verify: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(report.entries >= 5, "{report:?}");

    s.call("POST", "/api/logout", &owner, None)
        .await
        .expect(204);
    s.call("GET", "/api/me", &owner, None)
        .await
        .expect_error(401, "unauthenticated");
    s.stop().await;
}

/// Signup is off unless the server is told otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signup_is_off_by_default() {
    let s = ApiServer::start(ApiSettings::default()).await;
    s.call(
        "POST",
        "/api/accounts",
        &Cred::None,
        Some(&json!({"email": "x@example.org", "password": PASSWORD})),
    )
    .await
    .expect_error(403, "signup_disabled");
    s.stop().await;
}

/// A one-time login link sets the session cookie, redirects to `/`, and works once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_link_is_single_use() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let account = s
        .handle
        .create_homeowner("demo@example.org", PASSWORD)
        .await
        .unwrap();
    let path = s.handle.login_link(&account).await.unwrap();
    assert!(path.starts_with("/api/login-links/dwl_"), "{path}");
    let r = s.call("GET", &path, &Cred::None, None).await.expect(303);
    assert_eq!(r.headers["location"], "/");
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    let token = cookie
        .strip_prefix("dw_session=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let me = s
        .call("GET", "/api/me", &Cred::Cookie(token), None)
        .await
        .expect(200);
    assert_eq!(me.json["account"], account.as_str());
    s.call("GET", &path, &Cred::None, None)
        .await
        .expect_error(401, "bad_login_link");
    s.stop().await;
}

/// A carrier registers a driver, is refused a delivery where it is not opted in, creates
/// one where it is, assigns the driver; the driver arrives, asks to enter with the lock's
/// nonce (real lock and camera over MQTT) and is authorised; the carrier reads the phase;
/// the homeowner sees the entry and the delivery; the driver finishes and is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carrier_and_driver_happy_path() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let mut t = tenant(&s, "a").await;
    let carrier = t.carrier_auth();
    // A second home that never opted this carrier in.
    let other_owner = s
        .handle
        .create_homeowner("other@example.org", PASSWORD)
        .await
        .unwrap();
    let _ = other_owner;
    let other_session = login(&s, "other@example.org", PASSWORD).await;
    let root = KeyPair::generate(&mut t.rng);
    let (other_home, _) = add_home(&s, &Cred::Cookie(other_session), &root).await;
    let now = wall_ms();
    s.call(
        "POST",
        "/api/carrier/deliveries",
        &carrier,
        Some(&json!({"home": other_home.as_str(), "lock": "lock-x", "not_before_ms": now, "not_after_ms": now + 60_000})),
    )
    .await
    .expect_error(403, "carrier_not_opted_in");

    let drivers = s
        .call("GET", "/api/carrier/drivers", &carrier, None)
        .await
        .expect(200);
    assert_eq!(drivers.json["drivers"][0]["driver"], t.driver_id.as_str());
    s.call(
        "POST",
        "/api/carrier/drivers",
        &carrier,
        Some(&json!({"name": "again", "key": t.driver.public().to_hex()})),
    )
    .await
    .expect_error(409, "refused");
    let list = s
        .call("GET", "/api/carrier/deliveries", &carrier, None)
        .await
        .expect(200);
    assert_eq!(list.json["deliveries"][0]["delivery"], t.delivery.as_str());

    let home = t.common_home();
    let lock = common::LockDev::start(&s.mqtt, &home).await;
    let cam = common::CameraDev::start(&s.mqtt, &home, true).await;
    until(CEILING, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    let owner = t.homeowner();
    let hp = format!("/api/homes/{}", t.home);
    until(CEILING, "the lock's report is evidence", || {
        let (s, owner, hp) = (&s, &owner, hp.clone());
        async move {
            let st = s.call("GET", &hp, owner, None).await;
            st.json["doors"][0]["lock"]["evidence"].is_object()
        }
    })
    .await;

    let dp = format!("/api/driver/deliveries/{}", t.delivery);
    let a = s
        .call("POST", &format!("{dp}/arrive"), &t.driver_auth(), None)
        .await
        .expect(200);
    assert_eq!(a.json["arrived"], true);
    let body = entry_body(&mut t, &lock);
    let e = s
        .call(
            "POST",
            &format!("{dp}/entry"),
            &t.driver_auth(),
            Some(&body),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json["decision"], "authorised");
    assert_eq!(e.json["grant"].as_str().unwrap().len(), 32);

    let cp = format!("/api/carrier/deliveries/{}", t.delivery);
    // Too late to call it off: somebody is being let in.
    s.call("POST", &format!("{cp}/cancel"), &carrier, None)
        .await
        .expect_error(409, "refused");
    until(CEILING, "the carrier sees the entry open", || {
        let (s, carrier, cp) = (&s, &carrier, cp.clone());
        async move {
            let d = s.call("GET", &cp, carrier, None).await;
            d.json["phase"] == "entry"
        }
    })
    .await;
    let d = s.call("GET", &cp, &carrier, None).await.expect(200);
    // The outcome only: no footage, no device state, no evidence.
    let keys: Vec<_> = d.json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "delivery",
            "driver",
            "home",
            "lock",
            "not_after_ms",
            "not_before_ms",
            "phase",
            "state"
        ]
    );
    let entries = s
        .call("GET", &format!("{hp}/entries"), &owner, None)
        .await
        .expect(200);
    let evs: Vec<_> = entries.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        evs.contains(&"requested".to_owned()) && evs.contains(&"authorised".to_owned()),
        "{evs:?}"
    );
    let dels = s
        .call("GET", &format!("{hp}/deliveries"), &owner, None)
        .await
        .expect(200);
    assert_eq!(dels.json["deliveries"][0]["phase"], "entry");

    let f = s
        .call("POST", &format!("{dp}/finish"), &t.driver_auth(), None)
        .await
        .expect(200);
    assert_eq!(f.json["finished"], true);
    s.call("POST", &format!("{dp}/arrive"), &t.driver_auth(), None)
        .await
        .expect_error(409, "finished");
    s.stop().await;
}

/// A carrier calls a delivery off before anybody is let in: it ends `cancelled` on the home's
/// record, the driver is turned away, and calling it off again answers 409. A delivery still
/// without a driver is called off the same way, and the homeowner can call one off too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_carrier_cancels_a_delivery_before_anybody_is_let_in() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let t = tenant(&s, "a").await;
    let carrier = t.carrier_auth();
    let cp = format!("/api/carrier/deliveries/{}", t.delivery);
    let c = s
        .call("POST", &format!("{cp}/cancel"), &carrier, None)
        .await
        .expect(200);
    assert_eq!(
        (&c.json["state"], &c.json["phase"]),
        (&json!("cancelled"), &json!("cancelled"))
    );
    until(CEILING, "the home's record says cancelled", || {
        let (s, carrier, cp) = (&s, &carrier, cp.clone());
        async move { s.call("GET", &cp, carrier, None).await.json["phase"] == "cancelled" }
    })
    .await;
    let dels = s
        .call(
            "GET",
            &format!("/api/homes/{}/deliveries", t.home),
            &t.homeowner(),
            None,
        )
        .await
        .expect(200);
    assert_eq!(dels.json["deliveries"][0]["phase"], "cancelled");
    let dp = format!("/api/driver/deliveries/{}", t.delivery);
    s.call("POST", &format!("{dp}/arrive"), &t.driver_auth(), None)
        .await
        .expect_error(409, "finished");
    s.call("POST", &format!("{cp}/cancel"), &carrier, None)
        .await
        .expect_error(409, "finished");

    let id = create_delivery(&s, &carrier, &t.home, &t.lock_id, None).await;
    let c = s
        .call(
            "POST",
            &format!("/api/carrier/deliveries/{id}/cancel"),
            &carrier,
            None,
        )
        .await
        .expect(200);
    assert_eq!(c.json["state"], "cancelled");
    s.call(
        "POST",
        &format!("/api/carrier/deliveries/{id}/assign"),
        &carrier,
        Some(&json!({"driver": t.driver_id})),
    )
    .await
    .expect_error(409, "finished");

    // The homeowner calls one off too: assigned, then cancelled from the home's side.
    let id = create_delivery(&s, &carrier, &t.home, &t.lock_id, Some(&t.driver_id)).await;
    let hc = format!("/api/homes/{}/deliveries/{id}/cancel", t.home);
    let c = s.call("POST", &hc, &t.homeowner(), None).await.expect(200);
    assert_eq!(c.json["state"], "cancelled");
    until(CEILING, "the carrier sees it cancelled", || {
        let (s, carrier, cp) = (&s, &carrier, format!("/api/carrier/deliveries/{id}"));
        async move { s.call("GET", &cp, carrier, None).await.json["phase"] == "cancelled" }
    })
    .await;
    s.call("POST", &hc, &t.homeowner(), None)
        .await
        .expect_error(409, "finished");
    s.stop().await;
}

/// A homeowner gives a guest a one-time visit now and a weekly schedule; the guest's phone
/// enters with signed requests like a driver's; a bad schedule is refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_access_with_schedules() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let mut t = tenant(&s, "g").await;
    let owner = t.homeowner();
    let hp = format!("/api/homes/{}", t.home);
    let guest = KeyPair::generate(&mut t.rng);
    let now = wall_ms();
    let g = s
        .call(
            "POST",
            &format!("{hp}/guests"),
            &owner,
            Some(&json!({"name": "Grandma", "key": guest.public().to_hex(), "lock": t.lock_id.as_str(),
                "schedule": {"kind": "once", "start_ms": now - 60_000, "end_ms": now + 3_600_000}})),
        )
        .await
        .expect(201);
    let visit = g.json["visits"][0]["delivery"].as_str().unwrap().to_owned();
    let weekly = KeyPair::generate(&mut t.rng);
    let w = s
        .call(
            "POST",
            &format!("{hp}/guests"),
            &owner,
            Some(&json!({"name": "Cleaner", "key": weekly.public().to_hex(), "lock": t.lock_id.as_str(),
                "schedule": {"kind": "weekly", "days": [0, 3], "start_min": 540, "end_min": 720}})),
        )
        .await
        .expect(201);
    let n = w.json["visits"].as_array().unwrap().len();
    assert!((3..=5).contains(&n), "two days a week for 14 days: {n}");
    s.call(
        "POST",
        &format!("{hp}/guests"),
        &owner,
        Some(&json!({"name": "Nobody", "key": KeyPair::generate(&mut t.rng).public().to_hex(), "lock": t.lock_id.as_str(),
            "schedule": {"kind": "weekly", "days": [9], "start_min": 540, "end_min": 720}})),
    )
    .await
    .expect_error(422, "bad_schedule");
    let list = s
        .call("GET", &format!("{hp}/guests"), &owner, None)
        .await
        .expect(200);
    assert_eq!(list.json["guests"].as_array().unwrap().len(), 2);

    let home = t.common_home();
    let lock = common::LockDev::start(&s.mqtt, &home).await;
    let cam = common::CameraDev::start(&s.mqtt, &home, true).await;
    until(CEILING, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    until(CEILING, "the lock's report is evidence", || {
        let (s, owner, hp) = (&s, &owner, hp.clone());
        async move {
            let st = s.call("GET", &hp, owner, None).await;
            st.json["doors"][0]["lock"]["evidence"].is_object()
        }
    })
    .await;
    let gp = format!("/api/driver/deliveries/{visit}");
    s.call(
        "POST",
        &format!("{gp}/arrive"),
        &Cred::Driver(guest.clone()),
        None,
    )
    .await
    .expect(200);
    let nonce = lock.nonce(&mut t.rng);
    let sig = guest.sign(
        DRIVER_NONCE_CONTEXT,
        &driver_nonce_message(&t.lock_id, &nonce.body.nonce),
    );
    let e = s
        .call(
            "POST",
            &format!("{gp}/entry"),
            &Cred::Driver(guest.clone()),
            Some(&json!({"nonce": hex::encode(codec::encode(&nonce)), "driver_sig": sig.to_hex()})),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json["decision"], "authorised");
    // The weekly guest cannot use the one-time guest's visit.
    s.call("POST", &format!("{gp}/arrive"), &Cred::Driver(weekly), None)
        .await
        .expect_error(404, "not_found");
    s.stop().await;
}

/// With live approval on, the entry waits for the homeowner, who lists it and approves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_approval_through_the_api() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let mut t = tenant(&s, "la").await;
    let owner = t.homeowner();
    let hp = format!("/api/homes/{}", t.home);
    s.call(
        "PUT",
        &format!("{hp}/policy"),
        &owner,
        Some(&json!({"live_approval": true})),
    )
    .await
    .expect(200);
    let home = t.common_home();
    let lock = common::LockDev::start(&s.mqtt, &home).await;
    let cam = common::CameraDev::start(&s.mqtt, &home, true).await;
    until(CEILING, "the camera proves at the entry pace", || {
        let n = cam.proofs_sent();
        async move { n >= 6 }
    })
    .await;
    until(CEILING, "the lock's report is evidence", || {
        let (s, owner, hp) = (&s, &owner, hp.clone());
        async move {
            let st = s.call("GET", &hp, owner, None).await;
            st.json["doors"][0]["lock"]["evidence"].is_object()
        }
    })
    .await;
    let body = entry_body(&mut t, &lock);
    let path = format!("/api/driver/deliveries/{}/entry", t.delivery);
    let drv = t.driver_auth();
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    let pending = tokio::spawn(async move { s2.call("POST", &path, &drv, Some(&body)).await });
    let t0 = std::time::Instant::now();
    let request = loop {
        let a = s
            .call("GET", &format!("{hp}/approvals"), &owner, None)
            .await;
        if let Some(n) = a.json["approvals"][0]["request"].as_u64() {
            assert_eq!(a.json["approvals"][0]["delivery"], t.delivery.as_str());
            break n;
        }
        assert!(t0.elapsed() < CEILING, "no approval request listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.call(
        "POST",
        &format!("{hp}/approvals/{request}/approve"),
        &owner,
        None,
    )
    .await
    .expect(200);
    let e = pending.await.unwrap();
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json["decision"], "authorised");
    // Answered once: a second answer finds nothing open.
    s.call(
        "POST",
        &format!("{hp}/approvals/{request}/deny"),
        &owner,
        None,
    )
    .await
    .expect_error(404, "not_found");
}

/// A forged lock report raises an alarm; the homeowner lists it with its evidence and
/// acknowledges it; it is then no longer open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alarms_are_listed_and_acknowledged() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let mut t = tenant(&s, "al").await;
    let owner = t.homeowner();
    let hp = format!("/api/homes/{}", t.home);
    forge_report(&s, &mut t).await;
    let t0 = std::time::Instant::now();
    let alarm = loop {
        let r = s.call("GET", &format!("{hp}/alarms"), &owner, None).await;
        if let Some(x) = r.json["alarms"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["kind"] == "forged_report"))
        {
            assert_eq!(x["open"], true, "{x}");
            assert!(x["action"].is_string(), "{x}");
            break x["id"].as_u64().unwrap();
        }
        assert!(t0.elapsed() < CEILING, "the forged report was not alarmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.call("POST", &format!("{hp}/alarms/{alarm}/ack"), &owner, None)
        .await
        .expect(200);
    let r = s
        .call("GET", &format!("{hp}/alarms"), &owner, None)
        .await
        .expect(200);
    assert!(!r.json["open"].as_array().unwrap().contains(&json!(alarm)));
    s.call("POST", &format!("{hp}/alarms/{alarm}/ack"), &owner, None)
        .await
        .expect_error(404, "not_found");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_password_and_expired_session_are_401() {
    let s = ApiServer::start(ApiSettings {
        session_max_ms: 1_000,
        ..ApiSettings::default()
    })
    .await;
    s.handle
        .create_homeowner("bo@example.org", PASSWORD)
        .await
        .unwrap();
    s.call(
        "POST",
        "/api/login",
        &Cred::None,
        Some(&json!({"email": "bo@example.org", "password": "not the password"})),
    )
    .await
    .expect_error(401, "wrong_credentials");
    s.call(
        "POST",
        "/api/login",
        &Cred::None,
        Some(&json!({"email": "nobody@example.org", "password": PASSWORD})),
    )
    .await
    .expect_error(401, "wrong_credentials");
    let token = login(&s, "bo@example.org", PASSWORD).await;
    s.call("GET", "/api/me", &Cred::Cookie(token.clone()), None)
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    s.call("GET", "/api/me", &Cred::Cookie(token), None)
        .await
        .expect_error(401, "unauthenticated");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_session_is_401() {
    let s = ApiServer::start(ApiSettings {
        session_idle_ms: 800,
        ..ApiSettings::default()
    })
    .await;
    s.handle
        .create_homeowner("cy@example.org", PASSWORD)
        .await
        .unwrap();
    let token = login(&s, "cy@example.org", PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    s.call("GET", "/api/me", &Cred::Cookie(token), None)
        .await
        .expect_error(401, "unauthenticated");
    s.stop().await;
}

/// The sixth login attempt for one account within the window is 429 with Retry-After, even
/// with the right password; another account from the same address is not blocked yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_is_rate_limited() {
    let s = ApiServer::start(ApiSettings::default()).await;
    s.handle
        .create_homeowner("dee@example.org", PASSWORD)
        .await
        .unwrap();
    s.handle
        .create_homeowner("eve@example.org", PASSWORD)
        .await
        .unwrap();
    for _ in 0..LOGIN_MAX_PER_ACCOUNT {
        s.call(
            "POST",
            "/api/login",
            &Cred::None,
            Some(&json!({"email": "dee@example.org", "password": "guess guess guess"})),
        )
        .await
        .expect_error(401, "wrong_credentials");
    }
    let r = s
        .call(
            "POST",
            "/api/login",
            &Cred::None,
            Some(&json!({"email": "DEE@example.org", "password": PASSWORD})),
        )
        .await
        .expect_error(429, "rate_limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    login(&s, "eve@example.org", PASSWORD).await;
    s.stop().await;
}

/// Driver signatures: a flipped bit, a stale timestamp, a replay, an unknown key and a
/// missing header are each refused with a clear code; the honest request passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn driver_signatures_are_checked() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let t = tenant(&s, "sig").await;
    let path = format!("/api/driver/deliveries/{}/arrive", t.delivery);
    let sign = |ts: u64, body: &[u8]| {
        t.driver.sign(
            DRIVER_REQUEST_CONTEXT,
            &driver_request_message("POST", &path, ts, body),
        )
    };
    let key = t.driver.public();
    let now = wall_ms();
    let mut bad = sign(now, b"");
    bad.0[5] ^= 1;
    s.raw(
        "POST",
        &path,
        &Cred::DriverRaw {
            key,
            ts: now,
            sig: bad,
        },
        vec![],
        false,
    )
    .await
    .expect_error(401, "bad_signature");
    // Signed for another body.
    let other = sign(now, b"{}");
    s.raw(
        "POST",
        &path,
        &Cred::DriverRaw {
            key,
            ts: now,
            sig: other,
        },
        vec![],
        false,
    )
    .await
    .expect_error(401, "bad_signature");
    let stale = now - 120_000;
    s.raw(
        "POST",
        &path,
        &Cred::DriverRaw {
            key,
            ts: stale,
            sig: sign(stale, b""),
        },
        vec![],
        false,
    )
    .await
    .expect_error(401, "bad_signature");
    let unknown = KeyPair::from_seed(&[9; 32]);
    s.call("POST", &path, &Cred::Driver(unknown), None)
        .await
        .expect_error(401, "bad_signature");
    s.call("POST", &path, &Cred::None, None)
        .await
        .expect_error(401, "unauthenticated");
    let good = sign(now, b"");
    let honest = Cred::DriverRaw {
        key,
        ts: now,
        sig: good,
    };
    s.raw("POST", &path, &honest, vec![], false)
        .await
        .expect(200);
    s.raw("POST", &path, &honest, vec![], false)
        .await
        .expect_error(401, "replayed");
    s.stop().await;
}

/// A body over the limit is refused with 413 and a JSON error, for every kind of user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_body_is_413() {
    let s = ApiServer::start(signup_on()).await;
    let t = tenant(&s, "big").await;
    let big = vec![b' '; doorward_server::http::MAX_REQUEST_BODY_BYTES + 1];
    s.raw("POST", "/api/login", &Cred::None, big.clone(), true)
        .await
        .expect_error(413, "body_too_large");
    s.raw(
        "PUT",
        &format!("/api/homes/{}/policy", t.home),
        &t.homeowner(),
        big.clone(),
        true,
    )
    .await
    .expect_error(413, "body_too_large");
    s.raw(
        "POST",
        &format!("/api/driver/deliveries/{}/entry", t.delivery),
        &t.driver_auth(),
        big,
        true,
    )
    .await
    .expect_error(413, "body_too_large");
    s.stop().await;
}

use rand_chacha::rand_core::SeedableRng;
