//! The demo's moving parts outside the server: the device agents as child processes of this
//! same binary, and the camera's uplink relay (the wire S22 cuts).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long a child gets to stop after SIGTERM before it is killed, ms.
pub const CHILD_STOP_MS: u64 = 5_000;
/// Connections the relay carries at once (the camera holds one).
pub const MAX_RELAY_CONNECTIONS: usize = 8;

/// Where a child's output lines go.
#[derive(Clone)]
pub enum Echo {
    /// Standard output, each line prefixed.
    Stdout,
    /// A log file only (standard output is the JSON report).
    File(std::path::PathBuf),
}

/// A device agent running as a child process.
pub struct Agent {
    /// `lock` or `camera`.
    pub name: &'static str,
    child: Child,
    stopped: bool,
}

impl Agent {
    /// Starts `doorward agent <args>` from this very binary.
    pub fn spawn(name: &'static str, args: &[String], echo: Echo) -> Result<Agent> {
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let mut child = Command::new(&exe)
            .arg("agent")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the {name} agent ({})", exe.display()))?;
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for (stream, is_err) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, false),
            (Box::new(err), true),
        ] {
            let echo = echo.clone();
            std::thread::spawn(move || {
                let mut file = match &echo {
                    Echo::File(p) => std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .ok(),
                    Echo::Stdout => None,
                };
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    match (&echo, file.as_mut()) {
                        (Echo::Stdout, _) if is_err => eprintln!("  [{name}] {line}"),
                        (Echo::Stdout, _) => println!("  [{name}] {line}"),
                        (Echo::File(_), Some(f)) => {
                            let _ = writeln!(f, "{line}");
                        }
                        (Echo::File(_), None) => {}
                    }
                }
            });
        }
        Ok(Agent {
            name,
            child,
            stopped: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = Pid::from_raw(self.child.id() as i32)
            .ok_or_else(|| anyhow::anyhow!("the {} agent has no process id", self.name))?;
        kill_process(pid, sig)
            .with_context(|| format!("cannot signal the {} agent (pid {})", self.name, pid))
    }

    /// Stops the child: SIGCONT (in case it was stopped), SIGTERM, then SIGKILL after
    /// [`CHILD_STOP_MS`]; reaps it.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self.signal(Signal::CONT);
        let _ = self.signal(Signal::TERM);
        let t0 = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if t0.elapsed() >= Duration::from_millis(CHILD_STOP_MS) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `path` exists and returns its trimmed text.
pub async fn read_when_there(path: &Path, within: Duration) -> Result<String> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.trim().is_empty() {
                return Ok(s.trim().to_owned());
            }
        }
        if t0.elapsed() >= within {
            anyhow::bail!(
                "{} was not written within {} s: see the agent's output",
                path.display(),
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP relay between the camera agent and the broker: the camera's uplink. Cutting it
/// makes the camera's traffic vanish without a disconnect (bytes are read and dropped both
/// ways); restoring it closes the relayed connections so the camera reconnects cleanly.
pub struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Relay {
    /// Starts relaying connections on a free loopback port to `upstream`.
    pub async fn start(upstream: (String, u16)) -> Result<Relay> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("the camera's uplink relay cannot listen")?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, gen_rx) = watch::channel(0u64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_RELAY_CONNECTIONS));
        let c = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Ok((down, _)) = listener.accept().await else {
                    continue;
                };
                let (c, mut gen, upstream) = (c.clone(), gen_rx.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(up) =
                        tokio::net::TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    gen.mark_unchanged();
                    tokio::select! {
                        _ = pump(dr, uw, c.clone()) => {}
                        _ = pump(ur, dw, c) => {}
                        _ = gen.changed() => {}
                    }
                    drop(permit);
                });
            }
        });
        Ok(Relay {
            addr,
            cut,
            generation,
        })
    }

    /// Where the camera connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`true`) or restores (`false`) the uplink.
    pub fn set_cut(&self, cut: bool) {
        let was = self.cut.swap(cut, Ordering::SeqCst);
        if was && !cut {
            // Half-dropped MQTT streams cannot resume: close them, the camera reconnects.
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
