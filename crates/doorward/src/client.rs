//! A small HTTP/1.1 client for the server's API, as its three kinds of users call it: a
//! homeowner (session bearer token), a carrier (API key) and a driver (requests signed with
//! the driver's key, docs/PROTOCOL.md "Driver API signatures"); plus a reader of the
//! homeowner's live event stream (SSE).
//!
//! Plain `http://` only: put a TLS-terminating proxy in front of a remote server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use doorward_proto::KeyPair;
use doorward_server::api::auth::{
    driver_request_message, DRIVER_KEY_HEADER, DRIVER_REQUEST_CONTEXT, DRIVER_SIGNATURE_HEADER,
    DRIVER_TIMESTAMP_HEADER,
};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Longest an API call may take, milliseconds (an entry request waits for the camera's
/// attestation, so this is above the server's own `REQUEST_TIMEOUT_MS`).
pub const CALL_TIMEOUT_MS: u64 = 35_000;
/// Largest answer body read, bytes (an audit export of a demo home is far below it).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest single server-sent event kept, bytes; longer ones are skipped.
pub const MAX_SSE_EVENT_BYTES: usize = 64 * 1024;

/// How a request proves who sends it.
pub enum Auth<'a> {
    /// Nobody.
    None,
    /// A homeowner session token (`dws_…`) or a carrier API key (`dwc_…`).
    Bearer(&'a str),
    /// A driver: every request signed with this key.
    Driver(&'a KeyPair),
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: Value,
}

impl Reply {
    /// The API's error sentence, or the body as text.
    pub fn error_text(&self) -> String {
        match self.json["error"].as_str() {
            Some(e) => e.to_owned(),
            None => String::from_utf8_lossy(&self.body).trim().to_owned(),
        }
    }

    /// `Ok(self)` on a 2xx status, else an error naming `what`, the status and the reason.
    pub fn ok(self, what: &str) -> Result<Reply> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            bail!("{what}: HTTP {} — {}", self.status, self.error_text())
        }
    }
}

/// The server at one `http://host:port` address.
#[derive(Clone, Debug)]
pub struct Api {
    addr: SocketAddr,
    base: String,
}

impl Api {
    /// Parses `http://host:port` (a trailing `/` is fine) and resolves the host.
    pub async fn new(url: &str) -> Result<Api> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!(
                "--server {url:?}: an http:// URL is expected, e.g. http://127.0.0.1:8080 \
                 (for https, put a TLS-terminating proxy in front of this client)"
            )
        })?;
        let hostport = rest.trim_end_matches('/');
        if hostport.contains('/') {
            bail!("--server {url:?}: give the server's address only, without a path");
        }
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            hostport.to_owned()
        } else {
            format!("{hostport}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("cannot resolve {with_port}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{with_port} resolves to no address"))?;
        Ok(Api {
            addr,
            base: format!("http://{hostport}"),
        })
    }

    /// The server at a socket address.
    pub fn at(addr: SocketAddr) -> Api {
        Api {
            addr,
            base: format!("http://{addr}"),
        }
    }

    /// `http://host:port`, for printing links.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        auth: &Auth<'_>,
        body: Vec<u8>,
        json_body: bool,
    ) -> Result<hyper::Response<Incoming>> {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(self.addr),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{}: no connection within 5 s", self.base))?
        .with_context(|| format!("cannot reach the server at {}: is it running?", self.base))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {}", self.base))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if json_body {
            req = req.header("content-type", "application/json");
        }
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Driver(k) => {
                // A fresh timestamp and signature on every request: the server accepts each
                // signature once (docs/PROTOCOL.md "Driver API signatures").
                let ts = doorward_agent::scene::wall_ms();
                let sig = k.sign(
                    DRIVER_REQUEST_CONTEXT,
                    &driver_request_message(method, path, ts, &body),
                );
                req = req
                    .header(DRIVER_KEY_HEADER, k.public().to_hex())
                    .header(DRIVER_TIMESTAMP_HEADER, ts.to_string())
                    .header(DRIVER_SIGNATURE_HEADER, sig.to_hex());
            }
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        tokio::time::timeout(
            Duration::from_millis(CALL_TIMEOUT_MS),
            sender.send_request(req),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{method} {path}: no answer within {CALL_TIMEOUT_MS} ms"))?
        .with_context(|| format!("{method} {path}"))
    }

    /// One request with an optional JSON body; reads the whole answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: &Auth<'_>,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let res = self.send(method, path, auth, bytes, body.is_some()).await?;
        let status = res.status().as_u16();
        let body = http_body_util::Limited::new(res.into_body(), MAX_BODY_BYTES);
        let body = tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), body.collect())
            .await
            .map_err(|_| anyhow::anyhow!("{method} {path}: the body did not arrive in time"))?
            .map_err(|e| anyhow::anyhow!("{method} {path}: reading the body: {e}"))?
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Reply { status, body, json })
    }

    /// Opens a live event stream (`GET path`, `text/event-stream`).
    pub async fn events(&self, path: &str, auth: &Auth<'_>) -> Result<EventStream> {
        let res = self.send("GET", path, auth, Vec::new(), false).await?;
        if res.status() != 200 {
            bail!(
                "GET {path}: HTTP {} (a session of the home's owner or its events token is \
                 needed)",
                res.status()
            );
        }
        Ok(EventStream {
            body: res.into_body(),
            buf: Vec::new(),
        })
    }
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its `event:` name (`message` when none).
    pub name: String,
    /// Its `data:` lines, joined, as JSON (`Null` if not JSON).
    pub data: Value,
}

/// A live event stream being read.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..end.0 + end.1).collect();
                if let Some(ev) = parse_event(&raw[..end.0]) {
                    return Ok(Some(ev));
                }
                continue;
            }
            if self.buf.len() > MAX_SSE_EVENT_BYTES {
                // An oversized event: drop what is buffered and resynchronise.
                self.buf.clear();
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => bail!("the event stream broke: {e}"),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }
}

/// Where the first event ends: (length of the event, length of the blank-line separator).
fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    for i in 0..b.len() {
        if b[i..].starts_with(b"\n\n") {
            return Some((i, 2));
        }
        if b[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
    }
    None
}

fn parse_event(raw: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(raw);
    let mut name = String::from("message");
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() && name == "message" {
        return None;
    }
    Some(Event {
        name,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_and_keep_their_names() {
        let raw = b"event: alarm\ndata: {\"kind\":\"witness_lost\"}\n\n: comment\n\n";
        let (n, sep) = find_blank_line(raw).unwrap();
        let ev = parse_event(&raw[..n]).unwrap();
        assert_eq!(ev.name, "alarm");
        assert_eq!(ev.data["kind"], "witness_lost");
        let rest = &raw[n + sep..];
        let (n2, _) = find_blank_line(rest).unwrap();
        assert_eq!(parse_event(&rest[..n2]), None, "a comment is no event");
    }
}
