//! The lock's local channel, standing in for BLE or NFC on a loopback TCP socket
//! (docs/PROTOCOL.md §20).
//!
//! Frames are a 2-byte big-endian length and that many bytes of canonical CBOR, at most
//! [`MAX_LOCAL_FRAME_BYTES`]. A client sends a [`LocalRequest`], the lock answers one
//! [`LocalReply`]; a connection may carry several in turn. Two requests exist:
//!
//! - `Nonce`: a driver's device asks for a fresh signed [`UnlockNonce`]. The lock's core
//!   issues it; nothing else crosses this channel, and nothing secret (the nonce is signed,
//!   public and single-use). Requests are rate limited ([`LOCAL_NONCE_RATE_PER_S`]) so a
//!   stranger at the door cannot flush a driver's nonce out of the lock's small table.
//! - `Checkpoint`: the paired camera hands the lock its signed checkpoints over the local
//!   link, so the lock supervises its witness by itself (witness lockout, docs/PROTOCOL.md
//!   §13). The lock's core verifies them under the camera's key; the channel only carries
//!   bytes.

use std::net::SocketAddr;
use std::time::Duration;

use doorward_proto::codec;
use doorward_proto::{Signed, UnlockNonce, MAX_ENVELOPE_BYTES};
use minicbor::{Decode, Encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest frame on the local channel, in bytes: an envelope and its framing.
pub const MAX_LOCAL_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + 64;
/// How long a client may take to send a request, and the lock to answer, milliseconds.
pub const LOCAL_IO_TIMEOUT_MS: u64 = 2_000;
/// Most clients connected at once; more wait for a slot.
pub const MAX_LOCAL_CONNECTIONS: usize = 8;
/// Nonces the lock hands out per second, sustained, over the local channel.
pub const LOCAL_NONCE_RATE_PER_S: u64 = 2;
/// Nonces the lock hands out in a burst.
pub const LOCAL_NONCE_BURST: u64 = 4;
/// How long an idle connection stays open, milliseconds (the camera's stays busy).
pub const LOCAL_IDLE_TIMEOUT_MS: u64 = 60_000;

/// A request on the local channel.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum LocalRequest {
    /// A driver asks for a fresh signed nonce.
    #[n(0)]
    Nonce,
    /// The paired camera hands over a signed checkpoint envelope.
    #[n(1)]
    Checkpoint(#[n(0)] minicbor::bytes::ByteVec),
}

/// The lock's answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum LocalReply {
    /// A fresh nonce, signed by the lock.
    #[n(0)]
    Nonce(#[n(0)] Signed<UnlockNonce>),
    /// Taken.
    #[n(1)]
    Ok,
    /// Refused, with a sentence saying why.
    #[n(2)]
    Refused(#[n(0)] String),
}

/// Why the local channel failed a client.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The lock could not be reached or the connection broke.
    #[error("local channel {addr}: {source}")]
    Io {
        /// The lock's address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// No answer in [`LOCAL_IO_TIMEOUT_MS`].
    #[error("local channel {0}: no answer within {LOCAL_IO_TIMEOUT_MS} ms")]
    Timeout(SocketAddr),
    /// The answer is not a valid frame.
    #[error("local channel {addr}: bad answer: {what}")]
    Malformed {
        /// The lock's address.
        addr: SocketAddr,
        /// What is wrong.
        what: String,
    },
    /// The lock refused.
    #[error("the lock refused: {0}")]
    Refused(String),
}

/// What the lock agent receives from the channel.
#[derive(Debug)]
pub enum LocalEvent {
    /// A driver wants a nonce; answer on `reply`.
    Nonce(oneshot::Sender<LocalReply>),
    /// A camera checkpoint envelope.
    Checkpoint(Vec<u8>),
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u16::from_be_bytes(len) as usize;
    if n > MAX_LOCAL_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {n} bytes is over {MAX_LOCAL_FRAME_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let n = u16::try_from(bytes.len())
        .ok()
        .filter(|n| *n as usize <= MAX_LOCAL_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    s.write_all(&n.to_be_bytes()).await?;
    s.write_all(bytes).await?;
    s.flush().await
}

/// A token bucket in thousandths, fed with tokio's clock.
struct Bucket {
    milli: u64,
    last: tokio::time::Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let el = now.duration_since(self.last).as_millis() as u64;
        self.last = now;
        self.milli = (self.milli + el * LOCAL_NONCE_RATE_PER_S).min(LOCAL_NONCE_BURST * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// Listens on `addr` and hands requests to the lock agent through `events`. Returns the
/// bound address and the task.
pub async fn serve(
    addr: SocketAddr,
    events: mpsc::Sender<LocalEvent>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = std::sync::Arc::new(Semaphore::new(MAX_LOCAL_CONNECTIONS));
    let bucket = std::sync::Arc::new(std::sync::Mutex::new(Bucket {
        milli: LOCAL_NONCE_BURST * 1000,
        last: tokio::time::Instant::now(),
    }));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "local channel accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (events, bucket) = (events.clone(), bucket.clone());
            tokio::spawn(async move {
                if let Err(e) = client(sock, events, bucket).await {
                    tracing::debug!(%peer, error = %e, "local channel client dropped");
                }
                drop(permit);
            });
        }
    });
    Ok((bound, task))
}

async fn client(
    mut sock: TcpStream,
    events: mpsc::Sender<LocalEvent>,
    bucket: std::sync::Arc<std::sync::Mutex<Bucket>>,
) -> std::io::Result<()> {
    let idle = Duration::from_millis(LOCAL_IDLE_TIMEOUT_MS);
    loop {
        let frame = match tokio::time::timeout(idle, read_frame(&mut sock)).await {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        let reply = match codec::decode::<LocalRequest>(&frame, MAX_LOCAL_FRAME_BYTES) {
            Err(e) => LocalReply::Refused(format!("malformed request: {e}")),
            Ok(LocalRequest::Nonce) => {
                let allowed = bucket.lock().unwrap_or_else(|e| e.into_inner()).take();
                if !allowed {
                    LocalReply::Refused(format!(
                        "too many nonce requests (at most {LOCAL_NONCE_RATE_PER_S} a second): \
                         wait a moment"
                    ))
                } else {
                    let (tx, rx) = oneshot::channel();
                    if events.send(LocalEvent::Nonce(tx)).await.is_err() {
                        return Ok(());
                    }
                    match tokio::time::timeout(Duration::from_millis(LOCAL_IO_TIMEOUT_MS), rx).await
                    {
                        Ok(Ok(r)) => r,
                        _ => LocalReply::Refused("the lock did not issue a nonce".into()),
                    }
                }
            }
            Ok(LocalRequest::Checkpoint(bytes)) => {
                if bytes.len() > MAX_ENVELOPE_BYTES {
                    LocalReply::Refused("checkpoint larger than an envelope".into())
                } else {
                    // A full queue drops it, as a lossy radio would.
                    let _ = events.try_send(LocalEvent::Checkpoint(bytes.into()));
                    LocalReply::Ok
                }
            }
        };
        write_frame(&mut sock, &codec::encode(&reply)).await?;
    }
}

/// One request and its answer on an open connection.
pub async fn request(
    sock: &mut TcpStream,
    addr: SocketAddr,
    req: &LocalRequest,
) -> Result<LocalReply, LocalError> {
    let io = |source| LocalError::Io { addr, source };
    let t = Duration::from_millis(LOCAL_IO_TIMEOUT_MS);
    let exchange = async {
        write_frame(sock, &codec::encode(req)).await.map_err(io)?;
        read_frame(sock).await.map_err(io)
    };
    let frame = tokio::time::timeout(t, exchange)
        .await
        .map_err(|_| LocalError::Timeout(addr))??
        .ok_or_else(|| LocalError::Malformed {
            addr,
            what: "the lock closed the connection".into(),
        })?;
    codec::decode::<LocalReply>(&frame, MAX_LOCAL_FRAME_BYTES).map_err(|e| LocalError::Malformed {
        addr,
        what: e.to_string(),
    })
}

/// Connects to a lock's local channel.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, LocalError> {
    tokio::time::timeout(
        Duration::from_millis(LOCAL_IO_TIMEOUT_MS),
        TcpStream::connect(addr),
    )
    .await
    .map_err(|_| LocalError::Timeout(addr))?
    .map_err(|source| LocalError::Io { addr, source })
}

/// Reads a fresh signed nonce from the lock at `addr`, as a driver's device does. The
/// caller checks the signature under the lock's key if it knows it (the server does).
pub async fn read_nonce(addr: SocketAddr) -> Result<Signed<UnlockNonce>, LocalError> {
    let mut s = connect(addr).await?;
    match request(&mut s, addr, &LocalRequest::Nonce).await? {
        LocalReply::Nonce(n) => Ok(n),
        LocalReply::Refused(why) => Err(LocalError::Refused(why)),
        LocalReply::Ok => Err(LocalError::Malformed {
            addr,
            what: "answered Ok to a nonce request".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorward_proto::{Id, KeyPair, Nonce};

    #[tokio::test]
    async fn nonces_are_served_rate_limited_and_bad_frames_refused() {
        let (tx, mut rx) = mpsc::channel(8);
        let (addr, _task) = serve("127.0.0.1:0".parse().unwrap(), tx).await.unwrap();
        let key = KeyPair::from_seed(&[4; 32]);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let LocalEvent::Nonce(reply) = ev {
                    let n = Signed::sign(
                        UnlockNonce {
                            lock: Id::new("lock-1").unwrap(),
                            nonce: Nonce([1; 32]),
                            mono_ms: 5,
                            epoch: 0,
                        },
                        &key,
                    );
                    let _ = reply.send(LocalReply::Nonce(n));
                }
            }
        });
        let n = read_nonce(addr).await.unwrap();
        n.verify(&KeyPair::from_seed(&[4; 32]).public()).unwrap();
        // The burst runs out: a flood is refused, not served.
        let mut refused = 0;
        for _ in 0..LOCAL_NONCE_BURST + 2 {
            if matches!(read_nonce(addr).await, Err(LocalError::Refused(_))) {
                refused += 1;
            }
        }
        assert!(refused >= 2, "refused {refused}");
        // A frame over the limit closes the connection without an answer.
        let mut s = connect(addr).await.unwrap();
        s.write_all(&u16::MAX.to_be_bytes()).await.unwrap();
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
        // Garbage in a well-sized frame is refused with a reason.
        let mut s = connect(addr).await.unwrap();
        write_frame(&mut s, &[0xff, 0x00]).await.unwrap();
        let f = read_frame(&mut s).await.unwrap().unwrap();
        let r: LocalReply = codec::decode(&f, MAX_LOCAL_FRAME_BYTES).unwrap();
        assert!(matches!(r, LocalReply::Refused(_)), "{r:?}");
    }
}
