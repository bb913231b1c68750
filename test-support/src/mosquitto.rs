//! A real mosquitto broker for integration tests.
//!
//! Each [`Mosquitto`] runs its own `mosquitto` process with a generated configuration in
//! its own temporary directory, listening on free loopback ports only. The process is a
//! child of the test process; only that child is ever signalled.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a started broker has to accept TCP connections on all its listeners.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Gap between two readiness polls.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How many times a fresh start picks new ports after losing a bind race.
const BIND_ATTEMPTS: usize = 5;
/// What mosquitto logs when a listener's port is taken.
const ADDR_IN_USE: &str = "Address already in use";

/// What kind of broker [`Mosquitto::start_with`] starts.
///
/// The default is an anonymous broker without persistence and with one plain TCP
/// listener.
#[derive(Clone, Debug, Default)]
pub struct MosquittoConfig {
    /// Persist sessions and queued messages in the broker's temporary directory
    /// (`persistence true`, `persistence_location <dir>/`, `autosave_interval 1`,
    /// `autosave_on_changes true`), so that they survive [`Mosquitto::kill`] followed by
    /// [`Mosquitto::restart`]. Mosquitto saves after every change from its main loop,
    /// i.e. shortly *after* it has processed the packet; a test that kills the broker
    /// must first wait until `<dir>/mosquitto.db` reflects the change.
    pub persistence: bool,
    /// `Some((user, password))`: anonymous clients are refused and this one user is
    /// accepted (password file made with `mosquitto_passwd -b -c` when that tool is
    /// installed, otherwise written directly in mosquitto's salted SHA-512 format).
    pub credentials: Option<(String, String)>,
    /// An additional TLS listener on its own free port.
    pub tls: Option<TlsListener>,
    /// Raw configuration lines appended at the end of the file, i.e. after the last
    /// listener section (the TLS one if any): global options work anywhere,
    /// listener-scoped options apply to that last listener.
    pub extra: Vec<String>,
}

/// A TLS listener of a [`Mosquitto`] broker.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// CA certificate (PEM) used to verify client certificates (`cafile`).
    pub ca_file: PathBuf,
    /// Server certificate (PEM) (`certfile`).
    pub cert_file: PathBuf,
    /// Server private key (PEM) (`keyfile`).
    pub key_file: PathBuf,
    /// Require a client certificate signed by `ca_file` (`require_certificate true`);
    /// its common name then becomes the MQTT user name (`use_identity_as_username true`).
    pub require_certificate: bool,
}

/// A running (or deliberately killed) mosquitto broker owned by this test.
///
/// Dropping it kills the process; if the thread is panicking the broker's log is
/// printed to stderr first, so failing tests show what the broker saw.
pub struct Mosquitto {
    binary: PathBuf,
    cfg: MosquittoConfig,
    dir: TempDir,
    conf_path: PathBuf,
    log_path: PathBuf,
    output_path: PathBuf,
    port: u16,
    tls_port: Option<u16>,
    child: Option<Child>,
}

enum Readiness {
    Ready,
    AddrInUse,
}

impl Mosquitto {
    /// Starts a broker with [`MosquittoConfig::default`].
    ///
    /// Returns `None` after printing a loud `SKIP: mosquitto not found ...` line to
    /// stderr when no mosquitto binary exists and the `CI` environment variable is not
    /// set.
    ///
    /// # Panics
    ///
    /// Panics when mosquitto is missing and `CI` is set, and when the broker does not
    /// become ready within 10 s (the message includes its log).
    pub fn start() -> Option<Mosquitto> {
        Self::start_with(MosquittoConfig::default())
    }

    /// Starts a broker with the given configuration; see [`Mosquitto::start`] for the
    /// `None` and panic rules.
    pub fn start_with(cfg: MosquittoConfig) -> Option<Mosquitto> {
        Self::start_impl(cfg, true, free_ports)
    }

    fn start_impl(
        cfg: MosquittoConfig,
        use_passwd_tool: bool,
        mut pick_ports: impl FnMut(usize) -> Vec<u16>,
    ) -> Option<Mosquitto> {
        let binary = find_mosquitto()?;
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .expect("create temporary directory for mosquitto");
        let conf_path = dir.path().join("mosquitto.conf");
        let log_path = dir.path().join("mosquitto.log");
        let output_path = dir.path().join("mosquitto.out");
        if let Some((user, password)) = &cfg.credentials {
            write_password_file(&dir.path().join("passwd"), user, password, use_passwd_tool);
        }
        let mut broker = Mosquitto {
            binary,
            cfg,
            dir,
            conf_path,
            log_path,
            output_path,
            port: 0,
            tls_port: None,
            child: None,
        };
        for _ in 0..BIND_ATTEMPTS {
            let ports = pick_ports(if broker.cfg.tls.is_some() { 2 } else { 1 });
            broker.port = ports[0];
            broker.tls_port = ports.get(1).copied();
            broker.write_config();
            match broker.spawn_and_wait() {
                Readiness::Ready => return Some(broker),
                Readiness::AddrInUse => continue,
            }
        }
        panic!("mosquitto lost the bind race {BIND_ATTEMPTS} times in a row\n{}", broker.diagnostics());
    }

    /// Port of the plain TCP listener on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Port of the TLS listener on 127.0.0.1, if one was configured.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `tcp://127.0.0.1:<port>` of the plain listener.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Kills the broker with SIGKILL (no chance to save or say goodbye) and reaps it.
    /// Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the child was already reaped, which `take` rules out; an
            // exited but unreaped child is still ours, so signalling it is harmless.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again with the same ports, configuration and persistence
    /// directory (killing it first if it still runs), and waits until it accepts
    /// connections again.
    ///
    /// # Panics
    ///
    /// Panics when the broker cannot bind its old ports within 10 s or does not become
    /// ready.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn_and_wait() {
                Readiness::Ready => return,
                Readiness::AddrInUse if Instant::now() < deadline => {
                    std::thread::sleep(POLL_EVERY);
                }
                Readiness::AddrInUse => panic!(
                    "mosquitto could not re-bind its ports {} within {READY_WITHIN:?}\n{}",
                    self.ports_text(),
                    self.diagnostics()
                ),
            }
        }
    }

    /// Whether the broker process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The broker's log file (all runs, including those before restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The broker's temporary directory (configuration, log, password file and
    /// persistence database `mosquitto.db`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn ports_text(&self) -> String {
        match self.tls_port {
            Some(tls) => format!("{} and {tls}", self.port),
            None => self.port.to_string(),
        }
    }

    fn diagnostics(&self) -> String {
        let output = fs::read_to_string(&self.output_path).unwrap_or_default();
        format!(
            "--- mosquitto config {} ---\n{}--- mosquitto log ---\n{}--- mosquitto stdout/stderr ---\n{}",
            self.conf_path.display(),
            fs::read_to_string(&self.conf_path).unwrap_or_default(),
            self.log(),
            output
        )
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut c = String::from("# generated by test-support\n");
        // Mosquitto 2 started as root switches to user `mosquitto`, which cannot write
        // the log into our private temporary directory. Staying root is what we want.
        let running_as_root = fs::metadata(dir).map(|m| m.uid() == 0).unwrap_or(false);
        if running_as_root {
            c.push_str("user root\n");
        }
        match &self.cfg.credentials {
            Some(_) => {
                c.push_str("allow_anonymous false\n");
                c.push_str(&format!("password_file {}\n", dir.join("passwd").display()));
            }
            None => c.push_str("allow_anonymous true\n"),
        }
        c.push_str(&format!("log_dest file {}\n", self.log_path.display()));
        c.push_str("log_type all\n");
        c.push_str("connection_messages true\n");
        c.push_str("max_inflight_messages 0\n");
        c.push_str("max_queued_messages 0\n");
        if self.cfg.persistence {
            c.push_str("persistence true\n");
            c.push_str(&format!("persistence_location {}/\n", dir.display()));
            c.push_str("autosave_interval 1\n");
            c.push_str("autosave_on_changes true\n");
        } else {
            c.push_str("persistence false\n");
        }
        c.push_str(&format!("listener {} 127.0.0.1\n", self.port));
        if let (Some(tls), Some(port)) = (&self.cfg.tls, self.tls_port) {
            c.push_str(&format!("listener {port} 127.0.0.1\n"));
            c.push_str(&format!("cafile {}\n", tls.ca_file.display()));
            c.push_str(&format!("certfile {}\n", tls.cert_file.display()));
            c.push_str(&format!("keyfile {}\n", tls.key_file.display()));
            if tls.require_certificate {
                c.push_str("require_certificate true\n");
                c.push_str("use_identity_as_username true\n");
            }
        }
        for line in &self.cfg.extra {
            c.push_str(line);
            c.push('\n');
        }
        fs::write(&self.conf_path, c).expect("write mosquitto.conf");
    }

    /// Spawns the process and polls until it is ready, it lost a bind race, or the
    /// deadline passes (panic).
    fn spawn_and_wait(&mut self) -> Readiness {
        let log_offset = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let output_offset = fs::metadata(&self.output_path).map(|m| m.len()).unwrap_or(0);
        let output = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output_path)
            .expect("open mosquitto output file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone output file handle"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        self.child = Some(child);

        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().expect("poll mosquitto process"));
            if let Some(status) = exited {
                self.child = None;
                let new_log = read_from(&self.log_path, log_offset);
                let new_output = read_from(&self.output_path, output_offset);
                if new_log.contains(ADDR_IN_USE) || new_output.contains(ADDR_IN_USE) {
                    return Readiness::AddrInUse;
                }
                panic!(
                    "mosquitto exited during start-up ({status}) on ports {}\n{}",
                    self.ports_text(),
                    self.diagnostics()
                );
            }
            // "running" is logged after every listener is open; the connects prove it.
            if read_from(&self.log_path, log_offset).contains(" running")
                && self.accepts(self.port)
                && self.tls_port.is_none_or(|p| self.accepts(p))
            {
                return Readiness::Ready;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "mosquitto did not accept connections on ports {} within {READY_WITHIN:?}\n{}",
                    self.ports_text(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    fn accepts(&self, port: u16) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "=== mosquitto on {} (dir {}) at the time of the panic ===\n{}",
                self.ports_text(),
                self.dir.path().display(),
                self.diagnostics()
            );
        }
        self.kill();
    }
}

/// Returns the mosquitto binary, or `None` after a loud SKIP message.
///
/// # Panics
///
/// Panics when mosquitto is missing and `CI` is set.
fn find_mosquitto() -> Option<PathBuf> {
    if let Some(path) = find_binary("mosquitto", &["/usr/sbin/mosquitto"]) {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("mosquitto not found in PATH or /usr/sbin/mosquitto, and CI is set");
    }
    eprintln!(
        "\n#####################################################################\n\
         SKIP: mosquitto not found (looked in PATH and /usr/sbin/mosquitto);\n\
         this test did NOT run. Install mosquitto, or set CI=1 to make this fatal.\n\
         #####################################################################\n"
    );
    None
}

fn find_binary(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    from_path.chain(fallbacks.iter().map(PathBuf::from)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Distinct free loopback ports. The probing sockets are held until all ports are
/// chosen, then released for mosquitto to bind (which may lose a race; callers retry).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_string(&mut text);
        }
    }
    text
}

/// Writes a mosquitto password file with one user.
fn write_password_file(path: &Path, user: &str, password: &str, use_tool: bool) {
    if use_tool {
        if let Some(tool) = find_binary("mosquitto_passwd", &["/usr/bin/mosquitto_passwd"]) {
            let out = Command::new(&tool)
                .arg("-b")
                .arg("-c")
                .arg(path)
                .arg(user)
                .arg(password)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
            assert!(
                out.status.success(),
                "mosquitto_passwd failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
    }
    // Mosquitto's "$6$" format: base64(salt) and base64(SHA-512(password || salt)).
    let mut salt = [0u8; 12];
    openssl::rand::rand_bytes(&mut salt).expect("random salt");
    let mut hasher = openssl::sha::Sha512::new();
    hasher.update(password.as_bytes());
    hasher.update(&salt);
    let hash = hasher.finish();
    let line = format!(
        "{user}:$6${}${}\n",
        openssl::base64::encode_block(&salt),
        openssl::base64::encode_block(&hash)
    );
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(line.as_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::TestPki;
    use crate::recv::wait_until;
    use crate::test_mqtt::RawClient;
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet};
    use rumqttc::mqttbytes::QoS;

    fn connect_plain(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to mosquitto");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        s
    }

    #[test]
    fn start_kill_restart_keeps_port() {
        let Some(mut broker) = Mosquitto::start() else {
            return;
        };
        let port = broker.port();
        assert_eq!(broker.url(), format!("tcp://127.0.0.1:{port}"));
        assert!(broker.tls_port().is_none());
        assert!(broker.is_running());
        let (_c, ack) = RawClient::connect(connect_plain(port), "start-kill", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);

        broker.kill();
        assert!(!broker.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port must be closed after kill");

        broker.restart();
        assert!(broker.is_running());
        assert_eq!(broker.port(), port);
        let (_c, ack) = RawClient::connect(connect_plain(port), "start-kill-2", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
        assert_eq!(broker.log().matches(" running").count(), 2);
        let conf = fs::read_to_string(broker.dir().join("mosquitto.conf")).expect("conf");
        assert!(conf.contains(&format!("listener {port} 127.0.0.1")));
    }

    #[test]
    fn persistence_survives_kill_and_restart() {
        let Some(mut broker) =
            Mosquitto::start_with(MosquittoConfig { persistence: true, ..Default::default() })
        else {
            return;
        };
        let port = broker.port();
        let db = broker.dir().join("mosquitto.db");

        // A persistent session subscribes and goes away.
        let (mut sub, ack) = RawClient::connect(connect_plain(port), "persist-sub", false, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
        sub.subscribe("persist/t", QoS::AtLeastOnce);
        sub.send(Packet::Disconnect);
        drop(sub);

        // A message is queued for it.
        let (mut publ, _) = RawClient::connect(connect_plain(port), "persist-pub", true, None);
        publ.publish_qos1("persist/t", b"persisted-payload-42", 1);
        drop(publ);

        wait_until(Duration::from_secs(10), "mosquitto.db holds the message", || {
            fs::read(&db).map(|b| b.windows(20).any(|w| w == b"persisted-payload-42")).unwrap_or(false)
        });
        broker.kill();
        broker.restart();
        assert_eq!(broker.port(), port);
        assert!(db.exists(), "persistence dir kept across restart");

        let (mut sub, ack) = RawClient::connect(connect_plain(port), "persist-sub", false, None);
        assert!(ack.session_present, "session must survive the restart");
        match sub.recv() {
            Packet::Publish(p) => {
                assert_eq!(p.topic, "persist/t");
                assert_eq!(&p.payload[..], b"persisted-payload-42");
            }
            other => panic!("expected the queued PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn start_retries_with_new_port_after_losing_bind_race() {
        let squatter = TcpListener::bind("127.0.0.1:0").expect("bind squatter");
        let taken = squatter.local_addr().expect("addr").port();
        let mut calls = 0;
        let Some(broker) = Mosquitto::start_impl(MosquittoConfig::default(), true, |n| {
            calls += 1;
            if calls == 1 {
                vec![taken]
            } else {
                free_ports(n)
            }
        }) else {
            return;
        };
        assert_ne!(broker.port(), taken);
        assert!(broker.log().contains(ADDR_IN_USE), "first attempt lost the race");
        let (_c, ack) = RawClient::connect(connect_plain(broker.port()), "race", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
    }

    #[test]
    fn restart_waits_for_its_port_to_become_free() {
        let Some(mut broker) = Mosquitto::start() else {
            return;
        };
        let port = broker.port();
        broker.kill();
        let squatter = TcpListener::bind(("127.0.0.1", port)).expect("take the port");
        let log_path = broker.log_path.clone();
        let releaser = std::thread::spawn(move || {
            wait_until(Duration::from_secs(10), "restart hits the taken port", || {
                fs::read_to_string(&log_path).map(|l| l.contains(ADDR_IN_USE)).unwrap_or(false)
            });
            drop(squatter);
        });
        broker.restart();
        releaser.join().expect("releaser thread");
        assert_eq!(broker.port(), port);
        let (_c, ack) = RawClient::connect(connect_plain(port), "re-bind", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
    }

    fn credentials_are_enforced(use_tool: bool) {
        let Some(broker) = Mosquitto::start_impl(
            MosquittoConfig { credentials: Some(("alice".into(), "s3cret".into())), ..Default::default() },
            use_tool,
            free_ports,
        ) else {
            return;
        };
        let port = broker.port();
        let (_c, ack) = RawClient::connect(connect_plain(port), "cred-ok", true, Some(("alice", "s3cret")));
        assert_eq!(ack.code, ConnectReturnCode::Success);
        let (_c, ack) = RawClient::connect(connect_plain(port), "cred-bad", true, Some(("alice", "wrong")));
        assert_ne!(ack.code, ConnectReturnCode::Success);
        let (_c, ack) = RawClient::connect(connect_plain(port), "cred-anon", true, None);
        assert_ne!(ack.code, ConnectReturnCode::Success);
    }

    #[test]
    fn credentials_with_mosquitto_passwd() {
        credentials_are_enforced(true);
    }

    #[test]
    fn credentials_with_builtin_sha512_file() {
        credentials_are_enforced(false);
    }

    fn tls_connector(ca: &Path, client: Option<(&Path, &Path)>) -> SslConnector {
        let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
        b.set_ca_file(ca).expect("CA file");
        b.set_verify(SslVerifyMode::PEER);
        if let Some((cert, key)) = client {
            b.set_certificate_chain_file(cert).expect("client cert");
            b.set_private_key_file(key, SslFiletype::PEM).expect("client key");
        }
        b.build()
    }

    #[test]
    fn tls_listener_accepts_our_ca_and_rejects_other_ca() {
        let pki = TestPki::generate();
        let Some(broker) = Mosquitto::start_with(MosquittoConfig {
            tls: Some(TlsListener {
                ca_file: pki.ca_cert.clone(),
                cert_file: pki.server_cert.clone(),
                key_file: pki.server_key.clone(),
                require_certificate: false,
            }),
            ..Default::default()
        }) else {
            return;
        };
        let tls_port = broker.tls_port().expect("TLS port");
        assert_ne!(tls_port, broker.port());

        let good = tls_connector(&pki.ca_cert, None)
            .connect("localhost", connect_plain(tls_port))
            .expect("handshake with the right CA");
        let (_c, ack) = RawClient::connect(good, "tls-ok", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);

        let bad = tls_connector(&pki.other_ca_cert, None).connect("localhost", connect_plain(tls_port));
        assert!(bad.is_err(), "handshake with the wrong CA must fail");

        // Plain listener still works next to the TLS one.
        let (_c, ack) = RawClient::connect(connect_plain(broker.port()), "plain", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
    }

    #[test]
    fn tls_listener_requiring_client_certificate() {
        let pki = TestPki::generate();
        let Some(broker) = Mosquitto::start_with(MosquittoConfig {
            tls: Some(TlsListener {
                ca_file: pki.ca_cert.clone(),
                cert_file: pki.server_cert.clone(),
                key_file: pki.server_key.clone(),
                require_certificate: true,
            }),
            ..Default::default()
        }) else {
            return;
        };
        let tls_port = broker.tls_port().expect("TLS port");

        let with_cert = tls_connector(&pki.ca_cert, Some((&pki.client_cert, &pki.client_key)))
            .connect("localhost", connect_plain(tls_port))
            .expect("handshake with client certificate");
        let (_c, ack) = RawClient::connect(with_cert, "mtls-ok", true, None);
        assert_eq!(ack.code, ConnectReturnCode::Success);
        wait_until(Duration::from_secs(5), "log names the certificate CN", || {
            broker.log().contains("u'test-client'")
        });

        // Without a certificate the server aborts the handshake (TLS 1.2) or the
        // connection right after it (TLS 1.3): either way no CONNACK arrives.
        if let Ok(s) = tls_connector(&pki.ca_cert, None).connect("localhost", connect_plain(tls_port)) {
            assert!(RawClient::try_connect(s, "mtls-none", true, None).is_err());
        }
    }
}
