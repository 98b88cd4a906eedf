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
fn fail(e: ApiError) -> Response {
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
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
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
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let st = api!(h::home_state(
        State(s.clone()),
        p.clone(),
        Path(home.clone())
    ));
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
}

/// `GET /homes/{home}/entries`: the timeline of deliveries and visits.
pub async fn entries(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let ev = api!(h::entries(State(s.clone()), p.clone(), Path(home.clone())));
    let dels = api!(h::deliveries(
        State(s.clone()),
        p.clone(),
        Path(home.clone())
    ));
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
    let verdict = verify_current(&s, &p, &home).await;
    let verified = matches!(&verdict, Ok(v) if v["verified"] == true);
    let content = html! {
        p.verdict {
            @if verified { "The record these entries come from verifies (hash chain and server signatures)." }
            @else { "The record these entries come from does NOT verify: see Record." }
        }
        p.note { "Footage: this server does not serve recorded frames yet; each entry shows the \
            grant its record holds. The camera's proof chain is in the record export." }
        @if order.is_empty() { p { "No entries yet." } }
        ol.timeline #timeline {
            @for del in order.iter().rev() {
                @let st = &stories[del];
                li.entry data-delivery=(st.delivery) {
                    h2 { "Delivery " (st.delivery) }
                    dl {
                        dt { "Carrier" } dd { (carriers.get(del).map_or("?", String::as_str)) }
                        dt { "Driver key" } dd.mono { (st.driver.as_deref().map(short).unwrap_or_else(|| "?".into())) }
                        dt { "Asked" } dd { @if let Some(t) = st.requested_ms { (when(t)) } @else { "—" } }
                        dt { "Decision" } dd.outcome { (st.outcome.as_deref().unwrap_or("pending")) }
                        dt { "Door open" } dd {
                            @match (st.unlocked_ms, st.relocked_ms) {
                                (Some(a), Some(b)) => { (age(b.saturating_sub(a))) " (unlocked to relocked)" }
                                (Some(_), None) => { "still open or not relocked" }
                                _ => { "not opened" }
                            }
                        }
                        dt { "Phase" } dd { (phase_text(st.last_phase.as_deref().unwrap_or(""))) }
                        @if let Some(g) = &st.grant { dt { "Grant" } dd.mono { (g) } }
                        dt { "Record" } dd { @if verified { "verifies" } @else { "does not verify" } }
                    }
                }
            }
        }
    };
    home_page(&a.frame(&home), Tab::Entries, "Entries", content)
}

/// `GET /homes/{home}/alarms`.
pub async fn alarms(State(s): S, p: Principal, Path(home): Path<String>) -> Response {
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let all = api!(h::alarms(State(s.clone()), p.clone(), Path(home.clone())));
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
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let pol = api!(h::get_policy(
        State(s.clone()),
        p.clone(),
        Path(home.clone())
    ));
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
    let a = match around(s, p, home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let home_s = home.to_owned();
    let dir = api!(h::carrier_directory(State(s.clone()), p.clone()));
    let mine = api!(h::home_carriers(
        State(s.clone()),
        p.clone(),
        Path(home_s.clone())
    ));
    let pol = api!(h::get_policy(State(s.clone()), p.clone(), Path(home_s)));
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
        h2 { "Guests" }
        p.note { "Guest access with schedules is not offered by this server yet." }
    };
    home_page(&a.frame(home), Tab::Access, "Access", content)
}

/// `POST /homes/{home}/carriers/{carrier}/opt-in`.
pub async fn opt_in(
    State(s): S,
    p: Principal,
    Path((home, carrier)): Path<(String, String)>,
    Form(f): Form<TokenForm>,
) -> Response {
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
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
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
    let body: h::RevokeBody = match serde_json::from_value(json!({ "carrier": carrier })) {
        Ok(b) => b,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let r = match h::revoke(
        State(s.clone()),
        p.clone(),
        Path(home.clone()),
        h::JsonBody(body),
    )
    .await
    {
        Ok(Json(v)) => v,
        Err(e) => return fail(e),
    };
    let note = html! {
        p #revoked { "Revoked " (carrier) " at " (when(crate::runtime::wall_ms()))
            ": the server refuses its requests from now on (revocation epoch " (r["epoch"]) ")." }
        p { "When the lock itself learned it is not reported by the lock yet: the lock refuses any \
            grant of the new epoch's revoked holder when it checks it." }
    };
    access_page(&s, &p, &home, Some(note)).await
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
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
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
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
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
    if !csrf_ok(&p, f.csrf.as_deref()) {
        return refused_csrf();
    }
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
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
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

/// Verifies `bytes` as an export against this server's key: the verdict as JSON.
fn verdict(s: &Shared, bytes: &[u8]) -> Value {
    match doorward_control::audit::verify_export(bytes, Some(&s.server_key)) {
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
        }),
    }
}

/// Exports `home`'s record through the API and verifies it.
async fn verify_current(s: &Arc<Shared>, p: &Principal, home: &str) -> Result<Value, ApiError> {
    let r = h::audit_export(State(s.clone()), p.clone(), Path(home.to_owned())).await?;
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .map_err(ApiError::internal)?;
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || verdict(&s2, &bytes))
        .await
        .map_err(ApiError::internal)
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
    let v = if from_script && !body.is_empty() {
        let s2 = s.clone();
        match tokio::task::spawn_blocking(move || verdict(&s2, &body)).await {
            Ok(v) => v,
            Err(e) => return fail(ApiError::internal(e)),
        }
    } else {
        match verify_current(&s, &p, &home).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        }
    };
    if from_script {
        return Json(v).into_response();
    }
    let a = match around(&s, &p, &home).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let content = html! {
        div #verdict role="status" {
            @if v["verified"] == true {
                p.ok { "Verified: " (v["entries"]) " entries, " (v["checkpoints"]) " signed checkpoints." }
            } @else {
                p.error { "NOT VERIFIED. First bad entry: " (v["first_bad_entry"]) ". " (v["error"].as_str().unwrap_or("")) }
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
    fn windows_round_trip() {
        assert_eq!(parse_window("Mon 08:00-18:00"), Ok((480, 1080)));
        assert_eq!(parse_window("sun 00:00-24:00"), Ok((6 * 1440, 7 * 1440)));
        assert_eq!(window_text(480, 1080), "Mon 08:00-18:00");
        assert!(parse_window("Mon 18:00-08:00").is_err());
        assert!(parse_window("Funday 08:00-09:00").is_err());
        assert!(parse_window("Mon 8-9").is_err());
    }
}
