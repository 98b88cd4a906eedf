//! Footage upload (docs/PROTOCOL.md §18): the camera agent's bounded queue of proved segments
//! and the task that PUTs them to the server over HTTP, signed with the camera's device key.
//!
//! The camera loop only ever [`UploadQueue::push`]es (a short lock, no IO, no await): when
//! the queue is full it drops its oldest segment, counts it and logs a warning, so an
//! unreachable or slow server never delays a proof. The [`run`] task takes the oldest due
//! segment, signs it with a fresh timestamp, and answers the queue with the [`Outcome`]:
//! stored segments leave the queue; a server that cannot be reached or answers `503` pauses
//! every upload with a growing backoff; a `404 no_proof` (the proof may still be on its way
//! to the server) is retried a few times; a refusal that the same bytes cannot cure is
//! dropped with a warning. Every limit is a named constant here.
//!
//! The queue lives in memory: a camera that restarts loses the segments it had not uploaded
//! yet (their proofs stay in the server's record; the export shows them without frames).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorward_proto::footage::{sign_upload, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use doorward_proto::{CameraProof, Id, KeyPair, Observations};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Notify};

/// Most segments waiting for upload; a new one beyond it drops the oldest. At the entry pace
/// (8 proofs a second, one frame each) this holds a minute of entry.
pub const MAX_QUEUED_SEGMENTS: usize = 512;
/// Most bytes of frames waiting for upload; a new segment beyond it drops the oldest ones.
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Wait between a proof and the first upload of its segment, milliseconds: the server keeps
/// a segment only once it has accepted the proof, which travels over MQTT.
pub const FIRST_UPLOAD_DELAY_MS: u64 = 300;
/// Uploads of one segment answered `404 no_proof` before it is given up (the server does not
/// keep it: a routine proof, or one it refused).
pub const NO_PROOF_MAX_ATTEMPTS: u32 = 3;
/// Uploads of one segment that fail for the server's sake (unreachable, `503`, a timestamp
/// out of its window) before it is given up.
pub const MAX_UPLOAD_ATTEMPTS: u32 = 12;
/// First backoff after a failed upload, milliseconds; it doubles with each failure in a row.
pub const UPLOAD_BACKOFF_MIN_MS: u64 = 250;
/// Longest backoff between uploads, milliseconds.
pub const UPLOAD_BACKOFF_MAX_MS: u64 = 30_000;
/// Longest one upload may take (connect, send, answer), milliseconds.
pub const UPLOAD_TIMEOUT_MS: u64 = 10_000;
/// Largest answer body read from the server, bytes (the answer is a short JSON object).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// At most one warning about dropped segments per this interval, milliseconds (each drop is
/// counted in [`UploadStats::dropped_full`]).
pub const DROP_WARN_INTERVAL_MS: u64 = 5_000;

/// Backoff after `failures` failed uploads in a row (`failures` ≥ 1), milliseconds.
pub fn backoff_ms(failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(16);
    UPLOAD_BACKOFF_MIN_MS
        .saturating_mul(1 << shift)
        .min(UPLOAD_BACKOFF_MAX_MS)
}

/// Whether the server keeps footage of this proof (docs/PROTOCOL.md §18), as far as the
/// camera can tell: a recording proof with frames, made during an entry or reporting
/// something. The server decides by its own view of the entry; a segment it does not keep is
/// answered `404 no_proof` and given up after [`NO_PROOF_MAX_ATTEMPTS`].
pub fn worth_uploading(proof: &CameraProof, entry: bool) -> bool {
    proof.recording && !proof.frames.is_empty() && (entry || notable(&proof.obs))
}

/// An idle proof the server keeps: it reports something.
fn notable(obs: &Observations) -> bool {
    obs.frozen || obs.looped || obs.blinded || obs.people_in_zone > 0 || obs.door_open
}

/// What the server's answer means for a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `201 stored`.
    Stored,
    /// `200 duplicate`: stored before.
    Duplicate,
    /// `404 no_proof`: the proof is not accepted (yet).
    NoProof,
    /// The server could not be reached, did not answer in time, answered `503`, or found the
    /// timestamp out of its window: try again later, every segment alike.
    Unavailable(String),
    /// Refused for good (`409 mismatch`, `400`, `401 bad_signature`, `413`, anything else):
    /// the same bytes would be refused again.
    Refused(String),
}

/// What happened to the segments so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Segments queued.
    pub queued: u64,
    /// Segments the server stored (or had stored: `duplicate`).
    pub stored: u64,
    /// Segments dropped because the queue was full (the oldest go first).
    pub dropped_full: u64,
    /// Segments the server does not keep (`404 no_proof` every time).
    pub not_kept: u64,
    /// Segments given up after [`MAX_UPLOAD_ATTEMPTS`] failures, or refused for good.
    pub failed: u64,
}

/// One segment to upload: the proof's sequence number and its frames, concatenated.
#[derive(Clone, Debug)]
pub struct Job {
    /// The proof's `seq`.
    pub seq: u64,
    /// The request body: the segment's frames in the proof's order.
    pub body: Bytes,
}

#[derive(Debug)]
struct Item {
    job: Job,
    due_ms: u64,
    no_proof: u32,
    failures: u32,
    in_flight: bool,
}

/// The bounded queue of segments to upload: pure, driven by the caller's monotonic time.
#[derive(Debug)]
pub struct UploadQueue {
    items: VecDeque<Item>,
    bytes: usize,
    max_segments: usize,
    max_bytes: usize,
    failures_in_row: u32,
    paused_until_ms: u64,
    last_drop_warn_ms: Option<u64>,
    stats: UploadStats,
}

/// What the uploader should do next.
#[derive(Debug)]
pub enum Next {
    /// Upload this segment now.
    Upload(Job),
    /// Nothing is due before this time (monotonic ms).
    WaitUntil(u64),
    /// The queue is empty.
    Idle,
}

impl Default for UploadQueue {
    fn default() -> Self {
        UploadQueue::new(MAX_QUEUED_SEGMENTS, MAX_QUEUED_BYTES)
    }
}

impl UploadQueue {
    /// A queue holding at most `max_segments` segments and `max_bytes` bytes of frames.
    pub fn new(max_segments: usize, max_bytes: usize) -> Self {
        UploadQueue {
            items: VecDeque::new(),
            bytes: 0,
            max_segments: max_segments.max(1),
            max_bytes,
            failures_in_row: 0,
            paused_until_ms: 0,
            last_drop_warn_ms: None,
            stats: UploadStats::default(),
        }
    }

    /// Segments waiting (the one being uploaded included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No segment waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of frames waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The counters.
    pub fn stats(&self) -> UploadStats {
        self.stats
    }

    /// The sequence numbers waiting, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.items.iter().map(|i| i.job.seq).collect()
    }

    /// Queues a segment proved at `now_ms`, first due [`FIRST_UPLOAD_DELAY_MS`] later. Drops
    /// the oldest segments while the queue would exceed its limits; returns how many it
    /// dropped. Never waits for anything.
    pub fn push(&mut self, now_ms: u64, job: Job) -> usize {
        let len = job.body.len();
        if len > self.max_bytes {
            // Larger than the whole queue: it cannot be kept, and the others stay.
            self.stats.dropped_full += 1;
            return 1;
        }
        let mut dropped = 0;
        while self.items.len() >= self.max_segments || self.bytes + len > self.max_bytes {
            let Some(old) = self.items.pop_front() else {
                break;
            };
            self.bytes -= old.job.body.len();
            dropped += 1;
        }
        self.stats.dropped_full += dropped as u64;
        self.bytes += len;
        self.stats.queued += 1;
        self.items.push_back(Item {
            job,
            due_ms: now_ms.saturating_add(FIRST_UPLOAD_DELAY_MS),
            no_proof: 0,
            failures: 0,
            in_flight: false,
        });
        dropped
    }

    /// Whether a warning about dropped segments is due at `now_ms` (at most one per
    /// [`DROP_WARN_INTERVAL_MS`]); marks it given.
    pub fn drop_warning_due(&mut self, now_ms: u64) -> bool {
        let due = self
            .last_drop_warn_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= DROP_WARN_INTERVAL_MS);
        if due {
            self.last_drop_warn_ms = Some(now_ms);
        }
        due
    }

    /// The oldest segment due at `now_ms`, marked in flight; or when to ask again.
    pub fn next(&mut self, now_ms: u64) -> Next {
        if self.items.iter().all(|i| i.in_flight) {
            return Next::Idle;
        }
        if now_ms < self.paused_until_ms {
            return Next::WaitUntil(self.paused_until_ms);
        }
        let mut soonest = u64::MAX;
        for item in self.items.iter_mut().filter(|i| !i.in_flight) {
            if item.due_ms <= now_ms {
                item.in_flight = true;
                return Next::Upload(item.job.clone());
            }
            soonest = soonest.min(item.due_ms);
        }
        Next::WaitUntil(soonest)
    }

    /// Takes the server's answer for segment `seq` at `now_ms`. Returns a sentence to log as
    /// a warning when a segment is lost for good (`None` otherwise). A segment dropped while
    /// in flight is simply forgotten.
    pub fn finish(&mut self, seq: u64, outcome: Outcome, now_ms: u64) -> Option<String> {
        if let Outcome::Unavailable(_) = outcome {
            self.failures_in_row = self.failures_in_row.saturating_add(1);
            self.paused_until_ms = now_ms.saturating_add(backoff_ms(self.failures_in_row));
        } else {
            // The server answered: it is reachable again.
            self.failures_in_row = 0;
            self.paused_until_ms = 0;
        }
        let pos = self.items.iter().position(|i| i.job.seq == seq)?;
        let item = &mut self.items[pos];
        item.in_flight = false;
        let remove = match outcome {
            Outcome::Stored | Outcome::Duplicate => {
                self.stats.stored += 1;
                None
            }
            Outcome::NoProof => {
                item.no_proof += 1;
                if item.no_proof >= NO_PROOF_MAX_ATTEMPTS {
                    self.stats.not_kept += 1;
                    tracing::debug!(seq, "the server keeps no footage of this proof");
                    Some(None)
                } else {
                    item.due_ms = now_ms.saturating_add(backoff_ms(item.no_proof + 1));
                    return None;
                }
            }
            Outcome::Unavailable(why) => {
                item.failures += 1;
                if item.failures >= MAX_UPLOAD_ATTEMPTS {
                    self.stats.failed += 1;
                    Some(Some(format!(
                        "segment {seq} given up after {MAX_UPLOAD_ATTEMPTS} failed uploads \
                         (last: {why})"
                    )))
                } else {
                    return None;
                }
            }
            Outcome::Refused(why) => {
                self.stats.failed += 1;
                Some(Some(format!("segment {seq} refused by the server: {why}")))
            }
        };
        if let Some(old) = self.items.remove(pos) {
            self.bytes -= old.job.body.len();
        }
        remove.flatten()
    }
}

/// Where the server's HTTP API is: `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    hostport: String,
}

impl ServerUrl {
    /// Parses `http://host:port` (a trailing `/` is fine; no path). Plain HTTP only: put a
    /// TLS-terminating proxy on the camera's side for a remote server.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: an http:// URL is expected, e.g. http://127.0.0.1:8080")
        })?;
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') {
            return Err(format!(
                "{url:?}: give the server's address only, e.g. http://127.0.0.1:8080"
            ));
        }
        let with_port = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                if h.is_empty() || p.parse::<u16>().is_err() {
                    return Err(format!("{url:?}: expected http://HOST:PORT"));
                }
                hostport.to_owned()
            }
            _ => format!("{hostport}:80"),
        };
        Ok(ServerUrl {
            hostport: with_port,
        })
    }

    /// `host:port`.
    pub fn host_port(&self) -> &str {
        &self.hostport
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.hostport)
    }
}

/// The queue as the camera loop and the upload task share it.
#[derive(Debug, Default)]
pub struct Shared {
    queue: Mutex<UploadQueue>,
    wake: Notify,
    started: std::sync::OnceLock<Instant>,
}

impl Shared {
    /// An empty queue with the default limits.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    fn now_ms(&self) -> u64 {
        self.started.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UploadQueue> {
        // The queue holds no invariant a panic elsewhere could break halfway.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a segment for upload (see [`UploadQueue::push`]); wakes the upload task.
    pub fn push(&self, camera: &Id, job: Job) {
        let now = self.now_ms();
        let mut q = self.lock();
        let dropped = q.push(now, job);
        if dropped > 0 && q.drop_warning_due(now) {
            let s = q.stats();
            tracing::warn!(
                %camera,
                dropped = s.dropped_full,
                max_segments = MAX_QUEUED_SEGMENTS,
                max_bytes = MAX_QUEUED_BYTES,
                "footage upload queue full: dropped the oldest segments"
            );
        }
        drop(q);
        self.wake.notify_one();
    }

    /// The counters.
    pub fn stats(&self) -> UploadStats {
        self.lock().stats()
    }

    /// Segments waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No segment waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Uploads the queue's segments to `server` as `camera`, signed by `key`, until `stop`
/// turns true.
pub async fn run(
    server: ServerUrl,
    camera: Id,
    key: KeyPair,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn = Conn::default();
    loop {
        let next = shared.lock().next(shared.now_ms());
        let wait = match next {
            Next::Upload(job) => {
                let outcome = conn.put(&server, &camera, &key, &job).await;
                if let Outcome::Unavailable(why) = &outcome {
                    tracing::debug!(seq = job.seq, %why, "footage upload failed; backing off");
                }
                let warn = shared.lock().finish(job.seq, outcome, shared.now_ms());
                if let Some(w) = warn {
                    tracing::warn!(%camera, "footage: {w}");
                }
                continue;
            }
            Next::WaitUntil(t) => Some(Duration::from_millis(t.saturating_sub(shared.now_ms()))),
            Next::Idle => None,
        };
        tokio::select! {
            _ = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shared.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One kept-alive HTTP/1.1 connection to the server, opened again when it breaks.
#[derive(Default)]
struct Conn {
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn put(&mut self, server: &ServerUrl, camera: &Id, key: &KeyPair, job: &Job) -> Outcome {
        let timeout = Duration::from_millis(UPLOAD_TIMEOUT_MS);
        match tokio::time::timeout(timeout, self.try_put(server, camera, key, job)).await {
            Ok(Ok((status, result))) => classify(status, &result),
            Ok(Err(e)) => {
                self.sender = None;
                Outcome::Unavailable(e)
            }
            Err(_) => {
                self.sender = None;
                Outcome::Unavailable(format!("no answer within {UPLOAD_TIMEOUT_MS} ms"))
            }
        }
    }

    async fn try_put(
        &mut self,
        server: &ServerUrl,
        camera: &Id,
        key: &KeyPair,
        job: &Job,
    ) -> Result<(u16, String), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let addr = tokio::net::lookup_host(server.host_port())
                .await
                .map_err(|e| format!("cannot resolve {server}: {e}"))?
                .next()
                .ok_or_else(|| format!("{server} resolves to no address"))?;
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot reach {server}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {server}: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("set above");
        sender
            .ready()
            .await
            .map_err(|e| format!("connection to {server}: {e}"))?;
        // A fresh timestamp and signature on every attempt (docs/PROTOCOL.md §18).
        let ts = crate::scene::wall_ms();
        let sig = sign_upload(key, camera, job.seq, ts, &job.body);
        let req = hyper::Request::builder()
            .method("PUT")
            .uri(format!("/api/devices/{camera}/segments/{}", job.seq))
            .header("host", server.host_port())
            .header("content-type", "application/octet-stream")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, hex::encode(sig.0))
            .body(Full::new(job.body.clone()))
            .map_err(|e| format!("building the request: {e}"))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("PUT to {server}: {e}"))?;
        let status = res.status().as_u16();
        let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {server}: {e}"))?
            .to_bytes();
        let result = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["result"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok((status, result))
    }
}

/// The meaning of an answer (docs/PROTOCOL.md §18, "Answers").
pub fn classify(status: u16, result: &str) -> Outcome {
    match (status, result) {
        (201, _) => Outcome::Stored,
        (200, _) => Outcome::Duplicate,
        (404, "no_proof") => Outcome::NoProof,
        (401, "stale_timestamp") => {
            Outcome::Unavailable("the server finds the camera's clock off by over 60 s".into())
        }
        (503, _) | (502, _) | (504, _) => Outcome::Unavailable(format!("HTTP {status} {result}")),
        _ => Outcome::Refused(format!("HTTP {status} {result}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64, frames: usize) -> Job {
        Job {
            seq,
            body: Bytes::from(vec![seq as u8; frames * 3072]),
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_segments_and_counts_them() {
        let mut q = UploadQueue::new(4, usize::MAX);
        for seq in 1..=4 {
            assert_eq!(q.push(0, job(seq, 1)), 0);
        }
        assert_eq!(q.push(0, job(5, 1)), 1);
        assert_eq!(q.push(0, job(6, 1)), 1);
        assert_eq!(q.seqs(), vec![3, 4, 5, 6]);
        assert_eq!(q.len(), 4);
        assert_eq!(q.stats().dropped_full, 2);
        assert_eq!(q.stats().queued, 6);
        // Warned once, then not again within the interval.
        assert!(q.drop_warning_due(10));
        assert!(!q.drop_warning_due(10 + DROP_WARN_INTERVAL_MS - 1));
        assert!(q.drop_warning_due(10 + DROP_WARN_INTERVAL_MS));
    }

    #[test]
    fn the_byte_limit_drops_as_many_old_segments_as_a_new_one_needs() {
        let mut q = UploadQueue::new(100, 10 * 3072);
        for seq in 1..=5 {
            q.push(0, job(seq, 2));
        }
        assert_eq!(q.bytes(), 10 * 3072);
        // Five frames need three old segments (two frames each) to go.
        assert_eq!(q.push(0, job(6, 5)), 3);
        assert_eq!(q.seqs(), vec![4, 5, 6]);
        assert_eq!(q.bytes(), 9 * 3072);
        assert!(q.bytes() <= 10 * 3072);
        // A segment bigger than the whole queue is dropped itself; the others stay.
        let mut small = UploadQueue::new(100, 3072);
        small.push(0, job(1, 1));
        assert_eq!(small.push(0, job(2, 2)), 1);
        assert_eq!(small.seqs(), vec![1]);
        assert_eq!(small.stats().dropped_full, 1);
    }

    #[test]
    fn the_default_limits_hold_under_a_flood() {
        let mut q = UploadQueue::default();
        for seq in 0..(MAX_QUEUED_SEGMENTS as u64 * 3) {
            q.push(seq, job(seq, 1));
            assert!(q.len() <= MAX_QUEUED_SEGMENTS);
            assert!(q.bytes() <= MAX_QUEUED_BYTES);
        }
        assert_eq!(q.len(), MAX_QUEUED_SEGMENTS);
        assert_eq!(q.stats().dropped_full, 2 * MAX_QUEUED_SEGMENTS as u64);
        assert_eq!(q.seqs()[0], 2 * MAX_QUEUED_SEGMENTS as u64);
    }

    #[test]
    fn uploads_wait_for_the_proof_go_oldest_first_and_back_off_when_the_server_is_down() {
        let mut q = UploadQueue::new(10, usize::MAX);
        q.push(0, job(1, 1));
        q.push(0, job(2, 1));
        assert!(matches!(q.next(0), Next::WaitUntil(FIRST_UPLOAD_DELAY_MS)));
        let t = FIRST_UPLOAD_DELAY_MS;
        let Next::Upload(j) = q.next(t) else {
            panic!("due")
        };
        assert_eq!(j.seq, 1);
        // The server is down: everything pauses, with a backoff that grows.
        assert_eq!(q.finish(1, Outcome::Unavailable("down".into()), t), None);
        assert!(matches!(q.next(t), Next::WaitUntil(x) if x == t + backoff_ms(1)));
        let t2 = t + backoff_ms(1);
        let Next::Upload(j) = q.next(t2) else {
            panic!("due")
        };
        assert_eq!(j.seq, 1, "the oldest first");
        q.finish(1, Outcome::Unavailable("down".into()), t2);
        assert!(matches!(q.next(t2), Next::WaitUntil(x) if x == t2 + backoff_ms(2)));
        assert!(backoff_ms(2) > backoff_ms(1));
        assert_eq!(backoff_ms(100), UPLOAD_BACKOFF_MAX_MS);
        // Back up: stored, then the next one goes at once.
        let t3 = t2 + backoff_ms(2);
        let Next::Upload(j) = q.next(t3) else {
            panic!("due")
        };
        q.finish(j.seq, Outcome::Stored, t3);
        let Next::Upload(j) = q.next(t3) else {
            panic!("due")
        };
        assert_eq!(j.seq, 2);
        // While it is in flight nothing else is due.
        assert!(matches!(q.next(t3), Next::Idle));
        q.finish(2, Outcome::Duplicate, t3);
        assert!(q.is_empty());
        assert_eq!(q.stats().stored, 2);
    }

    #[test]
    fn a_segment_the_server_does_not_keep_is_given_up_and_a_refused_one_at_once() {
        let mut q = UploadQueue::new(10, usize::MAX);
        q.push(0, job(1, 1));
        let mut now = FIRST_UPLOAD_DELAY_MS;
        for _ in 0..NO_PROOF_MAX_ATTEMPTS {
            let Next::Upload(j) = q.next(now) else {
                panic!("due")
            };
            assert_eq!(q.finish(j.seq, Outcome::NoProof, now), None);
            now += UPLOAD_BACKOFF_MAX_MS;
        }
        assert!(q.is_empty());
        assert_eq!(q.stats().not_kept, 1);
        q.push(now, job(2, 1));
        let Next::Upload(j) = q.next(now + FIRST_UPLOAD_DELAY_MS) else {
            panic!("due")
        };
        let w = q.finish(j.seq, classify(409, "mismatch"), now);
        assert!(w.is_some_and(|w| w.contains("mismatch")));
        assert!(q.is_empty());
        assert_eq!(q.stats().failed, 1);
        // Failures for the server's sake give up after the limit.
        q.push(now, job(3, 1));
        for i in 0..MAX_UPLOAD_ATTEMPTS {
            now += UPLOAD_BACKOFF_MAX_MS + FIRST_UPLOAD_DELAY_MS;
            let Next::Upload(j) = q.next(now) else {
                panic!("due")
            };
            let w = q.finish(j.seq, classify(503, "storage"), now);
            assert_eq!(w.is_some(), i + 1 == MAX_UPLOAD_ATTEMPTS);
        }
        assert!(q.is_empty());
        assert_eq!(q.stats().failed, 2);
    }

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            ServerUrl::parse("http://127.0.0.1:8080/")
                .unwrap()
                .host_port(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            ServerUrl::parse("http://example.org").unwrap().host_port(),
            "example.org:80"
        );
        for bad in [
            "https://x:1",
            "127.0.0.1:8080",
            "http://x:1/api",
            "http://",
            "http://x:y",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
