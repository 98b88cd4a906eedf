//! The pages and their form actions. Each reads and acts through the homeowner API handlers
//! ([`crate::api::homeowner`]), so the app has exactly the API's authentication, tenant
//! checks (I11) and effects; a form action also checks the CSRF token ([`super::csrf_ok`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::render::{self, age, error_response, home_page, short, when, Frame, Tab};
use super::{csrf_ok, csrf_token, CSRF_HEADER};
use crate::api::auth::Principal;
use crate::api::homeowner as h;
use crate::api::ApiError;
use crate::server::Shared;

type S = State<Arc<Shared>>;

/// What a page does with an API error: to the login page when the session is gone, else a
/// page that says what went wrong.
pub(crate) fn fail(e: ApiError) -> Response {
    if e.status == StatusCode::UNAUTHORIZED {
        return Redirect::to("/login").into_response();
    }
    error_response(e.status, &e.message)
}

macro_rules! api {
    ($e:expr) => {
        match $e.await {
            Ok(Json(v)) => v,
            Err(e) => return fail(e),
        }
    };
    // A homeowner handler of one home, called as the page's principal.
    (home $f:path, $s:expr, $p:expr, $home:expr) => {
        api!($f(State($s.clone()), $p.clone(), Path($home.to_owned())))
    };
}

/// The data around a home's page, or the answer to give instead (login, error).
macro_rules! around {
    ($s:expr, $p:expr, $home:expr) => {
        match around($s, $p, $home).await {
            Ok(a) => a,
            Err(r) => return r,
        }
    };
}

/// Refuses a form whose CSRF token is not the session's.
macro_rules! check_csrf {
    ($p:expr, $token:expr) => {
        if !csrf_ok($p, $token) {
            return refused_csrf();
        }
    };
}

/// The data every page of a home shows around its content.
struct Around {
    csrf: String,
    email: String,
    open_alarms: Vec<Value>,
    approvals: Vec<Value>,
}

impl Around {
    fn frame<'a>(&'a self, home: &'a str) -> Frame<'a> {
        Frame {
            home,
            csrf: &self.csrf,
            email: &self.email,
            open_alarms: &self.open_alarms,
            approvals: &self.approvals,
        }
    }
}

async fn around(s: &Arc<Shared>, p: &Principal, home: &str) -> Result<Around, Response> {
    let Principal::Homeowner { token, .. } = p else {
        return Err(Redirect::to("/login").into_response());
    };
    let me = h::me(State(s.clone()), p.clone()).await.map_err(fail)?.0;
    let alarms = open_alarms(s, p, home).await.map_err(fail)?;
    let approvals = h::approvals(State(s.clone()), p.clone(), Path(home.to_owned()))
        .await
        .map_err(fail)?
        .0;
    Ok(Around {
        csrf: csrf_token(token),
        email: me["email"].as_str().unwrap_or("").to_owned(),
        open_alarms: alarms,
        approvals: approvals["approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    })
}

/// The home's open alarms, newest first.
pub(crate) async fn open_alarms(
    s: &Arc<Shared>,
    p: &Principal,
    home: &str,
) -> Result<Vec<Value>, ApiError> {
    let all = h::alarms(State(s.clone()), p.clone(), Path(home.to_owned()))
        .await?
        .0;
    let mut open: Vec<Value> = all["alarms"]
        .as_array()
        .map(|l| l.iter().filter(|a| a["open"] == true).cloned().collect())
        .unwrap_or_default();
    open.reverse();
    Ok(open)
}

/// `GET /`: the home, or the list of homes, or the login page.
pub async fn index(State(s): S, p: Principal) -> Response {
    if !matches!(p, Principal::Homeowner { .. }) {
        return Redirect::to("/login").into_response();
    }
    let homes = api!(h::list_homes(State(s.clone()), p.clone()));
    let list: Vec<&str> = homes["homes"]
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["home"].as_str()).collect())
        .unwrap_or_default();
    if let [one] = list.as_slice() {
        return Redirect::to(&format!("/homes/{one}")).into_response();
    }
    let csrf = match &p {
        Principal::Homeowner { token, .. } => csrf_token(token),
        _ => String::new(),
    };
    let body = html! {
        main #main {
            h1 { "Your homes" }
            @if list.is_empty() { p { "No home yet: add one with the Doorward app or ask your installer." } }
            ul { @for home in &list { li { a href={ "/homes/" (home) } { (home) } } } }
            form method="post" action="/logout" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Sign out" }
            }
        }
    };
    render::document("Your homes", "", &csrf, body)
}

fn login_form(message: Option<&str>, email: &str) -> Response {
    let body = html! {
        main #main.login {
            h1 { "Sign in to Doorward" }
            @if let Some(m) = message { p.error #login-error role="alert" { (m) } }
            form method="post" action="/login" {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button #sign-in type="submit" { "Sign in" }
            }
        }
    };
    render::document("Sign in", "", "", body)
}

/// `GET /login`.
pub async fn login_page(p: Principal) -> Response {
    if matches!(p, Principal::Homeowner { .. }) {
        return Redirect::to("/").into_response();
    }
    login_form(None, "")
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

/// `POST /login`: the API's login (its rate limits included); the session cookie it sets is
/// passed on with a redirect to the home.
pub async fn login(
    State(s): S,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let creds: h::Credentials =
        match serde_json::from_value(json!({"email": f.email, "password": f.password})) {
            Ok(c) => c,
            Err(_) => return login_form(Some("Enter an email and a password."), &f.email),
        };
    match h::login(State(s), ConnectInfo(addr), h::JsonBody(creds)).await {
        Ok(r) => {
            let mut out = Redirect::to("/").into_response();
            if let Some(c) = r.headers().get(header::SET_COOKIE) {
                out.headers_mut().insert(header::SET_COOKIE, c.clone());
            }
            out
        }
        Err(e) => {
            let status = e.status;
            let mut r = login_form(Some(&e.message), &f.email);
            *r.status_mut() = status;
            r
        }
    }
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
pub struct TokenForm {
    csrf: Option<String>,
}

fn refused_csrf() -> Response {
    error_response(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this page: reload the page and try again.",
    )
}

/// `POST /logout`.
pub async fn logout(State(s): S, p: Principal, Form(f): Form<TokenForm>) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    match h::logout(State(s), p).await {
        Ok(r) => {
            let mut out = Redirect::to("/login").into_response();
            if let Some(c) = r.headers().get(header::SET_COOKIE) {
                out.headers_mut().insert(header::SET_COOKIE, c.clone());
            }
            out
        }
        Err(e) => fail(e),
    }
}

/// `GET /homes/{home}`: the dashboard.
pub async fn dashboard(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = around!(&s, &p, &home);
    let st = api!(home h::home_state, s, p, home);
    let content = html! {
        (doors(&st))
        p.note { "Every value rests on a signed report from the device and shows its age; a value \
            without fresh evidence shows UNKNOWN. Updates arrive live." }
    };
    home_page(&a.frame(&home), Tab::Dashboard, "Home", content)
}

/// The doors of a state snapshot (also rebuilt by the script on every live update).
fn doors(st: &Value) -> Markup {
    let empty = Vec::new();
    let doors = st["doors"].as_array().unwrap_or(&empty);
    html! {
        div #doors data-epoch=(st["epoch"]) {
            @if doors.is_empty() { p { "No door is paired yet." } }
            @for (i, d) in doors.iter().enumerate() {
                section.door aria-label={ "Door " (d["lock_id"].as_str().unwrap_or("")) } {
                    h2.door-name { "Door · " (d["lock_id"].as_str().unwrap_or("")) }
                    p.delivery #{ "delivery-" (i) } aria-live="polite" {
                        @match d["delivery"]["delivery"].as_str() {
                            Some(del) => { "Delivery " (del) " · " (phase_text(d["delivery"]["phase"].as_str().unwrap_or(""))) }
                            None => { "No delivery in progress" }
                        }
                    }
                    div.cards {
                        (render::state_card(i, "lock", d))
                        (render::state_card(i, "door", d))
                        (render::state_card(i, "camera", d))
                    }
                }
            }
        }
    }
}

/// A delivery phase as people read it.
pub fn phase_text(p: &str) -> &'static str {
    match p {
        "scheduled" => "scheduled",
        "at_door" => "driver at the door",
        "unlocking" => "unlocking",
        "entry" => "door unlocked for the entry",
        "relocked" => "relocked",
        "egress_witnessed" => "driver seen leaving",
        "done" => "done",
        "incident" => "ended with an alarm",
        "expired" => "window ended without an entry",
        "cancelled" => "called off before anybody was let in",
        _ => "in progress",
    }
}

/// One delivery's or visit's story, gathered from the entry events.
#[derive(Default)]
struct Story {
    delivery: String,
    driver: Option<String>,
    requested_ms: Option<u64>,
    outcome: Option<String>,
    unlocked_ms: Option<u64>,
    relocked_ms: Option<u64>,
    last_phase: Option<String>,
    grant: Option<String>,
    /// The audit indexes of its events.
    first_index: Option<u64>,
    last_index: Option<u64>,
}

/// Most segments of one entry its player shows (the rest are in the footage export).
pub const MAX_CLIP_SEGMENTS: usize = 16;

/// The stretch of the home's record a verification proves: hash-linked from the start and
/// covered by a signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Entries `[from, to)` verify.
    Proved {
        /// First index proved.
        from: u64,
        /// First index not proved (entries from here on are newer than the last signed
        /// checkpoint).
        to: u64,
    },
    /// The record does not verify. What a checkpoint before the first problem covers is
    /// still proved (`proven`); nothing after it is vouched for.
    Broken {
        /// Entries covered by a verified checkpoint before the problem.
        proven: Option<std::ops::Range<u64>>,
        /// The problem.
        why: String,
    },
}

impl Coverage {
    /// What [`doorward_control::audit::verify_export_proving`] said, as the stretch it
    /// proves. A record whose only failure is that its newest entries await their signed
    /// checkpoint proves everything before them.
    pub fn of(v: &Verification) -> Coverage {
        use doorward_control::audit::{VerifyFailure, VerifyPlace};
        match &v.result {
            Ok(r) => Coverage::Proved {
                from: r.first_index,
                to: r.first_index + r.entries,
            },
            Err(e) => match (&e.place, &e.failure) {
                (VerifyPlace::End(i), VerifyFailure::Uncovered) => Coverage::Proved {
                    from: v.proven.as_ref().map_or(*i, |r| r.start),
                    to: *i,
                },
                _ => Coverage::Broken {
                    proven: v.proven.clone(),
                    why: e.to_string(),
                },
            },
        }
    }

    /// The mark of an entry whose events are at audit indexes `first..=last`.
    pub fn mark(&self, first: u64, last: u64) -> Mark {
        match self {
            Coverage::Proved { from, to } if first >= *from && last < *to => Mark::Verifies,
            Coverage::Proved { to, .. } if last >= *to => Mark::AwaitingCheckpoint,
            Coverage::Proved { .. } => Mark::NotInRecord,
            Coverage::Broken {
                proven: Some(r), ..
            } if r.contains(&first) && r.contains(&last) => Mark::Verifies,
            Coverage::Broken { .. } => Mark::Fails,
        }
    }
}

/// Whether one entry's record verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Its events are hash-linked and covered by a signed checkpoint.
    Verifies,
    /// Its newest events are not yet covered by a signed checkpoint.
    AwaitingCheckpoint,
    /// Its events are not in the verified export.
    NotInRecord,
    /// The record does not verify.
    Fails,
}

fn mark_markup(m: Mark) -> Markup {
    let (class, text) = match m {
        Mark::Verifies => (
            "ok",
            "✓ Record verifies: hash-linked and covered by a signed checkpoint",
        ),
        Mark::AwaitingCheckpoint => (
            "pending",
            "… Recorded; the next signed checkpoint (within seconds) will cover it",
        ),
        Mark::NotInRecord => ("error", "✗ Not in the verified record"),
        Mark::Fails => ("error", "✗ Record does NOT verify: see Record"),
    };
    html! { p.mark.(class) data-mark=(class) { (text) } }
}

/// An entry's footage: a frame player over its uploaded segments.
fn clip(home: &str, del: &str, segs: &[doorward_store::FootageSegment]) -> Markup {
    let uploaded: Vec<&doorward_store::FootageSegment> =
        segs.iter().filter(|r| r.uploaded_ms.is_some()).collect();
    let srcs: Vec<String> = uploaded
        .iter()
        .flat_map(|r| {
            (0..r.frames.len())
                .map(move |i| format!("/homes/{home}/footage/{}/{}/{i}", r.camera, r.seq))
        })
        .collect();
    let waiting = segs.len() - uploaded.len();
    html! {
        @if segs.is_empty() {
            p.nofootage { "No footage: the camera proved no recording for this entry." }
        } @else if srcs.is_empty() {
            p.nofootage { (segs.len()) " segment(s) proved by the camera; frames not uploaded yet." }
        } @else {
            figure.clip data-srcs=(srcs.join(" ")) {
                img.frame src=(srcs[0]) width="256" height="192"
                    alt={ "Frame 1 of " (srcs.len()) " recorded at the door for delivery " (del) };
                figcaption {
                    span.counter aria-live="polite" { "Frame 1 of " (srcs.len()) }
                    " · " (uploaded.len()) " segment(s) from " (uploaded[0].camera.as_str())
                    ", from " (when(uploaded[0].at_ms))
                    @if waiting > 0 { " · " (waiting) " more not uploaded yet" }
                }
                div.player hidden {
                    button.prev type="button" aria-label="Previous frame" { "◀" }
                    button.play type="button" aria-pressed="false" { "Play" }
                    button.next type="button" aria-label="Next frame" { "▶" }
                }
            }
        }
    }
}

/// `GET /homes/{home}/entries`: the timeline of deliveries and visits.
pub async fn entries(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = around!(&s, &p, &home);
    let ev = api!(home h::entries, s, p, home);
    let dels = api!(home h::deliveries, s, p, home);
    let carriers: HashMap<String, String> = dels["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some((
                d["delivery"].as_str()?.to_owned(),
                d["carrier"].as_str()?.to_owned(),
            ))
        })
        .collect();
    // Not started yet, so still possible to call off.
    let upcoming: Vec<&Value> = dels["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            matches!(
                d["state"].as_str(),
                Some("scheduled" | "assigned" | "in_progress")
            ) && matches!(d["phase"].as_str(), Some("scheduled" | "at_door"))
        })
        .collect();
    let mut order: Vec<String> = Vec::new();
    let mut stories: HashMap<String, Story> = HashMap::new();
    for e in ev["entries"].as_array().into_iter().flatten() {
        let Some(del) = e["delivery"].as_str() else {
            continue;
        };
        let st = stories.entry(del.to_owned()).or_insert_with(|| {
            order.push(del.to_owned());
            Story {
                delivery: del.to_owned(),
                ..Story::default()
            }
        });
        if let Some(i) = e["index"].as_u64() {
            st.first_index = Some(st.first_index.map_or(i, |f| f.min(i)));
            st.last_index = Some(st.last_index.map_or(i, |l| l.max(i)));
        }
        let at = e["at_ms"].as_u64();
        match e["event"].as_str().unwrap_or("") {
            "requested" => {
                st.requested_ms = st.requested_ms.or(at);
                st.driver = e["driver"].as_str().map(str::to_owned);
            }
            "authorised" => {
                st.outcome = Some("authorised".into());
                st.grant = e["grant"].as_str().map(str::to_owned);
            }
            "denied" | "lock_denied" => {
                st.outcome = Some(format!(
                    "denied ({})",
                    e["reason"].as_str().unwrap_or("?").replace('_', " ")
                ))
            }
            "phase" => {
                let ph = e["phase"].as_str().unwrap_or("");
                match ph {
                    "entry" => st.unlocked_ms = at,
                    "relocked" => st.relocked_ms = at,
                    _ => {}
                }
                st.last_phase = Some(ph.to_owned());
            }
            _ => {}
        }
    }
    let mut footage = HashMap::new();
    for del in &order {
        let Ok(id) = doorward_proto::Id::new(del.as_str()) else {
            continue;
        };
        match crate::footage::owner_delivery_segments(&s, &p, &home, &id, MAX_CLIP_SEGMENTS).await {
            Ok(rows) => {
                footage.insert(del.clone(), rows);
            }
            Err(e) => return fail(e),
        }
    }
    let coverage = match verify_current(&s, &p, &home).await {
        Ok(r) => Coverage::of(&r),
        Err(e) => return fail(e),
    };
    let content = html! {
        p.verdict {
            @match &coverage {
                Coverage::Proved { to, .. } => { "The record these entries come from verifies up to entry " (to)
                    " (hash chain and server signatures); each entry says whether it is covered." }
                Coverage::Broken { proven, why } => {
                    "The record these entries come from does NOT verify (" (why) "): see Record. "
                    @if let Some(r) = proven { "Entries " (r.start) " to " (r.end - 1) " are still covered by a verified signed checkpoint." }
                }
            }
        }
        @if !upcoming.is_empty() {
            h2 { "Upcoming" }
            ul.upcoming #upcoming {
                @for d in &upcoming {
                    @let id = d["delivery"].as_str().unwrap_or("");
                    li.upcoming data-delivery=(id) {
                        "Delivery " (id) " · " (d["carrier"].as_str().unwrap_or("?")) " · "
                        (when(d["not_before_ms"].as_u64().unwrap_or(0))) " to "
                        (when(d["not_after_ms"].as_u64().unwrap_or(0)))
                        form method="post" action={ "/homes/" (home) "/deliveries/" (id) "/cancel" } {
                            input type="hidden" name="csrf" value=(a.csrf);
                            button.deny type="submit" aria-label={ "Cancel delivery " (id) } { "Cancel this delivery" }
                        }
                    }
                }
            }
            h2 { "Past and under way" }
        }
        @if order.is_empty() { p { "No entries yet." } }
        ol.timeline #timeline {
            @for del in order.iter().rev() {
                @let st = &stories[del];
                li.entry data-delivery=(st.delivery) {
                    h2 { "Delivery " (st.delivery) }
                    @if let (Some(f), Some(l)) = (st.first_index, st.last_index) { (mark_markup(coverage.mark(f, l))) }
                    dl {
                        dt { "Carrier" } dd { (carriers.get(del).map_or("?", String::as_str)) }
                        dt { "Driver key" } dd.mono { (st.driver.as_deref().map(short).unwrap_or_else(|| "?".into())) }
                        dt { "Asked" } dd { @if let Some(t) = st.requested_ms { (when(t)) } @else { "—" } }
                        dt { "Decision" } dd.outcome { (st.outcome.as_deref().unwrap_or(
                            if matches!(st.last_phase.as_deref(), Some("cancelled" | "expired")) { "none: nobody asked to enter" } else { "pending" }
                        )) }
                        dt { "Door open" } dd {
                            @match (st.unlocked_ms, st.relocked_ms) {
                                (Some(a), Some(b)) => { (age(b.saturating_sub(a))) " (unlocked to relocked)" }
                                (Some(_), None) => { "still open or not relocked" }
                                _ => { "not opened" }
                            }
                        }
                        dt { "Phase" } dd { (phase_text(st.last_phase.as_deref().unwrap_or(""))) }
                        @if let Some(g) = &st.grant { dt { "Grant" } dd.mono { (g) } }
                        @if let (Some(f), Some(l)) = (st.first_index, st.last_index) {
                            dt { "Record" } dd.mono { "entries " (f) "–" (l) }
                        }
                    }
                    (clip(&home, del, footage.get(del).map_or(&[][..], Vec::as_slice)))
                }
            }
        }
    };
    home_page(&a.frame(&home), Tab::Entries, "Entries", content)
}

/// `GET /homes/{home}/alarms`.
pub async fn alarms(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = around!(&s, &p, &home);
    let all = api!(home h::alarms, s, p, home);
    let closed: Vec<&Value> = all["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["open"] != true)
        .collect();
    let content = html! {
        @if a.open_alarms.is_empty() { p #no-alarms { "No open alarm." } }
        @else { p { (a.open_alarms.len()) " open alarm(s), shown above." } }
        h2 { "Acknowledged" }
        @if closed.is_empty() { p { "None." } }
        ul.history {
            @for x in closed.iter().rev() {
                li { (when(x["raised_ms"].as_u64().unwrap_or(0))) " · "
                    (x["kind"].as_str().unwrap_or("").replace('_', " "))
                    @if let Some(d) = x["device"].as_str() { " · " (d) } }
            }
        }
    };
    home_page(&a.frame(&home), Tab::Alarms, "Alarms", content)
}

/// `GET /homes/{home}/approvals`.
pub async fn approvals(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = around!(&s, &p, &home);
    let pol = api!(home h::get_policy, s, p, home);
    let content = html! {
        @if pol["live_approval"] == true {
            p { "Live approval is on: each arriving driver waits for your answer, shown above as \
                soon as they ask. Without an answer before the deadline the entry is denied." }
        } @else {
            p { "Live approval is off: entries inside your windows go ahead without asking. \
                Turn it on under Access." }
        }
        @if a.approvals.is_empty() { p #no-approvals { "Nobody is waiting." } }
    };
    home_page(&a.frame(&home), Tab::Approvals, "Approvals", content)
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn window_text(start: u64, end: u64) -> String {
    let day = (start / 1440) as usize;
    let hm = |m: u64| {
        let m = m - (start / 1440) * 1440;
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{} {}-{}", DAYS[day.min(6)], hm(start), hm(end))
}

/// Parses `Mon 08:00-18:00` into minutes of the week (`24:00` closes a day).
fn parse_window(line: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{line:?}: write a window as \"Mon 08:00-18:00\"");
    let (day, range) = line.trim().split_once(' ').ok_or_else(bad)?;
    let d = DAYS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(day.trim()))
        .ok_or_else(bad)? as u32;
    let (a, b) = range.trim().split_once('-').ok_or_else(bad)?;
    let hm = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (a, b) = (hm(a)?, hm(b)?);
    if a >= b {
        return Err(format!("{line:?}: the window must end after it starts"));
    }
    Ok((d * 1440 + a, d * 1440 + b))
}

/// `GET /homes/{home}/access`.
pub async fn access(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    access_page(&s, &p, &home, None).await
}

async fn access_page(s: &Arc<Shared>, p: &Principal, home: &str, note: Option<Markup>) -> Response {
    let a = around!(s, p, home);
    let dir = api!(h::carrier_directory(State(s.clone()), p.clone()));
    let mine = api!(home h::home_carriers, s, p, home);
    let pol = api!(home h::get_policy, s, p, home);
    let guests = api!(home crate::api::guests::list_guests, s, p, home);
    let revs = api!(home h::revocations, s, p, home);
    let st = api!(home h::home_state, s, p, home);
    let locks: Vec<&str> = st["doors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["lock_id"].as_str())
        .collect();
    let empty = Vec::new();
    let revs = revs["revocations"].as_array().unwrap_or(&empty);
    // A guest is revoked once a revocation names its key.
    let revoked_keys: Vec<&str> = revs
        .iter()
        .flat_map(|r| r["items"].as_array().into_iter().flatten())
        .filter_map(|i| i["driver"].as_str())
        .collect();
    let opted: HashMap<&str, bool> = mine["carriers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["id"].as_str()?, c["opted_in"] == true)))
        .collect();
    let windows: Vec<String> = pol["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            window_text(
                w["start_min"].as_u64().unwrap_or(0),
                w["end_min"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let csrf = &a.csrf;
    let content = html! {
        @if let Some(n) = note { div.notice role="status" { (n) } }
        h2 { "Carriers" }
        p { "Only carriers you opt in can ever ask to enter. Revoking one takes away every grant \
            it holds for this home at once." }
        ul.carriers {
            @for c in dir["carriers"].as_array().into_iter().flatten() {
                @let id = c["id"].as_str().unwrap_or("");
                li.carrier #{ "carrier-" (id) } {
                    span.name { (c["name"].as_str().unwrap_or(id)) " (" (id) ")" }
                    @if opted.get(id) == Some(&true) {
                        span.badge.on { "opted in" }
                        form method="post" action={ "/homes/" (home) "/carriers/" (id) "/revoke" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button.deny type="submit" aria-label={ "Revoke " (id) " now" } { "Revoke now" }
                        }
                    } @else {
                        span.badge { @if opted.contains_key(id) { "revoked" } @else { "not opted in" } }
                        form method="post" action={ "/homes/" (home) "/carriers/" (id) "/opt-in" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" aria-label={ "Opt " (id) " in" } { "Opt in" }
                        }
                    }
                }
            }
        }
        h2 { "Rules" }
        form.policy method="post" action={ "/homes/" (home) "/policy" } {
            input type="hidden" name="csrf" value=(csrf);
            label for="windows" { "Delivery windows (one per line, e.g. \"Mon 08:00-18:00\", UTC; none: any time)" }
            textarea #windows name="windows" rows="4" { (windows.join("\n")) }
            div.check { input #live_approval type="checkbox" name="live_approval" value="on" checked[pol["live_approval"] == true];
                label for="live_approval" { "Ask me live before each entry" } }
            div.check { input #garage_only type="checkbox" name="garage_only" value="on" checked[pol["garage_only"] == true];
                label for="garage_only" { "Garage only (no entry through the front door)" } }
            div.check { input #vacation type="checkbox" name="vacation" value="on" checked[pol["vacation"] == true];
                label for="vacation" { "Vacation mode (no entries at all)" } }
            button #save-policy type="submit" { "Save rules" }
        }
        h2 #guests-h { "Guests" }
        p { "A guest opens the door from their phone with their own key, only within their \
            schedule, under the same rules as a delivery. Times are UTC." }
        ul.guests #guests aria-labelledby="guests-h" {
            @for g in guests["guests"].as_array().into_iter().flatten() {
                @let id = g["guest"].as_str().unwrap_or("");
                @let key = g["key"].as_str().unwrap_or("");
                @let revoked = revoked_keys.contains(&key);
                li.guest #{ "guest-" (id) } {
                    span.name { (g["name"].as_str().unwrap_or(id)) }
                    span.mono { " key " (short(key)) }
                    @if revoked { span.badge { "revoked" } } @else { span.badge.on { "active" } }
                    ul.visits {
                        @for v in g["visits"].as_array().into_iter().flatten() {
                            li { (when(v["not_before_ms"].as_u64().unwrap_or(0))) " to "
                                (when(v["not_after_ms"].as_u64().unwrap_or(0))) " · door "
                                (v["lock"].as_str().unwrap_or("?")) }
                        }
                    }
                    @if !revoked {
                        form method="post" action={ "/homes/" (home) "/guests/" (id) "/revoke" } {
                            input type="hidden" name="csrf" value=(csrf);
                            button.deny type="submit" aria-label={ "Revoke guest " (g["name"].as_str().unwrap_or(id)) " now" } { "Revoke now" }
                        }
                    }
                }
            }
        }
        @if guests["guests"].as_array().is_none_or(Vec::is_empty) { p #no-guests { "No guest yet." } }
        (guest_form(home, csrf, &locks))
        h2 #revocations-h { "Revocations" }
        p { "A revocation takes effect at the server at once; the door's lock enforces it from \
            the moment it applies the new revocation epoch, which it confirms in a signed report." }
        (revocation_list(revs, &locks))
    };
    home_page(&a.frame(home), Tab::Access, "Access", content)
}

/// The form that adds a guest with a schedule.
fn guest_form(home: &str, csrf: &str, locks: &[&str]) -> Markup {
    html! {
        form.guest-form #guest-form method="post" action={ "/homes/" (home) "/guests" } {
            input type="hidden" name="csrf" value=(csrf);
            h3 { "Add a guest" }
            label for="g-name" { "Name" }
            input #g-name type="text" name="name" required maxlength="64" autocomplete="off";
            label for="g-key" { "Their phone's key (64 hex digits, shown in their Doorward app)" }
            input #g-key.mono type="text" name="key" required pattern="[0-9a-fA-F]{64}"
                autocomplete="off" spellcheck="false";
            label for="g-lock" { "Door" }
            @if locks.is_empty() {
                input #g-lock type="text" name="lock" required;
            } @else {
                select #g-lock name="lock" { @for l in locks { option value=(l) { (l) } } }
            }
            fieldset {
                legend { "Schedule" }
                div.check { input #g-once type="radio" name="kind" value="once" checked;
                    label for="g-once" { "Once" } }
                div.check { input #g-weekly type="radio" name="kind" value="weekly";
                    label for="g-weekly" { "Every week" } }
                div.check { input #g-range type="radio" name="kind" value="range";
                    label for="g-range" { "Every day between two dates" } }
                label for="g-start" { "Once: from (date and time, UTC)" }
                input #g-start type="datetime-local" name="start";
                label for="g-end" { "Once: until (date and time, UTC)" }
                input #g-end type="datetime-local" name="end";
                p.legend { "Every week: on" }
                div.days {
                    @for (i, d) in DAYS.iter().enumerate() {
                        div.check { input id={ "g-day" (i) } type="checkbox" name={ "day" (i) } value="on";
                            label for={ "g-day" (i) } { (d) } }
                    }
                }
                label for="g-from-date" { "Between dates: first day" }
                input #g-from-date type="date" name="from_date";
                label for="g-until-date" { "Between dates: last day" }
                input #g-until-date type="date" name="until_date";
                label for="g-daily-start" { "Every week / between dates: from (UTC)" }
                input #g-daily-start type="time" name="daily_start";
                label for="g-daily-end" { "Every week / between dates: until (UTC)" }
                input #g-daily-end type="time" name="daily_end";
            }
            button #add-guest type="submit" { "Add guest" }
        }
    }
}

/// The home's revocations, newest first, each with when each lock confirmed it.
fn revocation_list(revs: &[Value], locks: &[&str]) -> Markup {
    let pending = revs.iter().any(|r| {
        let acks = r["acks"].as_array();
        locks
            .iter()
            .any(|l| !acks.into_iter().flatten().any(|a| a["lock"] == *l))
    });
    html! {
        @if revs.is_empty() { p #no-revocations { "Nothing revoked yet." } }
        ol.revocations #revocations aria-labelledby="revocations-h" data-pending[pending] {
            @for r in revs.iter().rev() {
                li.revocation #{ "revocation-" (r["epoch"]) } {
                    p { strong { "Epoch " (r["epoch"]) } " · revoked "
                        @for (i, it) in r["items"].as_array().into_iter().flatten().enumerate() {
                            @if i > 0 { ", " }
                            (revoked_text(it))
                        }
                        " · sent at " (when(r["issued_ms"].as_u64().unwrap_or(0))) }
                    ul {
                        @for l in locks {
                            @let ack = r["acks"].as_array().into_iter().flatten().find(|a| a["lock"] == *l);
                            @match ack {
                                Some(a) => {
                                    li.acked { "Reached lock " (l) " at " (when(a["at_ms"].as_u64().unwrap_or(0)))
                                        " (" (age(a["at_ms"].as_u64().unwrap_or(0).saturating_sub(r["issued_ms"].as_u64().unwrap_or(0))))
                                        " after it was sent; the lock's signed report #" (a["seq"]) " holds epoch " (a["epoch"]) ")" }
                                }
                                None => {
                                    li.unconfirmed { "Lock " (l) ": sent at " (when(r["issued_ms"].as_u64().unwrap_or(0)))
                                        " — not yet confirmed by the lock" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A revoked item as people read it.
fn revoked_text(item: &Value) -> Markup {
    html! {
        @if let Some(c) = item["carrier"].as_str() { "carrier " (c) }
        @else if let Some(d) = item["driver"].as_str() { "key " span.mono { (short(d)) } }
        @else if let Some(g) = item["grant"].as_str() { "grant " span.mono { (short(g)) } }
    }
}

/// The guest form.
#[derive(Deserialize)]
pub struct GuestForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    lock: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    day0: Option<String>,
    day1: Option<String>,
    day2: Option<String>,
    day3: Option<String>,
    day4: Option<String>,
    day5: Option<String>,
    day6: Option<String>,
    #[serde(default)]
    from_date: String,
    #[serde(default)]
    until_date: String,
    #[serde(default)]
    daily_start: String,
    #[serde(default)]
    daily_end: String,
}

impl GuestForm {
    /// The schedule as the guest API takes it.
    fn schedule(&self) -> Result<Value, String> {
        let daily = || -> Result<(u32, u32), String> {
            Ok((
                parse_hm(&self.daily_start, "from")?,
                parse_hm(&self.daily_end, "until")?,
            ))
        };
        match self.kind.as_str() {
            "once" => Ok(json!({
                "kind": "once",
                "start_ms": parse_datetime(&self.start, "from")?,
                "end_ms": parse_datetime(&self.end, "until")?,
            })),
            "weekly" => {
                let days: Vec<u8> = [
                    &self.day0, &self.day1, &self.day2, &self.day3, &self.day4, &self.day5,
                    &self.day6,
                ]
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_some())
                .map(|(i, _)| i as u8)
                .collect();
                if days.is_empty() {
                    return Err("choose at least one day of the week".into());
                }
                let (a, b) = daily()?;
                Ok(json!({"kind": "weekly", "days": days, "start_min": a, "end_min": b}))
            }
            "range" => {
                let (a, b) = daily()?;
                let from = parse_date(&self.from_date, "first day")?;
                // The last day is included: visits may start until its end.
                let until = parse_date(&self.until_date, "last day")? + 86_400_000;
                Ok(json!({"kind": "range", "from_ms": from, "until_ms": until,
                    "start_min": a, "end_min": b}))
            }
            _ => Err("choose once, every week or between dates".into()),
        }
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (an `<input type="date">`) as ms since the epoch, UTC midnight.
fn parse_date(t: &str, what: &str) -> Result<u64, String> {
    let bad = || format!("{what}: a date such as 2026-05-01");
    let mut it = t.trim().splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) as u64 * 86_400_000)
}

/// `HH:MM` (an `<input type="time">`) as minutes of the day; `24:00` is the day's end.
fn parse_hm(t: &str, what: &str) -> Result<u32, String> {
    let bad = || format!("{what}: a time such as 09:30");
    let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `YYYY-MM-DDTHH:MM` (an `<input type="datetime-local">`, read as UTC) as ms since the epoch.
fn parse_datetime(t: &str, what: &str) -> Result<u64, String> {
    let (d, hm) = t
        .trim()
        .split_once('T')
        .ok_or_else(|| format!("{what}: a date and time such as 2026-05-01T09:30"))?;
    // Seconds, if the browser sends them, are dropped.
    let hm = hm.get(..5).unwrap_or(hm);
    Ok(parse_date(d, what)? + u64::from(parse_hm(hm, what)?) * 60_000)
}

/// `POST /homes/{home}/guests`: adds a guest through the guest API.
pub async fn add_guest(
    State(s): S,
    p: Principal,
    Path(home): Path<String>,
    Form(f): Form<GuestForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let not_added = |m: &str| html! { p.error role="alert" { "Guest not added: " (m) } };
    let schedule = match f.schedule() {
        Ok(v) => v,
        Err(m) => return access_page(&s, &p, &home, Some(not_added(&m))).await,
    };
    let body = json!({"name": f.name, "key": f.key.trim(), "lock": f.lock, "schedule": schedule});
    let body: crate::api::guests::NewGuest = match serde_json::from_value(body) {
        Ok(b) => b,
        Err(e) => return access_page(&s, &p, &home, Some(not_added(&e.to_string()))).await,
    };
    match crate::api::guests::add_guest(
        State(s.clone()),
        p.clone(),
        Path(home.clone()),
        h::JsonBody(body),
    )
    .await
    {
        Ok(_) => {
            let note = html! { p #guest-added { "Guest " (f.name.trim()) " added." } };
            access_page(&s, &p, &home, Some(note)).await
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::NOT_FOUND => {
            fail(e)
        }
        Err(e) => access_page(&s, &p, &home, Some(not_added(&e.message))).await,
    }
}

/// `POST /homes/{home}/guests/{guest}/revoke`: revokes the guest's key at the home's locks.
pub async fn revoke_guest(
    State(s): S,
    p: Principal,
    Path((home, guest)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let list = api!(home crate::api::guests::list_guests, s, p, home);
    let Some(g) = list["guests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["guest"] == guest.as_str())
    else {
        return fail(ApiError::not_found("guest"));
    };
    let name = g["name"].as_str().unwrap_or(&guest).to_owned();
    revoke_item(
        &s,
        &p,
        &home,
        json!({"driver": g["key"]}),
        &format!("guest {name}"),
    )
    .await
}

/// `POST /homes/{home}/deliveries/{delivery}/cancel`: calls a delivery off before anybody is
/// let in, then shows the entries again.
pub async fn cancel_delivery(
    State(s): S,
    p: Principal,
    Path((home, delivery)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    match h::cancel_delivery(State(s.clone()), p.clone(), Path((home.clone(), delivery))).await {
        Ok(_) => Redirect::to(&format!("/homes/{home}/entries")).into_response(),
        Err(e) => fail(e),
    }
}

/// Revokes `item` (the API's revocation body) and shows the access page with what was done.
async fn revoke_item(
    s: &Arc<Shared>,
    p: &Principal,
    home: &str,
    item: Value,
    what: &str,
) -> Response {
    let body: h::RevokeBody = match serde_json::from_value(item) {
        Ok(b) => b,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let r = match h::revoke(
        State(s.clone()),
        p.clone(),
        Path(home.to_owned()),
        h::JsonBody(body),
    )
    .await
    {
        Ok(Json(v)) => v,
        Err(e) => return fail(e),
    };
    let note = html! {
        p #revoked { "Revoked " (what) " at " (when(crate::runtime::wall_ms()))
            ": the server refuses its requests from now on (revocation epoch " (r["epoch"]) ")." }
        p { "Sent to the lock: below, each lock shows when it confirmed the new epoch." }
    };
    access_page(s, p, home, Some(note)).await
}

/// `POST /homes/{home}/carriers/{carrier}/opt-in`.
pub async fn opt_in(
    State(s): S,
    p: Principal,
    Path((home, carrier)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let r = h::opt_in(State(s.clone()), p.clone(), Path((home.clone(), carrier))).await;
    if let Err(e) = r {
        return fail(e);
    }
    Redirect::to(&format!("/homes/{home}/access")).into_response()
}

/// `POST /homes/{home}/carriers/{carrier}/revoke`: revoke now.
pub async fn revoke(
    State(s): S,
    p: Principal,
    Path((home, carrier)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let what = format!("carrier {carrier}");
    revoke_item(&s, &p, &home, json!({ "carrier": carrier }), &what).await
}

/// The rules form.
#[derive(Deserialize)]
pub struct PolicyForm {
    csrf: Option<String>,
    #[serde(default)]
    windows: String,
    live_approval: Option<String>,
    garage_only: Option<String>,
    vacation: Option<String>,
}

/// `POST /homes/{home}/policy`.
pub async fn set_policy(
    State(s): S,
    p: Principal,
    Path(home): Path<String>,
    Form(f): Form<PolicyForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let mut windows = Vec::new();
    for line in f.windows.lines().filter(|l| !l.trim().is_empty()) {
        match parse_window(line) {
            Ok((a, b)) => windows.push(json!({"start_min": a, "end_min": b})),
            Err(m) => {
                let note = html! { p.error role="alert" { "Not saved: " (m) } };
                return access_page(&s, &p, &home, Some(note)).await;
            }
        }
    }
    let body: h::PolicyJson = match serde_json::from_value(json!({
        "windows": windows,
        "live_approval": f.live_approval.is_some(),
        "garage_only": f.garage_only.is_some(),
        "vacation": f.vacation.is_some(),
    })) {
        Ok(b) => b,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Err(e) = h::put_policy(
        State(s.clone()),
        p.clone(),
        Path(home.clone()),
        h::JsonBody(body),
    )
    .await
    {
        let note = html! { p.error role="alert" { "Not saved: " (e.message) } };
        return access_page(&s, &p, &home, Some(note)).await;
    }
    let note = html! { p #saved { "Rules saved." } };
    access_page(&s, &p, &home, Some(note)).await
}

/// `POST /homes/{home}/alarms/{alarm}/ack`.
pub async fn ack_alarm(
    State(s): S,
    p: Principal,
    Path((home, alarm)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    if let Err(e) = h::ack_alarm(State(s), p, Path((home.clone(), alarm))).await {
        return fail(e);
    }
    Redirect::to(&format!("/homes/{home}/alarms")).into_response()
}

/// `POST /homes/{home}/approvals/{request}/{approve|deny}`.
pub async fn answer_approval(
    State(s): S,
    p: Principal,
    Path((home, request, answer)): Path<(String, String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    check_csrf!(&p, f.csrf.as_deref());
    let path = Path((home.clone(), request));
    let r = match answer.as_str() {
        "approve" => h::approve(State(s), p, path).await,
        "deny" => h::deny(State(s), p, path).await,
        _ => return error_response(StatusCode::NOT_FOUND, "Answer with approve or deny."),
    };
    match r {
        Ok(_) => Redirect::to(&format!("/homes/{home}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => error_response(
            StatusCode::CONFLICT,
            "This request is no longer open: it was answered, or its deadline passed and the \
             entry was denied.",
        ),
        Err(e) => fail(e),
    }
}

/// `GET /homes/{home}/record`.
pub async fn record(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = around!(&s, &p, &home);
    let content = html! {
        p { "Every decision, device report and alarm of this home is in a hash-chained record \
            whose checkpoints the server signs. Download it to keep your own copy; anyone can \
            check it offline with " code { "doorward audit verify" } "." }
        p { a.button #download href={ "/api/homes/" (home) "/audit" } download { "Download the record" } }
        h2 { "Verify" }
        p { "The server runs the same verification as " code { "doorward audit verify" }
            " against its own signing key." }
        form #verify-form method="post" action={ "/homes/" (home) "/record/verify" } {
            input type="hidden" name="csrf" value=(a.csrf);
            label for="export-file" { "A downloaded record (leave empty to verify the current one)" }
            input #export-file type="file" accept=".dwaudit,application/octet-stream";
            button #verify type="submit" { "Verify" }
        }
        div #verdict role="status" aria-live="polite" {}
    };
    home_page(&a.frame(&home), Tab::Record, "Record", content)
}

use doorward_control::audit::Verification;

/// A verification's verdict as JSON.
fn verdict(v: &Verification) -> Value {
    let proven = v.proven.as_ref().map(|r| json!([r.start, r.end]));
    match &v.result {
        Ok(r) => json!({
            "verified": true,
            "home": r.home.as_str(),
            "entries": r.entries,
            "first_index": r.first_index,
            "checkpoints": r.checkpoints,
            "head": r.head.to_hex(),
            "last_checkpoint_ms": r.last_checkpoint_ms,
        }),
        Err(e) => json!({
            "verified": false,
            "first_bad_entry": e.index(),
            "error": e.to_string(),
            "proven": proven,
        }),
    }
}

/// Verifies `bytes` as an export against this server's key, off the async threads.
async fn verify_bytes(s: &Arc<Shared>, bytes: Bytes) -> Result<Verification, ApiError> {
    let key = s.server_key;
    tokio::task::spawn_blocking(move || {
        doorward_control::audit::verify_export_proving(&bytes[..], Some(&key))
    })
    .await
    .map_err(ApiError::internal)
}

/// Exports `home`'s record through the API and verifies it.
async fn verify_current(
    s: &Arc<Shared>,
    p: &Principal,
    home: &str,
) -> Result<Verification, ApiError> {
    let r = h::audit_export(State(s.clone()), p.clone(), Path(home.to_owned())).await?;
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .map_err(ApiError::internal)?;
    verify_bytes(s, bytes).await
}

/// `POST /homes/{home}/record/verify`: from the page's script, the body is a downloaded
/// export (empty: the current record) and the token is in `X-CSRF-Token`; the answer is
/// the verdict as JSON. From the plain form, the current record is verified and the answer
/// is a page.
pub async fn verify_record(
    State(s): S,
    p: Principal,
    Path(home): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let from_script = header_token.is_some();
    let token = match header_token {
        Some(t) => Some(t.to_owned()),
        None => serde_urlencoded_token(&body),
    };
    if !csrf_ok(&p, token.as_deref()) {
        return refused_csrf();
    }
    // The caller must own the home whatever is uploaded (I11).
    if let Err(e) = h::get_policy(State(s.clone()), p.clone(), Path(home.clone())).await {
        return fail(e);
    }
    let checked = if from_script && !body.is_empty() {
        verify_bytes(&s, body).await
    } else {
        verify_current(&s, &p, &home).await
    };
    let v = match checked {
        Ok(r) => verdict(&r),
        Err(e) => return fail(e),
    };
    if from_script {
        return Json(v).into_response();
    }
    let a = around!(&s, &p, &home);
    let content = html! {
        div #verdict role="status" {
            @if v["verified"] == true {
                p.ok { "Verified: " (v["entries"]) " entries, " (v["checkpoints"]) " signed checkpoints." }
            } @else {
                p.error { "NOT VERIFIED. First bad entry: " (v["first_bad_entry"]) ". " (v["error"].as_str().unwrap_or("")) }
                @if let Some(r) = v["proven"].as_array() {
                    p { "Entries " (r[0]) " to " (r[1].as_u64().unwrap_or(1).saturating_sub(1)) " are still covered by a verified signed checkpoint." }
                }
            }
        }
        p { a href={ "/homes/" (home) "/record" } { "Back to the record" } }
    };
    home_page(&a.frame(&home), Tab::Record, "Record", content)
}

/// The `csrf` field of a urlencoded form body (the token is hex, so it needs no decoding).
fn serde_urlencoded_token(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("csrf="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_verifies_only_inside_what_the_record_proves() {
        let proved = Coverage::Proved { from: 0, to: 30 };
        assert_eq!(proved.mark(17, 25), Mark::Verifies);
        assert_eq!(proved.mark(17, 30), Mark::AwaitingCheckpoint);
        let partial = Coverage::Proved { from: 10, to: 30 };
        assert_eq!(partial.mark(5, 12), Mark::NotInRecord);
        let broken = Coverage::Broken {
            proven: None,
            why: "x".into(),
        };
        assert_eq!(broken.mark(1, 2), Mark::Fails);
    }

    #[test]
    fn verification_results_become_coverage() {
        use doorward_control::audit::{VerifyError, VerifyFailure, VerifyPlace};
        let failed = |place, failure, proven| Verification {
            result: Err(VerifyError { place, failure }),
            proven,
        };
        // Only the newest entries waiting for their checkpoint: everything before is proved.
        let tail = failed(VerifyPlace::End(12), VerifyFailure::Uncovered, Some(0..12));
        assert_eq!(Coverage::of(&tail), Coverage::Proved { from: 0, to: 12 });
        // A broken link before any checkpoint verified: nothing is vouched for.
        let broken = failed(VerifyPlace::Entry(3), VerifyFailure::BrokenLink, None);
        let c = Coverage::of(&broken);
        assert!(matches!(c, Coverage::Broken { proven: None, .. }), "{c:?}");
        assert_eq!(c.mark(0, 1), Mark::Fails);
        // A broken link after a verified checkpoint of 8 entries: those still verify, nothing
        // from the checkpoint on does.
        let c = Coverage::of(&failed(
            VerifyPlace::Entry(9),
            VerifyFailure::BrokenLink,
            Some(0..8),
        ));
        assert_eq!(c.mark(2, 7), Mark::Verifies);
        assert_eq!(c.mark(7, 8), Mark::Fails);
        assert_eq!(c.mark(10, 11), Mark::Fails);
    }

    #[test]
    fn guest_schedules_are_read_as_utc() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        // 2023-11-13 00:00 UTC, a Monday.
        assert_eq!(parse_date("2023-11-13", "d"), Ok(1_699_833_600_000));
        assert_eq!(
            parse_datetime("2023-11-13T09:30", "d"),
            Ok(1_699_833_600_000 + 570 * 60_000)
        );
        assert_eq!(parse_hm("24:00", "t"), Ok(1_440));
        assert!(parse_hm("24:01", "t").is_err());
        assert!(parse_date("2023-13-01", "d").is_err());
        let mut f: GuestForm = serde_json::from_value(json!({"kind": "weekly",
            "daily_start": "09:00", "daily_end": "10:00", "day0": "on", "day6": "on"}))
        .unwrap();
        assert_eq!(
            f.schedule(),
            Ok(json!({"kind": "weekly", "days": [0, 6], "start_min": 540, "end_min": 600}))
        );
        f.day0 = None;
        f.day6 = None;
        assert!(f.schedule().is_err(), "a weekly schedule needs a day");
    }

    #[test]
    fn windows_round_trip() {
        assert_eq!(parse_window("Mon 08:00-18:00"), Ok((480, 1080)));
        assert_eq!(parse_window("sun 00:00-24:00"), Ok((6 * 1440, 7 * 1440)));
        assert_eq!(window_text(480, 1080), "Mon 08:00-18:00");
        assert!(parse_window("Mon 18:00-08:00").is_err());
        assert!(parse_window("Funday 08:00-09:00").is_err());
        assert!(parse_window("Mon 8-9").is_err());
    }
}
