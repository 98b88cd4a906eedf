//! Doorward's server: the IO shell around the control core. It runs an embedded MQTT broker
//! (or connects to an external one), carries device messages between the broker and the
//! core, owns the core on one task and drives its deadlines from the OS clock, makes the
//! core's audit records durable through the store before anything that depends on them is
//! acknowledged, and serves HTTP: health, readiness, Prometheus metrics, the OpenAPI 3.1
//! document and the homeowner's live event stream (SSE, with heartbeats).
//!
//! It is not where security decisions are made: it holds no security logic of its own. Every
//! check on a device message, every entry decision, every alarm comes from
//! `doorward-control`; the server only limits what reaches the core (sizes, rates, queue
//! lengths, all named constants) and fails closed when it cannot record.
//!
//! It may depend on `doorward-proto`, `doorward-control`, `doorward-store`, and IO libraries
//! (tokio, axum, rumqttc, rumqttd); only the `doorward` binary depends on it.
//!
//! Map: [`config`] (file, environment, flags), [`keystore`] (key files, mode 0600),
//! [`broker`] (embedded rumqttd), [`gateway`] (MQTT client, topics, size and rate limits),
//! [`runtime`] (the control task and the effects task), [`journal`] (the registry's
//! durable form and its replay on start), [`devstate`] (device stream state and wrapped
//! session keys across restarts), [`hub`] (SSE fan-out),
//! [`http`] (routes, OpenAPI), [`api`] (the homeowner, carrier and driver API: authentication,
//! tenant checks, handlers), [`metrics`], [`pairing`] (the home's side of out-of-band
//! pairing over the broker), [`server`] (start, provisioning API, shutdown),
//! [`web`] (the homeowner web app at `/`: pages, live updates, CSRF and security headers),
//! [`webhook`] (signed alarm webhooks, Standard Webhooks style: headers, body, retries),
//! [`footage`] (recorded footage: signed uploads checked against the accepted proofs, sealed
//! per home, retention, the homeowner's list, export and delete).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod broker;
pub mod config;
pub mod devstate;
pub mod footage;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod journal;
pub mod keystore;
pub mod metrics;
pub mod pairing;
pub mod runtime;
pub mod server;
pub mod web;
pub mod webhook;

pub use api::ApiSettings;
pub use config::{Database, FileConfig, Mqtt, Overrides, ServeConfig};
pub use pairing::{PairOptions, PairedDevice};
pub use runtime::ServerError;
pub use server::{Handle, HomeCredentials, Server};
