//! The OpenAPI 3.1 part for the API's routes: path items, security schemes and schemas,
//! merged into [`crate::http::openapi`].

use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Who {
    Anyone,
    Homeowner,
    Carrier,
    Driver,
}

struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    who: Who,
    body: Option<&'static str>,
    ok: (&'static str, &'static str),
}

const OPS: &[Op] = &[
    Op { method: "post", path: "/api/accounts", id: "signup", summary: "Create a homeowner account (only when the server runs with --allow-signup).", who: Who::Anyone, body: Some("Credentials"), ok: ("201", "Account") },
    Op { method: "post", path: "/api/login", id: "login", summary: "Log in: sets the HttpOnly, SameSite=Strict session cookie and returns the same token for Authorization: Bearer. Rate-limited per account and per client address (429 with Retry-After).", who: Who::Anyone, body: Some("Credentials"), ok: ("200", "Session") },
    Op { method: "post", path: "/api/logout", id: "logout", summary: "End the session.", who: Who::Homeowner, body: None, ok: ("204", "") },
    Op { method: "get", path: "/api/login-links/{token}", id: "useLoginLink", summary: "Spend a one-time login link: sets the session cookie and redirects (303) to the web app at /.", who: Who::Anyone, body: None, ok: ("303", "") },
    Op { method: "get", path: "/api/me", id: "me", summary: "The logged-in account.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/carriers", id: "carrierDirectory", summary: "The carriers a homeowner may opt in.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/prepare", id: "prepareHome", summary: "Reserve a home id and get the server's issuing key for it: the home root signs an IssuerCert for that key, then POST /api/homes.", who: Who::Homeowner, body: None, ok: ("201", "PreparedHome") },
    Op { method: "post", path: "/api/homes", id: "createHome", summary: "Add a reserved home with its root key and the root's IssuerCert (hex of canonical CBOR Signed<IssuerCert>).", who: Who::Homeowner, body: Some("NewHome"), ok: ("201", "Object") },
    Op { method: "get", path: "/api/homes", id: "listHomes", summary: "The caller's homes.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}", id: "homeState", summary: "The home's state: every value with the signed device report it rests on and its age; unknown when the evidence is missing, stale or contradicted (I5).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/devices", id: "homeDevices", summary: "The home's paired locks and cameras.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/devices", id: "pairDevice", summary: "Pair a device over the broker with the setup code read off it (and optionally its QR payload): the camera first (it waits for its lock), then the lock naming it as witness, which registers the door. Answers once the device confirmed (at most 25 s; a device that does not answer is 400 invalid).", who: Who::Homeowner, body: Some("PairDevice"), ok: ("201", "Object") },
    Op { method: "get", path: "/api/homes/{home}/carriers", id: "homeCarriers", summary: "Carriers and whether each is opted in.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "put", path: "/api/homes/{home}/carriers/{carrier}", id: "optIn", summary: "Opt a carrier in (I9).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "delete", path: "/api/homes/{home}/carriers/{carrier}", id: "optOut", summary: "Opt a carrier out: revokes its grants at the home's locks (S16).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/policy", id: "getPolicy", summary: "The home's policy.", who: Who::Homeowner, body: None, ok: ("200", "Policy") },
    Op { method: "put", path: "/api/homes/{home}/policy", id: "putPolicy", summary: "Set windows, garage-only, live approval and vacation mode (I9).", who: Who::Homeowner, body: Some("Policy"), ok: ("200", "Policy") },
    Op { method: "get", path: "/api/homes/{home}/approvals", id: "listApprovals", summary: "Entries waiting for the homeowner's live approval.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/approvals/{request}/approve", id: "approve", summary: "Approve a pending entry.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/approvals/{request}/deny", id: "deny", summary: "Refuse a pending entry.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/alarms", id: "listAlarms", summary: "Recent alarms with their evidence and whether each is open.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/alarms/{alarm}/ack", id: "ackAlarm", summary: "Acknowledge an open alarm (stops its re-sending).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/entries", id: "listEntries", summary: "Recent entry requests, decisions and delivery phases.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/deliveries", id: "homeDeliveries", summary: "Deliveries at the home with their phases.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/deliveries/{delivery}/cancel", id: "homeCancelDelivery", summary: "Call a delivery to the home off before anybody is let in (409 once its entry is under way or it is over).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/homes/{home}/revocations", id: "listRevocations", summary: "Recent revocations, each with when every lock's own signed report first showed its epoch (the lock's acknowledgement).", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/revocations", id: "revoke", summary: "Revoke a carrier, a driver key or a grant at the home's locks (bumps the revocation epoch).", who: Who::Homeowner, body: Some("Revocation"), ok: ("200", "Object") },
    Op { method: "post", path: "/api/homes/{home}/webhooks", id: "addWebhook", summary: "Add a signed alarm webhook (http URL, whsec_ secret); kept in memory.", who: Who::Homeowner, body: Some("Webhook"), ok: ("201", "Object") },
    Op { method: "get", path: "/api/homes/{home}/audit", id: "auditExport", summary: "The home's audit record, in the format `doorward audit verify` checks offline.", who: Who::Homeowner, body: None, ok: ("200", "binary") },
    Op { method: "post", path: "/api/homes/{home}/guests", id: "addGuest", summary: "Give a guest access on a schedule (once, weekly, or a date range; UTC): the guest's key becomes a driver key under the home's own pseudo-carrier and the schedule is expanded into one visit per window for the next 14 days. The guest's phone uses the driver routes.", who: Who::Homeowner, body: Some("NewGuest"), ok: ("201", "Object") },
    Op { method: "get", path: "/api/homes/{home}/guests", id: "listGuests", summary: "The home's guests and their visits.", who: Who::Homeowner, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/carrier/drivers", id: "addDriver", summary: "Register a driver's Ed25519 public key.", who: Who::Carrier, body: Some("NewDriver"), ok: ("201", "Object") },
    Op { method: "get", path: "/api/carrier/drivers", id: "listDrivers", summary: "The carrier's drivers.", who: Who::Carrier, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/carrier/deliveries", id: "createDelivery", summary: "Create a delivery at a home that opted the carrier in (else 403 carrier_not_opted_in).", who: Who::Carrier, body: Some("NewDelivery"), ok: ("201", "Delivery") },
    Op { method: "get", path: "/api/carrier/deliveries", id: "listDeliveries", summary: "The carrier's deliveries.", who: Who::Carrier, body: None, ok: ("200", "Object") },
    Op { method: "get", path: "/api/carrier/deliveries/{delivery}", id: "getDelivery", summary: "A delivery's outcome: its phase only (never footage or the home's state).", who: Who::Carrier, body: None, ok: ("200", "Delivery") },
    Op { method: "post", path: "/api/carrier/deliveries/{delivery}/assign", id: "assignDriver", summary: "Assign one of the carrier's drivers; schedules the delivery.", who: Who::Carrier, body: Some("Assign"), ok: ("200", "Delivery") },
    Op { method: "post", path: "/api/carrier/deliveries/{delivery}/cancel", id: "cancelDelivery", summary: "Call a delivery off before anybody is let in (409 once its entry is under way or it is over).", who: Who::Carrier, body: None, ok: ("200", "Delivery") },
    Op { method: "post", path: "/api/driver/deliveries/{delivery}/arrive", id: "driverArrive", summary: "The driver is at the door.", who: Who::Driver, body: None, ok: ("200", "Object") },
    Op { method: "post", path: "/api/driver/deliveries/{delivery}/entry", id: "driverEntry", summary: "Request entry with the lock's signed nonce and the driver's signature over it; answers the decision (403 entry_denied with the reason when refused). The lock still decides (I1).", who: Who::Driver, body: Some("EntryRequest"), ok: ("200", "Object") },
    Op { method: "post", path: "/api/driver/deliveries/{delivery}/finish", id: "driverFinish", summary: "The driver is done: ends the driver's access; the entry closes on the devices' evidence.", who: Who::Driver, body: None, ok: ("200", "Object") },
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(d: &str) -> Value {
    json!({"description": d, "content": {"application/json": {"schema": schema_ref("Error")}}})
}

/// The API's path items, by path.
pub fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    for op in OPS {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let ok = match op.ok {
            (code, "") => (code, json!({"description": "done"})),
            (code, "binary") => (
                code,
                json!({"description": "the export", "content": {"application/octet-stream": {"schema": {"type": "string", "contentEncoding": "binary"}}}}),
            ),
            (code, schema) => (
                code,
                json!({"description": "done", "content": {"application/json": {"schema": schema_ref(schema)}}}),
            ),
        };
        let mut responses = Map::new();
        responses.insert(ok.0.into(), ok.1);
        responses.insert("400".into(), error_response("malformed request"));
        responses.insert("401".into(), error_response("no or wrong credentials"));
        responses.insert(
            "403".into(),
            error_response("another kind of user, or refused"),
        );
        responses.insert(
            "404".into(),
            error_response("no such resource among the caller's (another tenant's looks the same)"),
        );
        responses.insert("413".into(), error_response("body over the size limit"));
        responses.insert(
            "429".into(),
            error_response("rate or size limit; see Retry-After"),
        );
        responses.insert(
            "503".into(),
            error_response("busy, storage failure or timeout"),
        );
        let security = match op.who {
            Who::Anyone => json!([]),
            Who::Homeowner => json!([{"sessionCookie": []}, {"sessionBearer": []}]),
            Who::Carrier => json!([{"carrierApiKey": []}]),
            Who::Driver => json!([{"driverKey": [], "driverTimestamp": [], "driverSignature": []}]),
        };
        let mut o = json!({
            "operationId": op.id,
            "summary": op.summary,
            "security": security,
            "parameters": params,
            "responses": responses,
        });
        if let Some(b) = op.body {
            o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(b)}}});
        }
        paths
            .entry(op.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object")
            .insert(op.method.into(), o);
    }
    paths
}

/// The API's security schemes.
pub fn security_schemes() -> Value {
    json!({
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "dw_session", "description": "Homeowner session (POST /api/login), HttpOnly, SameSite=Strict, Secure behind HTTPS."},
        "sessionBearer": {"type": "http", "scheme": "bearer", "description": "The same session token (dws_…) as a bearer token."},
        "carrierApiKey": {"type": "http", "scheme": "bearer", "description": "A carrier API key (dwc_…), created by the operator."},
        "driverKey": {"type": "apiKey", "in": "header", "name": "Doorward-Driver-Key", "description": "The driver's registered Ed25519 public key, hex. See docs/PROTOCOL.md, \"Driver API signatures\"."},
        "driverTimestamp": {"type": "apiKey", "in": "header", "name": "Doorward-Timestamp", "description": "Request time, ms since the Unix epoch; within ±60 s of the server's."},
        "driverSignature": {"type": "apiKey", "in": "header", "name": "Doorward-Signature", "description": "Ed25519 signature (hex), context \"driver-request\", over method, path, timestamp and BLAKE3 of the body; each accepted once."}
    })
}

/// The API's schemas.
pub fn schemas() -> Map<String, Value> {
    let s = |v: Value| v;
    let str_ = json!({"type": "string"});
    let mut m = Map::new();
    m.insert("Error".into(), s(json!({"type": "object", "required": ["error", "code"], "properties": {"error": str_, "code": str_}})));
    m.insert("Object".into(), json!({"type": "object"}));
    m.insert("Credentials".into(), json!({"type": "object", "required": ["email", "password"], "properties": {"email": str_, "password": {"type": "string", "minLength": 10}}}));
    m.insert(
        "Account".into(),
        json!({"type": "object", "properties": {"account": str_}}),
    );
    m.insert("Session".into(), json!({"type": "object", "properties": {"account": str_, "token": str_, "expires_ms": {"type": "integer"}}}));
    m.insert("PreparedHome".into(), json!({"type": "object", "properties": {"home": str_, "issuer_key": str_, "server_key": str_}}));
    m.insert("NewHome".into(), json!({"type": "object", "required": ["home", "root_key", "cert"], "properties": {"home": str_, "root_key": {"type": "string", "description": "hex Ed25519 key"}, "cert": {"type": "string", "description": "hex of canonical CBOR Signed<IssuerCert>"}, "policy": schema_ref("Policy")}}));
    m.insert("Policy".into(), json!({"type": "object", "properties": {
        "windows": {"type": "array", "items": {"type": "object", "required": ["start_min", "end_min"], "properties": {"start_min": {"type": "integer"}, "end_min": {"type": "integer"}}}, "description": "weekly windows, minutes from Monday 00:00 UTC; empty: any time"},
        "garage_only": {"type": "boolean"}, "vacation": {"type": "boolean"}, "live_approval": {"type": "boolean"}}}));
    m.insert("Revocation".into(), json!({"type": "object", "description": "exactly one of the three", "properties": {"carrier": str_, "driver": str_, "grant": str_}}));
    m.insert("PairDevice".into(), json!({"type": "object", "required": ["device", "kind", "code"], "properties": {"device": str_, "kind": {"type": "string", "enum": ["lock", "camera"]}, "code": {"type": "string", "description": "the setup code the device prints"}, "qr": {"type": "string", "description": "the QR payload the device prints (doorward:1:…), checked against the key the code yields"}, "witness": {"type": "string", "description": "for a lock: its camera, paired just before"}, "garage": {"type": "boolean", "description": "for a lock: a garage door"}}}));
    m.insert("Webhook".into(), json!({"type": "object", "required": ["url", "secret"], "properties": {"url": str_, "secret": str_}}));
    m.insert("NewDriver".into(), json!({"type": "object", "required": ["name", "key"], "properties": {"name": str_, "key": {"type": "string", "description": "hex Ed25519 public key"}}}));
    m.insert("NewDelivery".into(), json!({"type": "object", "required": ["home", "lock", "not_before_ms", "not_after_ms"], "properties": {"home": str_, "lock": str_, "not_before_ms": {"type": "integer"}, "not_after_ms": {"type": "integer"}}}));
    m.insert("Delivery".into(), json!({"type": "object", "properties": {"delivery": str_, "home": str_, "lock": str_, "driver": {"type": ["string", "null"]}, "not_before_ms": {"type": "integer"}, "not_after_ms": {"type": "integer"}, "state": str_, "phase": str_}}));
    m.insert("NewGuest".into(), json!({"type": "object", "required": ["name", "key", "lock", "schedule"], "properties": {
        "name": str_, "key": {"type": "string", "description": "hex Ed25519 public key of the guest's phone"}, "lock": str_,
        "schedule": {"oneOf": [
            {"type": "object", "required": ["kind", "start_ms", "end_ms"], "properties": {"kind": {"const": "once"}, "start_ms": {"type": "integer"}, "end_ms": {"type": "integer"}}},
            {"type": "object", "required": ["kind", "days", "start_min", "end_min"], "properties": {"kind": {"const": "weekly"}, "days": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}, "description": "0 = Monday"}, "start_min": {"type": "integer"}, "end_min": {"type": "integer"}}},
            {"type": "object", "required": ["kind", "from_ms", "until_ms", "start_min", "end_min"], "properties": {"kind": {"const": "range"}, "from_ms": {"type": "integer"}, "until_ms": {"type": "integer"}, "start_min": {"type": "integer"}, "end_min": {"type": "integer"}}}
        ]}}}));
    m.insert(
        "Assign".into(),
        json!({"type": "object", "required": ["driver"], "properties": {"driver": str_}}),
    );
    m.insert("EntryRequest".into(), json!({"type": "object", "required": ["nonce", "driver_sig"], "properties": {"nonce": {"type": "string", "description": "hex of the lock's canonical CBOR Signed<UnlockNonce>, read over the local channel"}, "driver_sig": {"type": "string", "description": "hex Ed25519 signature, context \"driver-nonce\", over driver_nonce_message(lock, nonce)"}}}));
    m
}
