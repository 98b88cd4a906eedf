//! I11, the tenancy matrix: two homeowners with a home each, two carriers (each opted in at
//! one of the homes) with a driver each and a delivery each, and nobody. Every route the
//! router serves is tried by every principal against every other tenant's resources (in the
//! path and in the body); none may succeed. Routes that name no resource are tried by every
//! principal, and whatever they answer must not name another tenant's home, delivery, driver,
//! lock or account. Each principal's own resources answer, so the zero is not an artefact of
//! broken credentials.

mod apikit;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use apikit::*;
use doorward_proto::*;
use doorward_server::ApiSettings;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    Owner(usize),
    Carrier(usize),
    Driver(usize),
}

impl Who {
    fn tenant(self) -> Option<usize> {
        match self {
            Who::Anonymous => None,
            Who::Owner(t) | Who::Carrier(t) | Who::Driver(t) => Some(t),
        }
    }
    fn label(self) -> String {
        match self {
            Who::Anonymous => "anon".into(),
            Who::Owner(t) => format!("owner{}", tag(t)),
            Who::Carrier(t) => format!("carrier{}", tag(t)),
            Who::Driver(t) => format!("driver{}", tag(t)),
        }
    }
}

fn tag(t: usize) -> char {
    (b'A' + t as u8) as char
}

fn cred(who: Who, ts: &[Tenant]) -> Cred {
    match who {
        Who::Anonymous => Cred::None,
        Who::Owner(t) => ts[t].homeowner(),
        Who::Carrier(t) => ts[t].carrier_auth(),
        Who::Driver(t) => ts[t].driver_auth(),
    }
}

/// Whether a route acts on a tenant's resource: in its path, or named in its body.
fn scoped(method: &str, path: &str) -> bool {
    ["{home}", "{delivery}", "{carrier}", "{alarm}", "{request}"]
        .iter()
        .any(|p| path.contains(p))
        || matches!(
            (method, path),
            ("post", "/api/homes")
                | ("post", "/api/carrier/deliveries")
                | ("post", "/api/accounts")
                | ("post", "/api/login")
        )
}

/// The concrete path and body of a route aimed at tenant `t`'s resources.
fn aim(
    method: &str,
    path: &str,
    t: &Tenant,
    alarm: u64,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> (String, Option<Value>) {
    let p = path
        .replace("{home}", t.home.as_str())
        .replace("{carrier}", t.carrier.as_str())
        .replace("{delivery}", t.delivery.as_str())
        .replace("{alarm}", &alarm.to_string())
        .replace("{camera}", t.cam_id.as_str())
        .replace("{seq}", "1")
        .replace("{request}", "1")
        .replace("{token}", "dwl_not-a-real-link");
    let now = wall_ms();
    let stranger = KeyPair::generate(rng);
    let body = match (method, path) {
        ("post", "/api/accounts") => {
            Some(json!({"email": t.email, "password": "a fresh password"}))
        }
        ("post", "/api/login") => Some(json!({"email": t.email, "password": "not the password"})),
        ("post", "/api/homes") => {
            let cert = Signed::sign(
                IssuerCert {
                    home: t.home.clone(),
                    issuer: stranger.public(),
                    not_before_ms: now - 1_000,
                    not_after_ms: now + 60_000,
                    serial: 2,
                },
                &stranger,
            );
            Some(
                json!({"home": t.home.as_str(), "root_key": stranger.public().to_hex(), "cert": hex::encode(codec::encode(&cert))}),
            )
        }
        ("put", "/api/homes/{home}/policy") => Some(json!({"vacation": false})),
        ("post", "/api/homes/{home}/guests") => Some(json!({
            "name": "probe", "key": stranger.public().to_hex(), "lock": t.lock_id.as_str(),
            "schedule": {"kind": "once", "start_ms": now - 1_000, "end_ms": now + 600_000}})),
        ("post", "/api/homes/{home}/revocations") => Some(json!({"carrier": t.carrier.as_str()})),
        ("post", "/api/homes/{home}/webhooks") => Some(
            json!({"url": "http://127.0.0.1:9/x", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
        ("post", "/api/carrier/drivers") => {
            Some(json!({"name": "probe", "key": stranger.public().to_hex()}))
        }
        ("post", "/api/carrier/deliveries") => Some(json!({
            "home": t.home.as_str(), "lock": t.lock_id.as_str(),
            "not_before_ms": now - 1_000, "not_after_ms": now + 600_000})),
        ("post", "/api/carrier/deliveries/{delivery}/assign") => {
            Some(json!({"driver": t.driver_id}))
        }
        ("post", "/api/driver/deliveries/{delivery}/entry") => {
            let nonce = Signed::sign(
                UnlockNonce {
                    lock: t.lock_id.clone(),
                    nonce: Nonce([7; 32]),
                    mono_ms: 1,
                    epoch: 0,
                },
                &stranger,
            );
            Some(
                json!({"nonce": hex::encode(codec::encode(&nonce)), "driver_sig": Sig([1; 64]).to_hex()}),
            )
        }
        _ => None,
    };
    (p, body)
}

/// What must never appear in an answer to anyone but tenant `t`'s own principals.
fn secrets_of(t: &Tenant) -> Vec<String> {
    vec![
        t.home.to_string(),
        t.delivery.to_string(),
        t.driver_id.clone(),
        t.driver.public().to_hex(),
        t.lock_id.to_string(),
        t.cam_id.to_string(),
        t.account.clone(),
        t.email.clone(),
        t.events_token.clone(),
    ]
}

fn ok(status: u16) -> bool {
    (200..400).contains(&status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i11_no_principal_reaches_another_tenants_resources() {
    let s = ApiServer::start(ApiSettings::default()).await;
    let mut ts = vec![tenant(&s, "a").await, tenant(&s, "b").await];
    // An open alarm in each home, so alarm ids are real.
    let mut alarms = Vec::new();
    for t in ts.iter_mut() {
        forge_report(&s, t).await;
    }
    for t in &ts {
        let t0 = std::time::Instant::now();
        loop {
            let st = s.handle.home_state(&t.home).await.unwrap().unwrap();
            if let Some(&a) = st.open_alarms.first() {
                alarms.push(a);
                break;
            }
            assert!(t0.elapsed() < CEILING, "no alarm in {}", t.home);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([11; 32]);
    let principals = [
        Who::Anonymous,
        Who::Owner(0),
        Who::Owner(1),
        Who::Carrier(0),
        Who::Carrier(1),
        Who::Driver(0),
        Who::Driver(1),
    ];
    let routes = doorward_server::http::route_list();
    let mut attempts = 0usize;
    let mut breaches = Vec::new();
    let mut leaks = Vec::new();
    let mut own_ok: BTreeMap<String, usize> = BTreeMap::new();
    let mut matrix: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut self_routes = 0usize;
    for &(method, path) in &routes {
        let m = method.to_uppercase();
        let row = matrix.entry(format!("{m} {path}")).or_default();
        for &who in &principals {
            let c = cred(who, &ts);
            if scoped(method, path) {
                let mut cell = Vec::new();
                for (ti, t) in ts.iter().enumerate() {
                    if who.tenant() == Some(ti) {
                        continue;
                    }
                    let (p, body) = aim(method, path, t, alarms[ti], &mut rng);
                    let r = s.call(&m, &p, &c, body.as_ref()).await;
                    attempts += 1;
                    cell.push(r.status.to_string());
                    if ok(r.status) {
                        breaches.push(format!(
                            "{} {m} {p} -> {} {}",
                            who.label(),
                            r.status,
                            r.text()
                        ));
                    }
                }
                row.push(format!("{}:{}", who.label(), cell.join("/")));
            } else {
                if path == "/api/logout" {
                    continue; // tried last: it ends the session
                }
                let own = who.tenant().map(|t| &ts[t]);
                let target = own.unwrap_or(&ts[0]);
                let (p, body) = aim(method, path, target, 0, &mut rng);
                let r = s.call(&m, &p, &c, body.as_ref()).await;
                self_routes += 1;
                row.push(format!("{}:{}", who.label(), r.status));
                if ok(r.status) {
                    let text = r.text();
                    for (ti, t) in ts.iter().enumerate() {
                        if who.tenant() == Some(ti) {
                            continue;
                        }
                        for secret in secrets_of(t) {
                            if text.contains(&secret) {
                                leaks.push(format!(
                                    "{} {m} {p} shows tenant {}'s {secret}",
                                    who.label(),
                                    tag(ti)
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    // The principals' own resources answer (read-only routes, and the driver's arrival).
    for &who in &principals[1..] {
        let t = who.tenant().unwrap();
        let c = cred(who, &ts);
        for &(method, path) in &routes {
            let own_route = match who {
                // A footage segment exists only after a recorded entry: its own-home read is
                // covered by tests/footage.rs, its cross-tenant refusal here.
                Who::Owner(_) => {
                    method == "get"
                        && path.starts_with("/api/homes/{home}")
                        && !path.ends_with("/events")
                        && !path.contains("{seq}")
                }
                Who::Carrier(_) => method == "get" && path.starts_with("/api/carrier/"),
                Who::Driver(_) => path == "/api/driver/deliveries/{delivery}/arrive",
                Who::Anonymous => false,
            };
            if !own_route {
                continue;
            }
            let (p, body) = aim(method, path, &ts[t], alarms[t], &mut rng);
            let r = s.call(&method.to_uppercase(), &p, &c, body.as_ref()).await;
            assert!(
                ok(r.status),
                "{} on its own {p}: {} {}",
                who.label(),
                r.status,
                r.text()
            );
            *own_ok.entry(who.label()).or_default() += 1;
        }
    }
    // Explicit mixed probes: own resource in the path, another tenant's in the body.
    let (a, b) = (&ts[0], &ts[1]);
    s.call(
        "POST",
        &format!("/api/carrier/deliveries/{}/assign", a.delivery),
        &a.carrier_auth(),
        Some(&json!({"driver": b.driver_id})),
    )
    .await
    .expect_error(404, "not_found");
    attempts += 1;
    s.call(
        "POST",
        &format!("/api/homes/{}/alarms/{}/ack", a.home, alarms[1]),
        &a.homeowner(),
        None,
    )
    .await
    .expect_error(404, "not_found");
    attempts += 1;
    let r = s
        .call(
            "GET",
            &format!("/api/homes/{}/events", b.home),
            &Cred::Bearer(a.events_token.clone()),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "home A's event token opens home B's stream");
    attempts += 1;
    let r = s
        .call(
            "GET",
            &format!("/api/homes/{}/events", b.home),
            &a.homeowner(),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "owner A's session opens home B's stream");
    attempts += 1;
    // A home B reserved but has not added yet cannot be taken by A.
    let reserved = s
        .call("POST", "/api/homes/prepare", &b.homeowner(), None)
        .await
        .expect(201);
    let rid = reserved.json["home"].as_str().unwrap().to_owned();
    let root = KeyPair::generate(&mut rng);
    let cert = Signed::sign(
        IssuerCert {
            home: id(&rid),
            issuer: PubKey::from_hex(reserved.json["issuer_key"].as_str().unwrap()).unwrap(),
            not_before_ms: wall_ms() - 1_000,
            not_after_ms: wall_ms() + 60_000,
            serial: 1,
        },
        &root,
    );
    s.call(
        "POST",
        "/api/homes",
        &a.homeowner(),
        Some(&json!({"home": rid, "root_key": root.public().to_hex(), "cert": hex::encode(codec::encode(&cert))})),
    )
    .await
    .expect_error(404, "not_found");
    attempts += 1;
    // A driver key registered by carrier B cannot be registered again by carrier A.
    s.call(
        "POST",
        "/api/carrier/drivers",
        &a.carrier_auth(),
        Some(&json!({"name": "taken", "key": b.driver.public().to_hex()})),
    )
    .await
    .expect_error(409, "refused");
    attempts += 1;
    // Logout last: it ends only the caller's own session.
    for &who in &principals {
        let r = s.call("POST", "/api/logout", &cred(who, &ts), None).await;
        self_routes += 1;
        assert_eq!(
            ok(r.status),
            matches!(who, Who::Owner(_)),
            "{} logout: {}",
            who.label(),
            r.status
        );
    }
    s.call("GET", "/api/me", &b.homeowner(), None)
        .await
        .expect_error(401, "unauthenticated");

    println!("\nI11 authorisation matrix (status per principal, against the other tenant's resources; anon tries A/B):");
    for (route, cells) in &matrix {
        println!("  {route:<58} {}", cells.join(" "));
    }
    let scoped_routes = routes.iter().filter(|(m, p)| scoped(m, p)).count();
    println!(
        "routes {} ({} naming a tenant's resource), principals {}, cross-tenant attempts {}, \
         cross-tenant successes {}, resource-free calls {} with {} leaks; own-resource successes {:?}",
        routes.len(),
        scoped_routes,
        principals.len(),
        attempts,
        breaches.len(),
        self_routes,
        leaks.len(),
        own_ok
    );
    assert!(
        breaches.is_empty(),
        "cross-tenant successes:\n{}",
        breaches.join("\n")
    );
    assert!(
        leaks.is_empty(),
        "another tenant's identifiers shown:\n{}",
        leaks.join("\n")
    );
    assert!(
        scoped_routes >= 25,
        "the matrix covers {scoped_routes} routes"
    );
    for who in &principals[1..] {
        assert!(
            own_ok.get(&who.label()).copied().unwrap_or(0) > 0,
            "{} reached none of its own",
            who.label()
        );
    }
    s.stop().await;
}

use rand_chacha::rand_core::SeedableRng;
