//! Running the agent binary as a process, and the emulator beside it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_emulator::control::api::{Attestation, DeviceStatus, Enrollment, SymmetricKey};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nix::sys::signal::Signal;
use test_support::wait_until;

/// The agent under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_connector-agent");

/// Generous bound for anything the agent does (provisioning, connecting, shutting down).
pub const WITHIN: Duration = Duration::from_secs(30);

/// A running agent process; killed when dropped.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

/// Collects the lines of one output stream until it closes (the process ended).
fn pump(
    r: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    prefix: &'static str,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(format!("{prefix}{line}"));
        }
    })
}

impl Agent {
    /// Starts the agent with `args`; stdout lines are kept as they are, stderr lines
    /// prefixed `E: `.
    pub fn start(args: &[&str]) -> Agent {
        Self::start_env(args, &[])
    }

    /// [`Agent::start`] with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("CONNECTOR_AGENT_") || k == "NOTIFY_SOCKET" {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the agent");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let pumps = vec![
            pump(child.stdout.take().unwrap(), lines.clone(), ""),
            pump(child.stderr.take().unwrap(), lines.clone(), "E: "),
        ];
        Agent { child, lines, status: None, pumps }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first line (stdout or stderr) satisfying `pred`, waiting for it.
    pub fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let mut exited = None;
        wait_until(WITHIN, what, || {
            found = self.lines.lock().unwrap().iter().find(|l| pred(l)).cloned();
            if found.is_none() && exited.is_none() {
                exited = self.child.try_wait().ok().flatten();
            }
            found.is_some() || exited.is_some()
        });
        match found {
            Some(l) => l,
            None => {
                // The process ended: every line it wrote is collected once its pipes close.
                self.join_pumps();
                if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)).cloned() {
                    return l;
                }
                panic!("the agent exited ({exited:?}) before {what}; output:\n{}", self.output())
            }
        }
    }

    /// The value after `prefix` on the first stdout line starting with it.
    pub fn wait_value(&mut self, prefix: &str) -> String {
        let l = self.wait_line(prefix, |l| l.starts_with(prefix));
        l[prefix.len()..].trim().to_owned()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the process to end and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let mut st = None;
        wait_until(WITHIN, "the agent exits", || {
            st = self.child.try_wait().unwrap();
            st.is_some()
        });
        self.join_pumps();
        self.status = st;
        st.unwrap()
    }

    fn join_pumps(&mut self) {
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.status.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the agent to completion (for `--check-config` and refusals).
pub fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut a = Agent::start_env(args, env);
    let st = a.wait_exit();
    (st.code().unwrap_or(-1), a.output())
}

/// A blocking HTTP GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A current-thread runtime for the control client.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// An emulator in the test process (it outlives agents that are killed), with an
/// individual enrollment `registration_id` whose key is written to `dir/key`.
pub struct ExternalCloud {
    pub emu: EmulatorHandle,
    pub key_file: PathBuf,
    pub registration_id: String,
}

impl ExternalCloud {
    pub fn start(rt: &tokio::runtime::Runtime, dir: &Path, registration_id: &str) -> ExternalCloud {
        let mut cfg = EmulatorConfig::ephemeral();
        cfg.ws_port = None;
        cfg.aws_mqtt_port = None;
        cfg.aws_port = None;
        // Keep every message: the chaos runs count what arrived among hundreds of thousands.
        cfg.telemetry_capacity = 10_000_000;
        let emu = Emulator::start(cfg).unwrap();
        let created =
            rt.block_on(emu.control().put_enrollment(registration_id, &enrollment(None, true))).unwrap();
        let Attestation::SymmetricKey { symmetric_key } = created.attestation else { panic!("attestation") };
        let key_file = dir.join("key");
        std::fs::write(&key_file, &symmetric_key.primary_key).unwrap();
        ExternalCloud { emu, key_file, registration_id: registration_id.to_owned() }
    }

    /// Enables or disables the enrollment (keeping its key).
    pub fn set_enrollment(&self, rt: &tokio::runtime::Runtime, enabled: bool) {
        let key = std::fs::read_to_string(&self.key_file).unwrap();
        rt.block_on(
            self.emu.control().put_enrollment(&self.registration_id, &enrollment(Some(key), enabled)),
        )
        .unwrap();
    }

    /// A configuration file connecting to this emulator through DPS.
    pub fn config(&self, state_dir: &Path, extra: &str) -> String {
        self.config_via(state_dir, self.emu.mqtt_port(), extra)
    }

    /// [`ExternalCloud::config`] with the hub connection (not DPS) on `hub_port`: a fault
    /// proxy's, in front of the emulator.
    pub fn config_via(&self, state_dir: &Path, hub_port: u16, extra: &str) -> String {
        format!(
            r#"[agent]
state_dir = {state:?}
status_interval = "300ms"
shutdown_timeout = "5s"

[azure]
ca_file = {ca:?}
port = {hub_port}

[azure.dps]
id_scope = {scope:?}
registration_id = {reg:?}
endpoint = "localhost"
port = {port}
symmetric_key_file = {key:?}

[metrics]
enabled = false

[logging]
level = "warn"
{extra}
"#,
            state = state_dir,
            ca = self.emu.ca_path(),
            port = self.emu.mqtt_port(),
            hub_port = hub_port,
            scope = self.emu.dps_id_scope(),
            reg = self.registration_id,
            key = self.key_file,
        )
    }
}

fn enrollment(key: Option<String>, enabled: bool) -> Enrollment {
    Enrollment {
        attestation: Attestation::SymmetricKey {
            symmetric_key: SymmetricKey {
                primary_key: key.unwrap_or_default(),
                secondary_key: String::new(),
            },
        },
        device_id: None,
        provisioning_status: if enabled { DeviceStatus::Enabled } else { DeviceStatus::Disabled },
    }
}

/// One sample: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus text exposition: every sample line must be `name{labels} value`.
/// Returns (name, labels, value) triples.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let labels = body
                    .split("\",")
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        out.push((name, labels, value));
    }
    out
}

/// The value of the first sample of `name` whose labels include `want`.
pub fn sample(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && want.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, v)| *v)
}

/// A temporary directory the agent trusts for handlers: under the crate's target dir
/// (`CARGO_TARGET_TMPDIR`), not `/tmp` (world-writable, so refused as a handler's parent),
/// mode 0755, with every directory above it owned by root or this user and not writable by
/// group or others (checked here, so a misplaced checkout fails with a clear message).
pub fn trusted_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::Builder::new().prefix("agent-test-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    for d in dir.path().canonicalize().unwrap().ancestors() {
        let m = std::fs::symlink_metadata(d).unwrap();
        assert!(
            (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0,
            "{} (uid {}, mode {:o}) makes handler directories below it untrusted",
            d.display(),
            m.uid(),
            m.mode()
        );
    }
    dir
}

/// A log line without its ANSI colour sequences (`ESC [ … m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
