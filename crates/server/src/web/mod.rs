//! The homeowner's web app, served at `/` by `doorward serve`: server-rendered pages (maud)
//! and one small script (`static/app.js`, no build step) that keeps the pages live over
//! server-sent events.
//!
//! The app holds no logic of its own about doors or people: every page reads through, and
//! every action goes through, the homeowner API handlers of [`crate::api::homeowner`] (the
//! same authentication, tenant checks and control-core calls as `/api`), and it shows only
//! what the control core's [`doorward_control::HomeState`] proves (I5).
//!
//! Map: [`pages`] (login, dashboard, entries with their footage and verification marks,
//! alarms, approvals, access with guests and revocations, record; the form actions),
//! [`frames`] (recorded frames as PNG pictures for the entries' player), [`live`] (the page's event stream: state snapshots that double as heartbeats,
//! alarms and approval requests, and the switch that cuts live connections),
//! [`render`] (the layout and the shared pieces of markup), `static/` (the script and the
//! style sheet, compiled in with `include_str!`).
//!
//! Security (see SECURITY.md, "Web app"):
//! - **CSRF**: every state-changing request (form or `fetch`) must carry a token bound to the
//!   session — BLAKE3 of the session token under the key-derivation context
//!   [`CSRF_CONTEXT`], which only a holder of the (HttpOnly) session cookie can know — as the
//!   form field `csrf` or the header `X-CSRF-Token` (double submit, checked in constant
//!   time), **and** its `Origin` (or, without one, `Sec-Fetch-Site`) must be this site. The
//!   session cookie is also `SameSite=Strict`. Login, which has no session yet, is guarded by
//!   the same origin check.
//! - **Cookies**: the API's session cookie, `HttpOnly; SameSite=Strict; Path=/`, `Secure`
//!   when the server runs behind HTTPS (`--https`).
//! - **Headers** on every response of the app: a strict Content-Security-Policy
//!   ([`CONTENT_SECURITY_POLICY`]: scripts and styles only from this origin, no inline
//!   script, `frame-ancestors 'none'`), `X-Frame-Options: DENY`, `X-Content-Type-Options:
//!   nosniff`, `Referrer-Policy: same-origin` (no referrer leaves the site; `no-referrer` would
//!   turn same-site form posts into `Origin: null`), and `Cache-Control: no-store` on pages.
//! - **Login** goes through the API's login, with its per-account and per-address rate
//!   limits.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::auth::Principal;
use crate::server::Shared;

pub mod frames;
pub mod live;
pub mod pages;
pub mod render;

/// Key-derivation context of the CSRF token (BLAKE3 `derive_key` over the session token).
pub const CSRF_CONTEXT: &str = "doorward web csrf token v1";
/// The header a script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest form body the app accepts, bytes (the policy form is the largest).
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Largest audit export the record page verifies from an upload, bytes (a record larger than
/// this is verified offline with `doorward audit verify`).
pub const MAX_VERIFY_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

/// The Content-Security-Policy of every page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

const APP_JS: &str = include_str!("static/app.js");
const APP_CSS: &str = include_str!("static/app.css");

/// The web app's in-memory state: the switch that cuts its live connections.
#[derive(Debug)]
pub struct WebState {
    pub(crate) live_cut: tokio::sync::watch::Sender<bool>,
}

impl Default for WebState {
    fn default() -> Self {
        WebState {
            live_cut: tokio::sync::watch::channel(false).0,
        }
    }
}

/// The web app's routes (not part of the JSON API, so not in the OpenAPI document).
pub(crate) fn router() -> Router<Arc<Shared>> {
    use pages as p;
    let forms = Router::new()
        .route("/login", get(p::login_page).post(p::login))
        .route("/logout", post(p::logout))
        .route("/homes/{home}/alarms/{alarm}/ack", post(p::ack_alarm))
        .route(
            "/homes/{home}/approvals/{request}/{answer}",
            post(p::answer_approval),
        )
        .route("/homes/{home}/carriers/{carrier}/opt-in", post(p::opt_in))
        .route("/homes/{home}/carriers/{carrier}/revoke", post(p::revoke))
        .route("/homes/{home}/policy", post(p::set_policy))
        .route("/homes/{home}/guests", post(p::add_guest))
        .route("/homes/{home}/guests/{guest}/revoke", post(p::revoke_guest))
        .route(
            "/homes/{home}/deliveries/{delivery}/cancel",
            post(p::cancel_delivery),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES));
    let uploads = Router::new()
        .route("/homes/{home}/record/verify", post(p::verify_record))
        .layer(axum::extract::DefaultBodyLimit::max(
            MAX_VERIFY_UPLOAD_BYTES,
        ));
    Router::new()
        .route("/", get(p::index))
        .route("/homes/{home}", get(p::dashboard))
        .route("/homes/{home}/entries", get(p::entries))
        .route("/homes/{home}/alarms", get(p::alarms))
        .route("/homes/{home}/approvals", get(p::approvals))
        .route("/homes/{home}/access", get(p::access))
        .route("/homes/{home}/record", get(p::record))
        .route("/homes/{home}/live", get(live::stream))
        .route(
            "/homes/{home}/footage/{camera}/{seq}/{frame}",
            get(frames::frame_png),
        )
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
        .merge(forms)
        .merge(uploads)
        .layer(axum::middleware::from_fn(security))
}

async fn app_js() -> Response {
    static_asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    static_asset("text/css; charset=utf-8", APP_CSS)
}

fn static_asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Refuses cross-site state changes (the origin half of the CSRF rule) and sets the
/// security headers on every answer.
async fn security(req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
    if unsafe_method && !same_origin(req.headers()) {
        return render::error_response(
            StatusCode::FORBIDDEN,
            "This request came from another site and was refused. Open Doorward directly and \
             try again.",
        );
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // `no-referrer` would make the browser send `Origin: null` with same-site form posts.
    set(h, header::REFERRER_POLICY, "same-origin");
    if h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
    {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

/// Whether a state-changing request comes from this site: its `Origin` names the host it
/// was sent to; without `Origin`, `Sec-Fetch-Site` must say `same-origin`. A request with
/// neither (not a browser) is let through to the token check.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if let Some(origin) = get("origin") {
        let Some(host) = get("host") else {
            return false;
        };
        let bare = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        return bare == Some(host);
    }
    match get("sec-fetch-site") {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// The CSRF token of a session.
pub fn csrf_token(session_token: &str) -> String {
    hex::encode(&blake3::derive_key(CSRF_CONTEXT, session_token.as_bytes())[..16])
}

/// Whether `given` is the CSRF token of the caller's session.
pub(crate) fn csrf_ok(p: &Principal, given: Option<&str>) -> bool {
    let (Principal::Homeowner { token, .. }, Some(given)) = (p, given) else {
        return false;
    };
    let want = csrf_token(token);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        let a = Principal::Homeowner {
            account: doorward_proto::Id::new("a").unwrap(),
            token: "dws_one".into(),
        };
        let b = Principal::Homeowner {
            account: doorward_proto::Id::new("a").unwrap(),
            token: "dws_two".into(),
        };
        let t = csrf_token("dws_one");
        assert!(csrf_ok(&a, Some(&t)));
        assert!(!csrf_ok(&b, Some(&t)), "another session's token");
        assert!(!csrf_ok(&a, None));
        assert!(!csrf_ok(&a, Some(&t[..10])));
        assert!(!csrf_ok(&Principal::Anonymous, Some(&t)));
    }

    #[test]
    fn cross_site_origins_are_refused() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[
            ("host", "home.example:8080"),
            ("origin", "https://home.example:8080")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "home.example:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&h(&[("host", "a"), ("origin", "null")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
    }
}
