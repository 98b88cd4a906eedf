//! Driver routes (signed requests, see [`super::auth::DriverRequest`]): arrive, request
//! entry with the signature over the lock's nonce, finish. A driver reaches only a delivery
//! assigned to it and not finished (I11).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use doorward_control::{EntryDecision, EntryRequest, Input};
use doorward_proto::{codec, Sig, Signed, UnlockNonce};
use doorward_store::{Delivery, DeliveryState, Record};
use serde::Deserialize;
use serde_json::json;

use super::auth::DriverRequest;
use super::authz::{authorize, Allowed, Caller, Target};
use super::carrier::phase_of;
use super::{parse_id, write, ApiError, ApiResult};
use crate::metrics::label;
use crate::server::{Handle, Shared};

/// Largest encoded `Signed<UnlockNonce>` accepted, bytes.
pub const MAX_NONCE_BYTES: usize = 512;

async fn assigned(s: &Arc<Shared>, r: &DriverRequest, id: &str) -> ApiResult<Delivery> {
    let id = parse_id(id, "delivery")?;
    match authorize(s, Caller::Driver(r), Target::DriverDelivery(&id)).await? {
        Allowed::Delivery(_, d) => Ok(d),
        _ => unreachable!("Target::DriverDelivery answers Allowed::Delivery"),
    }
}

/// `POST /api/driver/deliveries/{delivery}/arrive`: the driver is at the door.
pub async fn arrive(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    r: DriverRequest,
) -> ApiResult<Json<serde_json::Value>> {
    let mut d = assigned(&s, &r, &id).await?;
    Handle::from_shared(s.clone())
        .input(Input::DriverArrived {
            delivery: d.id.clone(),
        })
        .await?;
    if d.state == DeliveryState::Assigned {
        d.state = DeliveryState::InProgress;
        write(&s, vec![Record::Delivery(d.clone())]).await?;
    }
    Ok(Json(json!({"delivery": d.id.as_str(), "arrived": true})))
}

/// An entry request.
#[derive(Deserialize)]
pub struct EntryBody {
    /// The lock's `Signed<UnlockNonce>`, canonical CBOR, hex.
    nonce: String,
    /// The driver's signature over `driver_nonce_message(lock, nonce)`, hex.
    driver_sig: String,
}

/// `POST /api/driver/deliveries/{delivery}/entry`: asks to enter; answers the decision (the
/// lock still decides, I1).
pub async fn entry(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    r: DriverRequest,
) -> ApiResult<Response> {
    let d = assigned(&s, &r, &id).await?;
    let b: EntryBody =
        serde_json::from_slice(&r.body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let nonce_bytes =
        hex::decode(&b.nonce).map_err(|_| ApiError::bad_request("nonce: hex expected"))?;
    let nonce: Signed<UnlockNonce> = codec::decode(&nonce_bytes, MAX_NONCE_BYTES).map_err(|e| {
        ApiError::bad_request(format!(
            "nonce: not a canonical CBOR Signed<UnlockNonce>: {e}"
        ))
    })?;
    let driver_sig = Sig::from_hex(&b.driver_sig)
        .ok_or_else(|| ApiError::bad_request("driver_sig: 128 hex digits expected"))?;
    let decision = Handle::from_shared(s.clone())
        .request_entry(EntryRequest {
            delivery: d.id.clone(),
            driver: r.key,
            nonce,
            driver_sig,
        })
        .await;
    Ok(match decision {
        EntryDecision::Authorised { request, grant, .. } => Json(json!({
            "decision": "authorised",
            "request": request,
            "delivery": d.id.as_str(),
            "grant": grant.to_hex(),
        }))
        .into_response(),
        EntryDecision::Denied {
            request, reason, ..
        } => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": format!("entry denied: {}", label(&reason)),
                "code": "entry_denied",
                "decision": "denied",
                "reason": label(&reason),
                "request": request,
                "delivery": d.id.as_str(),
            })),
        )
            .into_response(),
    })
}

/// `POST /api/driver/deliveries/{delivery}/finish`: the driver says the delivery is done.
/// This ends the driver's access through the API; the entry itself closes only on the
/// devices' evidence (relock, witnessed egress), which the answer's phase shows.
pub async fn finish(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    r: DriverRequest,
) -> ApiResult<Json<serde_json::Value>> {
    let mut d = assigned(&s, &r, &id).await?;
    d.state = DeliveryState::Done;
    write(&s, vec![Record::Delivery(d.clone())]).await?;
    let phase = phase_of(&s, &d).await?;
    Ok(Json(
        json!({"delivery": d.id.as_str(), "finished": true, "phase": phase}),
    ))
}
