//! The HTTP API of the three kinds of users: homeowners (sessions), carriers (API keys) and
//! drivers (signed requests). Routes are JSON under `/api`; errors are
//! `{"error": "...", "code": "..."}` with the status that fits.
//!
//! Who the caller is is resolved in one place ([`auth`]: the [`auth::Principal`] extractor
//! for sessions and API keys, [`auth::DriverRequest`] for signed driver requests), and what
//! the caller may touch is decided in one place ([`authz::authorize`]: a principal × a
//! resource, I11). Handlers call `authorize` once, first, and act only on what it returns.
//!
//! The API holds no security decision of the doors: entries, approvals, revocations and
//! policy all go to the control core through [`crate::Handle`]; the lock still decides (I1).
//!
//! Map: [`accounts`] (passwords, sessions, login links, carriers and API keys, login rate
//! limits), [`auth`] (principals, driver request signatures and their replay cache),
//! [`authz`] (the tenant checks), [`homeowner`], [`carrier`], [`driver`], [`guests`] (guest
//! access with schedules) (handlers),
//! [`openapi`] (the document's part for these routes).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::runtime::ServerError;
use crate::server::Shared;

pub mod accounts;
pub mod auth;
pub mod authz;
pub mod carrier;
pub mod driver;
pub mod guests;
pub mod homeowner;
pub mod openapi;

/// Adds the API's routes (each also listed for the OpenAPI check).
pub(crate) fn routes(r: crate::http::Routes) -> crate::http::Routes {
    use axum::routing::{delete, get, post, put};
    use homeowner as h;
    r.add("post", "/api/accounts", post(h::signup))
        .add("post", "/api/login", post(h::login))
        .add("post", "/api/logout", post(h::logout))
        .add("get", "/api/login-links/{token}", get(h::use_login_link))
        .add("get", "/api/me", get(h::me))
        .add("get", "/api/carriers", get(h::carrier_directory))
        .add("post", "/api/homes/prepare", post(h::prepare_home))
        .add("post", "/api/homes", post(h::create_home))
        .add("get", "/api/homes", get(h::list_homes))
        .add("get", "/api/homes/{home}", get(h::home_state))
        .add("get", "/api/homes/{home}/devices", get(h::devices))
        .add("post", "/api/homes/{home}/devices", post(h::pair_device))
        .add("get", "/api/homes/{home}/carriers", get(h::home_carriers))
        .add(
            "put",
            "/api/homes/{home}/carriers/{carrier}",
            put(h::opt_in),
        )
        .add(
            "delete",
            "/api/homes/{home}/carriers/{carrier}",
            delete(h::opt_out),
        )
        .add("get", "/api/homes/{home}/policy", get(h::get_policy))
        .add("put", "/api/homes/{home}/policy", put(h::put_policy))
        .add("get", "/api/homes/{home}/approvals", get(h::approvals))
        .add(
            "post",
            "/api/homes/{home}/approvals/{request}/approve",
            post(h::approve),
        )
        .add(
            "post",
            "/api/homes/{home}/approvals/{request}/deny",
            post(h::deny),
        )
        .add("get", "/api/homes/{home}/alarms", get(h::alarms))
        .add(
            "post",
            "/api/homes/{home}/alarms/{alarm}/ack",
            post(h::ack_alarm),
        )
        .add("get", "/api/homes/{home}/entries", get(h::entries))
        .add("get", "/api/homes/{home}/deliveries", get(h::deliveries))
        .add(
            "post",
            "/api/homes/{home}/deliveries/{delivery}/cancel",
            post(h::cancel_delivery),
        )
        .add("post", "/api/homes/{home}/revocations", post(h::revoke))
        .add("get", "/api/homes/{home}/revocations", get(h::revocations))
        .add("post", "/api/homes/{home}/webhooks", post(h::add_webhook))
        .add("get", "/api/homes/{home}/audit", get(h::audit_export))
        .add("post", "/api/homes/{home}/guests", post(guests::add_guest))
        .add("get", "/api/homes/{home}/guests", get(guests::list_guests))
        .add("post", "/api/carrier/drivers", post(carrier::add_driver))
        .add("get", "/api/carrier/drivers", get(carrier::list_drivers))
        .add(
            "post",
            "/api/carrier/deliveries",
            post(carrier::create_delivery),
        )
        .add(
            "get",
            "/api/carrier/deliveries",
            get(carrier::list_deliveries),
        )
        .add(
            "get",
            "/api/carrier/deliveries/{delivery}",
            get(carrier::get_delivery),
        )
        .add(
            "post",
            "/api/carrier/deliveries/{delivery}/assign",
            post(carrier::assign),
        )
        .add(
            "post",
            "/api/carrier/deliveries/{delivery}/cancel",
            post(carrier::cancel),
        )
        .add(
            "post",
            "/api/driver/deliveries/{delivery}/arrive",
            post(driver::arrive),
        )
        .add(
            "post",
            "/api/driver/deliveries/{delivery}/entry",
            post(driver::entry),
        )
        .add(
            "post",
            "/api/driver/deliveries/{delivery}/finish",
            post(driver::finish),
        )
}

/// Longest a request may take before it is answered 503, in milliseconds (an entry request
/// waits for the camera's attestation or the homeowner's approval, so this is generous).
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Settings of the HTTP API (flags `--allow-signup`, `--https`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiSettings {
    /// Whether `POST /api/accounts` creates accounts (off by default: the operator creates
    /// them).
    pub allow_signup: bool,
    /// Whether the server runs behind HTTPS: session cookies get the `Secure` flag.
    pub https: bool,
    /// A session's absolute lifetime, ms.
    pub session_max_ms: u64,
    /// A session unused this long is refused, ms.
    pub session_idle_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            allow_signup: false,
            https: false,
            session_max_ms: accounts::SESSION_MAX_MS,
            session_idle_ms: accounts::SESSION_IDLE_MS,
        }
    }
}

/// The API's in-memory state: settings, login rate limits, the driver replay cache.
pub struct ApiState {
    /// Settings.
    pub settings: ApiSettings,
    pub(crate) limits: accounts::LoginLimits,
    pub(crate) replay: auth::ReplayCache,
    /// Serialises read-modify-write of account rows (one node owns the API's writes).
    pub(crate) account_writes: tokio::sync::Mutex<()>,
}

impl ApiState {
    /// Fresh state with `settings`.
    pub fn new(settings: ApiSettings) -> Self {
        ApiState {
            settings,
            limits: accounts::LoginLimits::default(),
            replay: auth::ReplayCache::default(),
            account_writes: tokio::sync::Mutex::new(()),
        }
    }
}

/// An API error: status, a sentence for a person and a stable code for programs.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// Seconds to wait, for 429.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401: no or wrong credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first: a session cookie or bearer token, a carrier API key, or a signed \
             driver request is required",
        )
    }
    /// 403: authenticated, but this kind of user may not call this route.
    pub fn wrong_role(needed: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this route is for {needed}"),
        )
    }
    /// 404: no such resource, or not one of the caller's (the two look the same, I11).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what} among yours"),
        )
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 500 (details go to the log, not to the caller).
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; the request was not carried out",
        )
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Admin(a) => {
                let code = match &a {
                    doorward_control::AdminError::Exists(_)
                    | doorward_control::AdminError::EntryUnderWay(_) => StatusCode::CONFLICT,
                    doorward_control::AdminError::Limit { .. } => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(code, "refused", a.to_string())
            }
            ServerError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is busy: try again shortly",
            ),
            ServerError::Storage => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_failure",
                "storage failure: the change was not recorded",
            ),
            ServerError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the server is stopping",
            ),
            ServerError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
            ServerError::Keystore(k) => ApiError::internal(k),
        }
    }
}

impl From<doorward_store::StoreError> for ApiError {
    fn from(e: doorward_store::StoreError) -> Self {
        match e {
            doorward_store::StoreError::QueueFull { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the store is busy: try again shortly",
            ),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.message, "code": self.code})),
        )
            .into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// What every handler returns.
pub type ApiResult<T = Response> = Result<T, ApiError>;

/// Runs a blocking store read off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, doorward_store::StoreError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Reads one row.
pub(crate) async fn read(
    s: &Arc<Shared>,
    ns: &doorward_proto::Id,
    kind: doorward_store::RecordKind,
    id: &doorward_proto::Id,
) -> ApiResult<Option<doorward_store::Record>> {
    let (store, ns, id) = (s.store.clone(), ns.clone(), id.clone());
    blocking(move || store.record(&ns, kind, &id)).await
}

/// Writes rows and waits until they are durable.
pub(crate) async fn write(s: &Arc<Shared>, rows: Vec<doorward_store::Record>) -> ApiResult<()> {
    let mut pending = Vec::with_capacity(rows.len());
    for r in &rows {
        pending.push(s.store.put_record(r)?);
    }
    for p in pending {
        p.await?;
    }
    Ok(())
}

/// Parses a path or body identifier.
pub(crate) fn parse_id(s: &str, what: &str) -> ApiResult<doorward_proto::Id> {
    doorward_proto::Id::new(s).map_err(|_| ApiError::not_found(what))
}

/// Hex of `n` random bytes from the OS.
pub(crate) fn random_hex(n: usize) -> String {
    use rand_core::RngCore;
    let mut b = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}
