//! A local mosquitto on a free loopback port, for the benchmarks.
//!
//! Same shape as `test_support::Mosquitto` (`start() -> Option<Self>`, `port()`, `url()`),
//! kept here so the benchmark does not depend on test fixtures' configuration choices:
//! logging off, no persistence, and `set_tcp_nodelay true`. Without the last one,
//! mosquitto's small PUBACK segments wait for the client's delayed ACK (40 ms) whenever
//! the client stops sending, e.g. at the end of every measured run: a 40 ms stall per run
//! that hides the clients' differences.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where mosquitto is looked for when `MOSQUITTO` is not set.
pub const DEFAULT_MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running mosquitto, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    port: u16,
    tls_port: Option<u16>,
    _dir: tempfile::TempDir,
}

/// A TLS listener's files (PEM): the server certificate (for `localhost`) and its key.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// Server certificate.
    pub cert: &'a Path,
    /// Its private key.
    pub key: &'a Path,
}

impl Mosquitto {
    /// Starts mosquitto on a free loopback port; `None` if it is not installed or does not
    /// come up within 5 s.
    pub fn start() -> Option<Self> {
        Self::start_on(None)
    }

    /// Like [`Mosquitto::start`], with the broker pinned to CPU `cpu` (through `taskset`)
    /// when given.
    pub fn start_on(cpu: Option<usize>) -> Option<Self> {
        Self::start_with(cpu, &[])
    }

    /// [`Mosquitto::start_on`] with `extra` configuration lines (global options).
    pub fn start_with(cpu: Option<usize>, extra: &[&str]) -> Option<Self> {
        Self::start_full(cpu, extra, None)
    }

    /// [`Mosquitto::start_on`] with a second, TLS listener (`127.0.0.1`, TLS 1.2+, no
    /// client certificate) on its own free port: [`Mosquitto::tls_url`].
    pub fn start_tls(cpu: Option<usize>, tls: TlsFiles<'_>) -> Option<Self> {
        Self::start_full(cpu, &[], Some(tls))
    }

    fn start_full(cpu: Option<usize>, extra: &[&str], tls: Option<TlsFiles<'_>>) -> Option<Self> {
        let bin = binary();
        if !Path::new(&bin).exists() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("bench-mosquitto").tempdir().ok()?;
        // A port is free now; mosquitto may lose a race for it, so try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let conf = dir.path().join("mosquitto.conf");
            let mut f = std::fs::File::create(&conf).ok()?;
            let mut text = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest none\nset_tcp_nodelay true\n"
            );
            if is_root() {
                text.push_str("user root\n");
            }
            for line in extra {
                text.push_str(line);
                text.push('\n');
            }
            let tls_port = match tls {
                Some(t) => {
                    let p = free_port()?;
                    text.push_str(&format!(
                        "listener {p} 127.0.0.1\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
                        t.cert.display(),
                        t.key.display()
                    ));
                    Some(p)
                }
                None => None,
            };
            f.write_all(text.as_bytes()).ok()?;
            drop(f);
            let mut cmd = match cpu {
                Some(c) => {
                    let mut cmd = Command::new("taskset");
                    cmd.arg("-c").arg(c.to_string()).arg(&bin);
                    cmd
                }
                None => Command::new(&bin),
            };
            let mut child = cmd
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let up = |p: u16| TcpStream::connect((Ipv4Addr::LOCALHOST, p)).is_ok();
                if up(port) && tls_port.is_none_or(up) {
                    return Some(Self { child, port, tls_port, _dir: dir });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        None
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `mqtts://localhost:PORT` of the TLS listener, when started with one.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("mqtts://localhost:{p}"))
    }

    /// The broker's process id (for profiling).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mosquitto binary: `$MOSQUITTO` or [`DEFAULT_MOSQUITTO`].
pub fn binary() -> String {
    std::env::var("MOSQUITTO").unwrap_or_else(|_| DEFAULT_MOSQUITTO.to_owned())
}

/// `mosquitto version X.Y.Z`, or `mosquitto (version unknown)`.
pub fn version() -> String {
    let out = Command::new(binary()).arg("-h").output();
    let text = match out {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        }
        Err(_) => String::new(),
    };
    text.lines()
        .find(|l| l.starts_with("mosquitto version"))
        .map(str::to_owned)
        .unwrap_or_else(|| "mosquitto (version unknown)".to_owned())
}

fn free_port() -> Option<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    l.local_addr().ok().map(|a| a.port())
}

fn is_root() -> bool {
    // No libc: the effective uid is in /proc/self/status ("Uid: real effective saved fs").
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
