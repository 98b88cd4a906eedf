//! Homeowner routes: accounts, sessions, homes, devices, carriers opted in, policy,
//! approvals, alarms, entries, deliveries, revocation, webhooks, audit export.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use doorward_control::audit::{EntryKind, MAX_AUDIT_PAYLOAD_BYTES};
use doorward_control::{
    Admin, AuditEvent, AuditKind, CameraValue, HomePolicy, HomeState, Input, Shown, View,
    WeeklyWindow,
};
use doorward_proto::{codec, GrantId, Id, IssuerCert, PubKey, Revoked, Signed};
use doorward_store::{Carrier, HomeOwner, PolicyRow, Record, RecordKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::{self, LOGIN_MAX_PER_ACCOUNT, LOGIN_MAX_PER_IP, SESSION_COOKIE};
use super::auth::Principal;
use super::authz::{authorize, Allowed, Caller, Target};
use super::{blocking, parse_id, read, write, ApiError, ApiResult};
use crate::metrics::label;
use crate::runtime::wall_ms;
use crate::server::{Handle, Shared};

/// Most homes (added or reserved) per account.
pub const MAX_HOMES_PER_ACCOUNT: usize = 16;
/// Most recent audit entries read to list a home's alarms, entries and delivery phases.
pub const MAX_AUDIT_SCAN_ENTRIES: usize = 5_000;
/// Most rows one list answers.
pub const MAX_LIST_ROWS: usize = 1_000;
/// Largest encoded issuing-key certificate accepted, bytes.
pub const MAX_CERT_BYTES: usize = 1_024;

/// A JSON body whose rejections are API errors (JSON, with the right status).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, s).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "body_too_large"
                } else {
                    "bad_request"
                };
                Err(ApiError::new(status, code, e.body_text()))
            }
        }
    }
}

fn handle(s: &Arc<Shared>) -> Handle {
    Handle::from_shared(s.clone())
}

fn home_of(a: Allowed) -> HomeOwner {
    match a {
        Allowed::Home(h) => h,
        _ => unreachable!("Target::Home answers Allowed::Home"),
    }
}

async fn own_home(s: &Arc<Shared>, p: &Principal, home: &str) -> ApiResult<HomeOwner> {
    let home = parse_id(home, "home")?;
    Ok(home_of(
        authorize(s, Caller::Principal(p), Target::Home(&home)).await?,
    ))
}

fn session_cookie(s: &Shared, token: &str, max_age_ms: u64) -> HeaderValue {
    let secure = if s.api.settings.https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        max_age_ms / 1000
    ))
    .expect("a valid header value")
}

/// An email and a password.
#[derive(Deserialize)]
pub struct Credentials {
    email: String,
    password: String,
}

/// `POST /api/accounts`: signup, when the server allows it.
pub async fn signup(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult {
    if !s.api.settings.allow_signup {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "signup_disabled",
            "this server does not take signups: the operator creates accounts \
             (`doorward serve --allow-signup` turns signups on)",
        ));
    }
    rate_limit(
        &s,
        &[(format!("signup-ip:{}", addr.ip()), LOGIN_MAX_PER_IP)],
    )?;
    let id = accounts::create_homeowner(&s, &c.email, &c.password).await?;
    Ok((StatusCode::CREATED, Json(json!({"account": id.as_str()}))).into_response())
}

fn rate_limit(s: &Shared, keys: &[(String, u32)]) -> ApiResult<()> {
    s.api.limits.attempt(wall_ms(), keys).map_err(|wait| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many login attempts: try again in {wait} s"),
        );
        e.retry_after_s = Some(wait);
        e
    })
}

/// `POST /api/login`.
pub async fn login(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult {
    let email = accounts::normalise_email(&c.email).unwrap_or_else(|| c.email.clone());
    rate_limit(
        &s,
        &[
            (format!("account:{email}"), LOGIN_MAX_PER_ACCOUNT),
            (format!("ip:{}", addr.ip()), LOGIN_MAX_PER_IP),
        ],
    )?;
    let account = accounts::check_login(&s, &c.email, &c.password).await?;
    let (token, expires_ms) = accounts::open_session(&s, &account).await?;
    let mut r = Json(json!({
        "account": account.as_str(),
        "token": token,
        "expires_ms": expires_ms,
    }))
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&s, &token, s.api.settings.session_max_ms),
    );
    Ok(r)
}

/// `POST /api/logout`.
pub async fn logout(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult {
    let Principal::Homeowner { token, .. } = &p else {
        authorize(&s, Caller::Principal(&p), Target::Account).await?;
        return Err(ApiError::unauthenticated());
    };
    accounts::close_session(&s, token).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&s, "", 0));
    Ok(r)
}

/// `GET /api/login-links/{token}`: spends a one-time link, sets the session cookie and
/// redirects to the web app at `/`.
pub async fn use_login_link(State(s): State<Arc<Shared>>, Path(token): Path<String>) -> ApiResult {
    let Some(account) = accounts::use_login_link(&s, &token).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_login_link",
            "this login link is unknown, used or expired: ask for a new one",
        ));
    };
    let (token, _) = accounts::open_session(&s, &account).await?;
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&s, &token, s.api.settings.session_max_ms),
    );
    Ok(r)
}

/// `GET /api/me`.
pub async fn me(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult<Json<Value>> {
    let Allowed::Account(id) = authorize(&s, Caller::Principal(&p), Target::Account).await? else {
        unreachable!("Target::Account answers Allowed::Account")
    };
    let a = accounts::account(&s, &id)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(json!({"account": a.id.as_str(), "email": a.email})))
}

/// `GET /api/carriers`: the carriers a homeowner may opt in.
pub async fn carrier_directory(
    State(s): State<Arc<Shared>>,
    p: Principal,
) -> ApiResult<Json<Value>> {
    authorize(&s, Caller::Principal(&p), Target::Account).await?;
    let list = accounts::carriers(&s, MAX_LIST_ROWS).await?;
    Ok(Json(json!({
        "carriers": list.iter().map(|c| json!({"id": c.id.as_str(), "name": c.name})).collect::<Vec<_>>()
    })))
}

/// `POST /api/homes/prepare`: reserves a home id and hands out the server's issuing key for
/// it, which the home root signs an `IssuerCert` for.
pub async fn prepare_home(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult {
    let Allowed::Account(account) = authorize(&s, Caller::Principal(&p), Target::Account).await?
    else {
        unreachable!("Target::Account answers Allowed::Account")
    };
    let home = Id::new(format!("h-{}", super::random_hex(8))).expect("a valid id");
    let _guard = s.api.account_writes.lock().await;
    let mut a = accounts::account(&s, &account)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    if a.homes.len() >= MAX_HOMES_PER_ACCOUNT {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "limit",
            format!("an account may hold at most {MAX_HOMES_PER_ACCOUNT} homes"),
        ));
    }
    let issuer = handle(&s).issuer_key(&home)?;
    a.homes.push(home.clone());
    write(
        &s,
        vec![
            Record::HomeOwner(HomeOwner {
                home: home.clone(),
                account: account.clone(),
                created: false,
                policy: None,
            }),
            Record::Account(a),
        ],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "home": home.as_str(),
            "issuer_key": issuer.to_hex(),
            "server_key": s.server_key.to_hex(),
        })),
    )
        .into_response())
}

/// A policy as JSON.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PolicyJson {
    #[serde(default)]
    windows: Vec<WindowJson>,
    #[serde(default)]
    garage_only: bool,
    #[serde(default)]
    vacation: bool,
    #[serde(default)]
    live_approval: bool,
}

#[derive(Clone, Copy, Debug, Deserialize)]
struct WindowJson {
    start_min: u32,
    end_min: u32,
}

impl From<&PolicyJson> for HomePolicy {
    fn from(p: &PolicyJson) -> Self {
        HomePolicy {
            windows: p
                .windows
                .iter()
                .map(|w| WeeklyWindow {
                    start_min: w.start_min,
                    end_min: w.end_min,
                })
                .collect(),
            garage_only: p.garage_only,
            vacation: p.vacation,
            live_approval: p.live_approval,
        }
    }
}

fn policy_row(p: &HomePolicy) -> PolicyRow {
    PolicyRow {
        windows: p.windows.iter().map(|w| (w.start_min, w.end_min)).collect(),
        garage_only: p.garage_only,
        vacation: p.vacation,
        live_approval: p.live_approval,
    }
}

fn policy_json(p: &PolicyRow) -> Value {
    json!({
        "windows": p.windows.iter().map(|(a, b)| json!({"start_min": a, "end_min": b})).collect::<Vec<_>>(),
        "garage_only": p.garage_only,
        "vacation": p.vacation,
        "live_approval": p.live_approval,
    })
}

/// A reserved home to add.
#[derive(Deserialize)]
pub struct NewHome {
    home: String,
    root_key: String,
    cert: String,
    #[serde(default)]
    policy: PolicyJson,
}

/// `POST /api/homes`: adds a reserved home with the root's certificate for the issuing key.
pub async fn create_home(
    State(s): State<Arc<Shared>>,
    p: Principal,
    JsonBody(b): JsonBody<NewHome>,
) -> ApiResult {
    let home = parse_id(&b.home, "reserved home")?;
    let mut owner =
        home_of(authorize(&s, Caller::Principal(&p), Target::ReservedHome(&home)).await?);
    let root = PubKey::from_hex(&b.root_key)
        .ok_or_else(|| ApiError::bad_request("root_key: 64 hex digits expected"))?;
    let cert_bytes =
        hex::decode(&b.cert).map_err(|_| ApiError::bad_request("cert: hex expected"))?;
    let cert: Signed<IssuerCert> = codec::decode(&cert_bytes, MAX_CERT_BYTES).map_err(|e| {
        ApiError::bad_request(format!(
            "cert: not a canonical CBOR Signed<IssuerCert>: {e}"
        ))
    })?;
    let policy = HomePolicy::from(&b.policy);
    let creds = handle(&s)
        .add_home(home.clone(), root, cert, policy.clone())
        .await?;
    owner.created = true;
    owner.policy = Some(policy_row(&policy));
    write(&s, vec![Record::HomeOwner(owner)]).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"home": home.as_str(), "events_token": creds.events_token})),
    )
        .into_response())
}

/// `GET /api/homes`: the caller's homes.
pub async fn list_homes(State(s): State<Arc<Shared>>, p: Principal) -> ApiResult<Json<Value>> {
    let Allowed::Account(account) = authorize(&s, Caller::Principal(&p), Target::Account).await?
    else {
        unreachable!("Target::Account answers Allowed::Account")
    };
    let a = accounts::account(&s, &account)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let mut homes = Vec::new();
    for h in &a.homes {
        if let Ok(Allowed::Home(o)) = authorize(&s, Caller::Principal(&p), Target::Home(h)).await {
            homes.push(json!({"home": o.home.as_str()}));
        }
    }
    Ok(Json(json!({"homes": homes})))
}

fn evidence_json(e: &Option<doorward_control::Evidence>) -> Value {
    e.as_ref().map_or(
        Value::Null,
        |e| json!({"device": e.device.as_str(), "seq": e.seq, "digest": e.digest.to_hex()}),
    )
}

fn view_json<T>(v: &View<T>, f: impl Fn(&T) -> Value) -> Value {
    let value = match &v.value {
        Shown::Known(x) => json!({"known": true, "value": f(x)}),
        Shown::Unknown { last, age_ms } => json!({
            "known": false,
            "value": "unknown",
            "last": last.as_ref().map(&f),
            "last_age_ms": age_ms,
        }),
    };
    json!({"shown": value, "evidence": evidence_json(&v.evidence), "age_ms": v.age_ms})
}

/// A home's state as JSON: every value with its evidence and age (I5).
pub fn state_json(st: &HomeState) -> Value {
    json!({
        "home": st.home.as_str(),
        "at_ms": st.at_ms,
        "epoch": st.epoch,
        "open_alarms": st.open_alarms,
        "doors": st.doors.iter().map(|d| json!({
            "lock_id": d.lock_id.as_str(),
            "camera_id": d.camera_id.as_str(),
            "lock": view_json(&d.lock, |v| json!(label(v))),
            "door": view_json(&d.door, |v| json!(label(v))),
            "camera": view_json(&d.camera, |v| match v {
                CameraValue::Recording { seq, head } => json!({"recording": true, "seq": seq, "head": head.to_hex()}),
                CameraValue::NotRecording => json!({"recording": false}),
            }),
            "delivery": d.delivery.as_ref().map(|(id, ph)| json!({"delivery": id.as_str(), "phase": label(ph)})),
        })).collect::<Vec<_>>(),
    })
}

async fn state_of(s: &Arc<Shared>, home: &Id) -> ApiResult<HomeState> {
    handle(s)
        .home_state(home)
        .await?
        .ok_or_else(|| ApiError::not_found("home"))
}

/// `GET /api/homes/{home}`: state with evidence and ages.
pub async fn home_state(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    Ok(Json(state_json(&state_of(&s, &o.home).await?)))
}

/// `GET /api/homes/{home}/devices`.
pub async fn devices(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let st = state_of(&s, &o.home).await?;
    let mut list = Vec::new();
    for d in &st.doors {
        list.push(
            json!({"id": d.lock_id.as_str(), "kind": "lock", "witness": d.camera_id.as_str()}),
        );
        list.push(
            json!({"id": d.camera_id.as_str(), "kind": "camera", "witnesses": d.lock_id.as_str()}),
        );
    }
    Ok(Json(json!({"devices": list})))
}

/// Longest `POST /api/homes/{home}/devices` waits for the device, ms (below the API's
/// request timeout).
pub const MAX_API_PAIRING_WAIT_MS: u64 = 25_000;

/// A device to pair.
#[derive(Deserialize)]
pub struct PairBody {
    device: String,
    kind: String,
    code: String,
    #[serde(default)]
    qr: Option<String>,
    #[serde(default)]
    witness: Option<String>,
    #[serde(default)]
    garage: bool,
}

/// `POST /api/homes/{home}/devices`: pairs a device of the caller's home with the setup code
/// read off it ([`Handle::pair_device`]): the camera first, then the lock naming it.
pub async fn pair_device(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    JsonBody(b): JsonBody<PairBody>,
) -> ApiResult {
    use doorward_proto::pairing::{DeviceKind, QrPayload, SetupCode};
    let o = own_home(&s, &p, &home).await?;
    let device = Id::new(b.device).map_err(|e| ApiError::bad_request(format!("device: {e}")))?;
    let kind = DeviceKind::from_name(&b.kind)
        .ok_or_else(|| ApiError::bad_request("kind: \"lock\" or \"camera\""))?;
    let code = SetupCode::parse(&b.code).map_err(|e| {
        ApiError::bad_request(format!("code: {e} (the setup code the device prints)"))
    })?;
    let qr =
        b.qr.map(|q| QrPayload::parse(&q))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("qr: {e}")))?;
    let camera = b
        .witness
        .map(Id::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("witness: {e}")))?;
    let opts = crate::pairing::PairOptions {
        qr,
        camera,
        door: if b.garage {
            doorward_control::DoorKind::Garage
        } else {
            doorward_control::DoorKind::Front
        },
        timeout_ms: MAX_API_PAIRING_WAIT_MS,
    };
    let paired = handle(&s)
        .pair_device(o.home.clone(), device, kind, code, opts)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "device": paired.device.as_str(),
            "kind": paired.kind.as_str(),
            "key": paired.key.to_hex(),
            "door": paired.door.as_ref().map(|d| json!({
                "lock": d.lock.as_str(),
                "camera": d.camera.as_str(),
                "kind": label(&d.kind),
            })),
        })),
    )
        .into_response())
}

async fn rows(s: &Arc<Shared>, ns: &Id, kind: RecordKind) -> ApiResult<Vec<Record>> {
    let (store, ns) = (s.store.clone(), ns.clone());
    blocking(move || store.records(&ns, kind, None, MAX_LIST_ROWS)).await
}

/// `GET /api/homes/{home}/carriers`.
pub async fn home_carriers(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let list: Vec<Value> = rows(&s, &o.home, RecordKind::Carrier)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Carrier(c) => {
                Some(json!({"id": c.id.as_str(), "name": c.name, "opted_in": c.opted_in}))
            }
            _ => None,
        })
        .collect();
    Ok(Json(json!({"carriers": list})))
}

/// `PUT /api/homes/{home}/carriers/{carrier}`: opt a carrier in (I9).
pub async fn opt_in(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, carrier)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let carrier = parse_id(&carrier, "carrier")?;
    let Some(Record::CarrierAccount(c)) = read(
        &s,
        &accounts::auth_ns(),
        RecordKind::CarrierAccount,
        &carrier,
    )
    .await?
    else {
        return Err(ApiError::not_found("carrier (see GET /api/carriers)"));
    };
    handle(&s).opt_in(o.home.clone(), carrier.clone()).await?;
    write(
        &s,
        vec![Record::Carrier(Carrier {
            home: o.home.clone(),
            id: carrier.clone(),
            name: c.name,
            opted_in: true,
        })],
    )
    .await?;
    Ok(Json(json!({"carrier": carrier.as_str(), "opted_in": true})))
}

/// `DELETE /api/homes/{home}/carriers/{carrier}`: opt a carrier out — a revocation of every
/// grant it holds for the home, sent to the locks (S16).
pub async fn opt_out(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, carrier)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let carrier = parse_id(&carrier, "carrier")?;
    let Some(Record::Carrier(mut row)) = read(&s, &o.home, RecordKind::Carrier, &carrier).await?
    else {
        return Err(ApiError::not_found("carrier of this home"));
    };
    handle(&s)
        .admin(Admin::Revoke {
            home: o.home.clone(),
            item: Revoked::Carrier(carrier.clone()),
        })
        .await?;
    row.opted_in = false;
    write(&s, vec![Record::Carrier(row)]).await?;
    Ok(Json(
        json!({"carrier": carrier.as_str(), "opted_in": false}),
    ))
}

/// `GET /api/homes/{home}/policy`.
pub async fn get_policy(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    Ok(Json(policy_json(&o.policy.unwrap_or_default())))
}

/// `PUT /api/homes/{home}/policy`: windows, garage-only, live approval, vacation (I9).
pub async fn put_policy(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    JsonBody(b): JsonBody<PolicyJson>,
) -> ApiResult<Json<Value>> {
    let mut o = own_home(&s, &p, &home).await?;
    let policy = HomePolicy::from(&b);
    handle(&s)
        .admin(Admin::SetPolicy {
            home: o.home.clone(),
            policy: policy.clone(),
        })
        .await?;
    let row = policy_row(&policy);
    o.policy = Some(row.clone());
    write(&s, vec![Record::HomeOwner(o)]).await?;
    Ok(Json(policy_json(&row)))
}

/// `GET /api/homes/{home}/approvals`: entries waiting for the homeowner.
pub async fn approvals(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    Ok(Json(
        json!({"approvals": s.hub.pending_approvals(&o.home, wall_ms())}),
    ))
}

async fn answer(
    s: Arc<Shared>,
    p: Principal,
    home: String,
    request: String,
    yes: bool,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let request: u64 = request
        .parse()
        .map_err(|_| ApiError::not_found("approval request"))?;
    if !s.hub.take_approval(&o.home, request, wall_ms()) {
        return Err(ApiError::not_found("open approval request"));
    }
    let input = if yes {
        Input::Approve { request }
    } else {
        Input::Deny { request }
    };
    handle(&s).input(input).await?;
    Ok(Json(json!({"request": request, "approved": yes})))
}

/// `POST /api/homes/{home}/approvals/{request}/approve`.
pub async fn approve(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, request)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    answer(s, p, home, request, true).await
}

/// `POST /api/homes/{home}/approvals/{request}/deny`.
pub async fn deny(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, request)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    answer(s, p, home, request, false).await
}

/// The home's most recent core audit events, oldest first (at most
/// [`MAX_AUDIT_SCAN_ENTRIES`] entries read).
pub(crate) async fn recent_events(s: &Arc<Shared>, home: &Id) -> ApiResult<Vec<AuditEvent>> {
    Ok(recent_indexed_events(s, home)
        .await?
        .into_iter()
        .map(|(_, ev)| ev)
        .collect())
}

/// [`recent_events`] with each event's index in the home's audit chain.
pub(crate) async fn recent_indexed_events(
    s: &Arc<Shared>,
    home: &Id,
) -> ApiResult<Vec<(u64, AuditEvent)>> {
    let (store, home) = (s.store.clone(), home.clone());
    let entries = blocking(move || {
        let head = store.audit_head(&home)?;
        let from = head
            .next_index
            .saturating_sub(MAX_AUDIT_SCAN_ENTRIES as u64);
        store.audit_entries(&home, from, MAX_AUDIT_SCAN_ENTRIES)
    })
    .await?;
    Ok(entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::EVENT)
        .filter_map(|e| {
            codec::decode::<AuditEvent>(&e.payload, MAX_AUDIT_PAYLOAD_BYTES)
                .ok()
                .map(|ev| (e.index, ev))
        })
        .collect())
}

/// `GET /api/homes/{home}/alarms`: recent alarms, with whether each is still open.
pub async fn alarms(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let open = state_of(&s, &o.home).await?.open_alarms;
    let list: Vec<Value> = recent_events(&s, &o.home)
        .await?
        .into_iter()
        .filter_map(|ev| match ev.what {
            AuditKind::AlarmRaised { alarm, evidence } => Some(json!({
                "id": alarm.id,
                "kind": label(&alarm.kind),
                "raised_ms": alarm.raised_ms,
                "device": alarm.device.as_ref().map(Id::as_str),
                "detail": alarm.detail,
                "action": doorward_control::advice(alarm.kind),
                "evidence": evidence_json(&evidence),
                "open": open.contains(&alarm.id),
            })),
            _ => None,
        })
        .collect();
    Ok(Json(json!({"alarms": list, "open": open})))
}

/// `POST /api/homes/{home}/alarms/{alarm}/ack`.
pub async fn ack_alarm(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, alarm)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let id: u64 = alarm.parse().map_err(|_| ApiError::not_found("alarm"))?;
    // Alarm ids are server-wide: only an alarm open in this home may be acknowledged here.
    if !state_of(&s, &o.home).await?.open_alarms.contains(&id) {
        return Err(ApiError::not_found("open alarm"));
    }
    handle(&s).input(Input::AckAlarm { id }).await?;
    Ok(Json(json!({"alarm": id, "acknowledged": true})))
}

/// `GET /api/homes/{home}/entries`: recent entry requests, decisions and phases.
pub async fn entries(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let list: Vec<Value> = recent_indexed_events(&s, &o.home)
        .await?
        .into_iter()
        .filter_map(|(index, ev)| {
            let at = ev.at_ms;
            let mut v = match ev.what {
                AuditKind::EntryRequested {
                    request,
                    delivery,
                    driver,
                    ..
                } => json!({
                    "at_ms": at, "event": "requested", "request": request,
                    "delivery": delivery.as_str(), "driver": driver.to_hex()}),
                AuditKind::Authorised {
                    request,
                    delivery,
                    grant,
                    ..
                } => json!({
                    "at_ms": at, "event": "authorised", "request": request,
                    "delivery": delivery.as_str(), "grant": grant.to_hex()}),
                AuditKind::Denied {
                    request,
                    delivery,
                    reason,
                } => json!({
                    "at_ms": at, "event": "denied", "request": request,
                    "delivery": delivery.as_str(), "reason": label(&reason)}),
                AuditKind::Phase { delivery, phase } => json!({
                    "at_ms": at, "event": "phase", "delivery": delivery.as_str(),
                    "phase": label(&phase)}),
                AuditKind::LockDenied { delivery, reason } => json!({
                    "at_ms": at, "event": "lock_denied", "delivery": delivery.as_str(),
                    "reason": label(&reason)}),
                _ => return None,
            };
            v["index"] = json!(index);
            Some(v)
        })
        .collect();
    Ok(Json(json!({"entries": list})))
}

/// The latest phase of each delivery in `events`.
pub(crate) fn phases(events: &[AuditEvent]) -> std::collections::HashMap<Id, &'static str> {
    let mut m = std::collections::HashMap::new();
    for ev in events {
        if let AuditKind::Phase { delivery, phase } = &ev.what {
            m.insert(delivery.clone(), label(phase));
        }
    }
    m
}

/// `GET /api/homes/{home}/deliveries`.
pub async fn deliveries(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let events = recent_events(&s, &o.home).await?;
    let ph = phases(&events);
    let list: Vec<Value> = rows(&s, &o.home, RecordKind::Delivery)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Record::Delivery(d) => Some(json!({
                "delivery": d.id.as_str(),
                "carrier": d.carrier.as_str(),
                "driver": d.driver.as_ref().map(Id::as_str),
                "lock": d.lock.as_str(),
                "not_before_ms": d.window_start_ms,
                "not_after_ms": d.window_end_ms,
                "state": label(&d.state),
                "phase": ph.get(&d.id).copied().unwrap_or("scheduled"),
            })),
            _ => None,
        })
        .collect();
    Ok(Json(json!({"deliveries": list})))
}

/// `POST /api/homes/{home}/deliveries/{delivery}/cancel`: the homeowner calls a delivery to
/// the home off before anybody is let in (409 once its entry is under way or it is over).
pub async fn cancel_delivery(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path((home, delivery)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let id = parse_id(&delivery, "delivery")?;
    let Some(Record::Delivery(d)) = read(&s, &o.home, RecordKind::Delivery, &id).await? else {
        return Err(ApiError::not_found("delivery"));
    };
    let d = super::carrier::cancel_delivery(&s, d).await?;
    Ok(Json(json!({
        "delivery": d.id.as_str(),
        "state": label(&d.state),
        "phase": "cancelled",
    })))
}

/// What to revoke: exactly one field.
#[derive(Deserialize)]
pub struct RevokeBody {
    carrier: Option<String>,
    driver: Option<String>,
    grant: Option<String>,
}

/// `POST /api/homes/{home}/revocations`: revoke a carrier, a driver key or one grant at this
/// home's locks (bumps the revocation epoch, S16).
pub async fn revoke(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    JsonBody(b): JsonBody<RevokeBody>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let item = match (b.carrier, b.driver, b.grant) {
        (Some(c), None, None) => Revoked::Carrier(
            Id::new(c).map_err(|e| ApiError::bad_request(format!("carrier: {e}")))?,
        ),
        (None, Some(d), None) => Revoked::Driver(
            PubKey::from_hex(&d)
                .ok_or_else(|| ApiError::bad_request("driver: 64 hex digits expected"))?,
        ),
        (None, None, Some(g)) => Revoked::Grant(
            GrantId::from_hex(&g)
                .ok_or_else(|| ApiError::bad_request("grant: 32 hex digits expected"))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of carrier, driver, grant",
            ))
        }
    };
    let is_carrier = matches!(item, Revoked::Carrier(_));
    handle(&s)
        .admin(Admin::Revoke {
            home: o.home.clone(),
            item: item.clone(),
        })
        .await?;
    if let Revoked::Carrier(c) = &item {
        if let Some(Record::Carrier(mut row)) = read(&s, &o.home, RecordKind::Carrier, c).await? {
            row.opted_in = false;
            write(&s, vec![Record::Carrier(row)]).await?;
        }
    }
    let epoch = state_of(&s, &o.home).await?.epoch;
    Ok(Json(
        json!({"revoked": true, "carrier_opted_out": is_carrier, "epoch": epoch}),
    ))
}

/// `GET /api/homes/{home}/revocations`: the home's recent revocations (newest last), each
/// with when the server issued it and, per lock, when the lock's own signed report first
/// showed the new epoch: the lock's acknowledgement, as accepted into the home's record
/// (the report sent when the lock applies a revocation, `EpochApplied`, is always signed and
/// recorded). A lock missing from `acks` has not confirmed it yet.
pub async fn revocations(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = own_home(&s, &p, &home).await?;
    let events = recent_indexed_events(&s, &o.home).await?;
    Ok(Json(json!({"revocations": revocation_acks(&events)})))
}

/// What was revoked, as JSON (the body [`revoke`] takes).
pub fn revoked_json(item: &Revoked) -> Value {
    match item {
        Revoked::Carrier(c) => json!({"carrier": c.as_str()}),
        Revoked::Driver(k) => json!({"driver": k.to_hex()}),
        Revoked::Grant(g) => json!({"grant": g.to_hex()}),
    }
}

/// The revocations among `events` (with their audit indexes, oldest first) and each lock's
/// first signed report, accepted after the revocation was issued, holding its epoch or a
/// later one.
pub(crate) fn revocation_acks(events: &[(u64, AuditEvent)]) -> Vec<Value> {
    struct Issued {
        index: u64,
        at_ms: u64,
        epoch: u64,
        items: Vec<Value>,
        acks: Vec<Value>,
    }
    let mut out: Vec<Issued> = Vec::new();
    for (index, ev) in events {
        match &ev.what {
            AuditKind::Revocation { epoch, items } => out.push(Issued {
                index: *index,
                at_ms: ev.at_ms,
                epoch: *epoch,
                items: items.iter().map(revoked_json).collect(),
                acks: Vec::new(),
            }),
            AuditKind::Accepted {
                device, envelope, ..
            } if !out.is_empty() => {
                let Ok(env) = doorward_proto::Envelope::decode(envelope) else {
                    continue;
                };
                let (doorward_proto::Body::LockReport(r), doorward_proto::Auth::Sig(_)) =
                    (&env.body, &env.auth)
                else {
                    continue;
                };
                for rev in out.iter_mut() {
                    let acked = rev.acks.iter().any(|a| a["lock"] == device.as_str());
                    if rev.index < *index && r.epoch >= rev.epoch && !acked {
                        rev.acks.push(json!({
                            "lock": device.as_str(), "at_ms": ev.at_ms, "seq": r.seq,
                            "epoch": r.epoch, "event": label(&r.event),
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    out.into_iter()
        .map(|r| json!({"epoch": r.epoch, "issued_ms": r.at_ms, "items": r.items, "acks": r.acks}))
        .collect()
}

/// A webhook to add.
#[derive(Deserialize)]
pub struct WebhookBody {
    url: String,
    secret: String,
}

/// `POST /api/homes/{home}/webhooks`: a signed alarm webhook (kept in memory).
pub async fn add_webhook(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
    JsonBody(b): JsonBody<WebhookBody>,
) -> ApiResult {
    let o = own_home(&s, &p, &home).await?;
    handle(&s).add_webhook(&o.home, &b.url, &b.secret)?;
    Ok((StatusCode::CREATED, Json(json!({"url": b.url}))).into_response())
}

/// `GET /api/homes/{home}/audit`: the home's audit record in the export format that
/// `doorward audit verify` checks offline.
pub async fn audit_export(
    State(s): State<Arc<Shared>>,
    p: Principal,
    Path(home): Path<String>,
) -> ApiResult {
    let o = own_home(&s, &p, &home).await?;
    let (store, key, h) = (s.store.clone(), s.server_key, o.home.clone());
    let bytes = blocking(move || {
        let mut out = Vec::new();
        store.export_audit(&h, key, &mut out)?;
        Ok(out)
    })
    .await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{}.dwaudit\"", o.home))
                    .expect("a valid header value"),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// Whether the caller is the owner of `home` (for the event stream, which also takes the
/// home's event token).
pub async fn owns_home(s: &Arc<Shared>, headers: &HeaderMap, home: &Id) -> ApiResult<bool> {
    let p = Principal::resolve(s, headers).await?;
    Ok(authorize(s, Caller::Principal(&p), Target::Home(home))
        .await
        .is_ok())
}
