//! [`Emulator::start`] and [`EmulatorHandle`]: the emulator on its own threads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use tempfile::TempDir;

use crate::aws::transport::{AwsRelayPeers, Listener};
use crate::aws::{AwsCore, AwsSettings};
use crate::azure::registry::Registry;
use crate::azure::{Hub, HubSettings};
use crate::ca::{CertificateAuthority, CA_CERT_FILE};
use crate::config::EmulatorConfig;
use crate::control::client::ControlClient;
use crate::error::EmulatorError;
use crate::{broker, control};

const REGISTRY_FILE: &str = "registry.json";

/// Entry point: `Emulator::start(config)`.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds the listeners, loads or creates the CA, and starts the emulator on its own
    /// threads (an ntex runtime with one MQTT worker; the control API on the runtime's
    /// main thread). Returns once everything is bound; clients may connect immediately.
    ///
    /// Works from any context (plain `main`, tokio, actix): it owns its runtime.
    pub fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        if config.hub_host_name.is_empty() || config.dps_id_scope.is_empty() {
            return Err(EmulatorError::Config {
                reason: "hub_host_name and dps_id_scope must not be empty".into(),
            });
        }
        let (dir, tmp) = match &config.state_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|source| EmulatorError::StateDir { path: d.clone(), source })?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("connector-emulator-")
                    .tempdir()
                    .map_err(|source| EmulatorError::StateDir { path: std::env::temp_dir(), source })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let ca = CertificateAuthority::load_or_create(&dir)?;
        let hosts = config.host_names();
        let server_cert = ca.issue_server(&hosts, &dir)?;
        let ca_pem = ca.cert_pem()?;
        let ca_x509 =
            openssl::x509::X509::from_pem(&ca_pem).map_err(|e| EmulatorError::tls("reload CA", e))?;
        let acceptor = broker::tls_acceptor(&server_cert.cert, &server_cert.key, &ca_x509)?;
        let ca_path = dir.join(CA_CERT_FILE);

        let registry_file = config.state_dir.as_ref().map(|d| d.join(REGISTRY_FILE));
        let registry = match &registry_file {
            Some(path) if path.exists() => {
                let bytes = std::fs::read(path)
                    .map_err(|source| EmulatorError::StateDir { path: path.clone(), source })?;
                serde_json::from_slice(&bytes)
                    .map_err(|source| EmulatorError::Registry { path: path.clone(), source })?
            }
            _ => Registry::with_default_policies(),
        };

        let mqtt = bind("mqtt", SocketAddr::new(config.bind_address, config.mqtt_port))?;
        let plain = match config.plain_mqtt_port {
            Some(p) => Some(bind("mqtt-plain", SocketAddr::new(config.bind_address, p))?),
            None => None,
        };
        // WebSocket: the public wss listener and the internal loopback MQTT listener it
        // relays to (see `ws.rs`).
        let ws = match config.ws_port {
            Some(p) => Some((
                bind("websocket", SocketAddr::new(config.bind_address, p))?,
                bind("websocket-relay", SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?,
            )),
            None => None,
        };
        // AWS: the public certificate-MQTT and ALPN listeners, and the internal MQTT
        // listener both relay to (see `aws/transport.rs`).
        let aws_public = |p: Option<u16>, what| match p {
            Some(p) => bind(what, SocketAddr::new(config.bind_address, p)).map(Some),
            None => Ok(None),
        };
        let aws_mqtt = aws_public(config.aws_mqtt_port, "aws-mqtt")?;
        let aws_alpn = aws_public(config.aws_port, "aws")?;
        let aws_relay = if aws_mqtt.is_some() || aws_alpn.is_some() {
            Some(bind("aws-relay", SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?)
        } else {
            None
        };
        let control = bind("control", SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), config.control_port))?;
        let addr = |l: &TcpListener, what| {
            l.local_addr().map_err(|source| EmulatorError::Bind {
                what,
                addr: SocketAddr::new(config.bind_address, 0),
                source,
            })
        };
        let mqtt_port = addr(&mqtt, "mqtt")?.port();
        let plain_mqtt_port = match &plain {
            Some(l) => Some(addr(l, "mqtt-plain")?.port()),
            None => None,
        };
        let control_addr = addr(&control, "control")?;
        let ws = match ws {
            Some((public, relay)) => {
                let port = addr(&public, "websocket")?.port();
                let relay_addr = addr(&relay, "websocket-relay")?;
                Some(WsListeners { public, relay, relay_addr, acceptor: acceptor.clone(), port })
            }
            None => None,
        };
        let ws_port = ws.as_ref().map(|w| w.port);
        let aws_mqtt_port = match &aws_mqtt {
            Some(l) => Some(addr(l, "aws-mqtt")?.port()),
            None => None,
        };
        let aws_port = match &aws_alpn {
            Some(l) => Some(addr(l, "aws")?.port()),
            None => None,
        };
        let aws = match aws_relay {
            Some(relay) => Some(AwsListeners {
                relay_addr: addr(&relay, "aws-relay")?,
                relay,
                mqtt: aws_mqtt,
                alpn: aws_alpn,
                acceptor: crate::aws::transport::tls_acceptor(&server_cert.cert, &server_cert.key, &ca_x509)?,
            }),
            None => None,
        };
        let aws_core = Arc::new(AwsCore::new(
            AwsSettings {
                region: config.aws_region.clone(),
                host_names: hosts.clone(),
                telemetry_capacity: config.telemetry_capacity,
            },
            CertificateAuthority::load_or_create(&dir)?,
        ));

        let settings = HubSettings {
            host_name: config.hub_host_name.clone(),
            host_names: hosts,
            id_scope: config.dps_id_scope.clone(),
            dps_retry_after: config.dps_retry_after_secs,
            method_default_timeout: config.method_default_timeout,
            telemetry_capacity: config.telemetry_capacity,
            c2d_max_pending: config.c2d_max_pending,
        };
        let hub = Arc::new(Hub::new(settings, ca, registry, registry_file));
        hub.persist(&hub.lock());
        let info = crate::control::api::Info {
            hub_host_name: config.hub_host_name.clone(),
            host_names: hub.settings.host_names.clone(),
            mqtt_port,
            plain_mqtt_port,
            ws_port,
            dps_id_scope: config.dps_id_scope.clone(),
            ca_path: ca_path.display().to_string(),
            aws_endpoint: config.aws_endpoint.clone(),
            aws_region: config.aws_region.clone(),
            aws_mqtt_port,
            aws_port,
        };

        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle_signals = config.handle_signals;
        let thread = std::thread::Builder::new()
            .name("connector-emulator".into())
            .spawn(move || {
                let runner =
                    ntex_rt::System::build().name("connector-emulator").stop_on_panic(false).finish();
                runner.block_on(run(
                    hub,
                    aws_core,
                    aws,
                    acceptor,
                    mqtt,
                    plain,
                    ws,
                    control,
                    info,
                    handle_signals,
                    ready_tx,
                    stop_rx,
                ));
            })
            .map_err(|e| EmulatorError::Runtime { reason: e.to_string() })?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(EmulatorError::Runtime { reason }),
            Err(_) => return Err(EmulatorError::Runtime { reason: "did not start within 30 s".into() }),
        }
        tracing::info!(mqtt_port, ws_port, control = %control_addr, ca = %ca_path.display(), "emulator started");
        Ok(EmulatorHandle {
            mqtt_port,
            plain_mqtt_port,
            ws_port,
            aws_mqtt_port,
            aws_port,
            aws_endpoint: config.aws_endpoint,
            aws_region: config.aws_region,
            control_addr,
            ca_pem,
            ca_path,
            hub_host_name: config.hub_host_name,
            dps_id_scope: config.dps_id_scope,
            stop: Some(stop_tx),
            thread: Some(thread),
            _tmp: tmp,
        })
    }
}

/// The WebSocket listener, the internal MQTT listener it relays to, and its TLS acceptor.
struct WsListeners {
    public: TcpListener,
    relay: TcpListener,
    relay_addr: SocketAddr,
    acceptor: openssl::ssl::SslAcceptor,
    port: u16,
}

/// The AWS listeners: public ones (tokio, TLS + ALPN) and the internal MQTT listener.
struct AwsListeners {
    relay: TcpListener,
    relay_addr: SocketAddr,
    mqtt: Option<TcpListener>,
    alpn: Option<TcpListener>,
    acceptor: openssl::ssl::SslAcceptor,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, EmulatorError> {
    let l = TcpListener::bind(addr).map_err(|source| EmulatorError::Bind { what, addr, source })?;
    l.set_nonblocking(true).map_err(|source| EmulatorError::Bind { what, addr, source })?;
    Ok(l)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    hub: Arc<Hub>,
    aws_core: Arc<AwsCore>,
    aws: Option<AwsListeners>,
    acceptor: openssl::ssl::SslAcceptor,
    mqtt: TcpListener,
    plain: Option<TcpListener>,
    ws: Option<WsListeners>,
    control: TcpListener,
    info: crate::control::api::Info,
    handle_signals: bool,
    ready: mpsc::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let started = (|| -> std::io::Result<_> {
        let mut b = ntex_server::net::build().workers(1).shutdown_timeout(ntex_util::time::Seconds(1));
        if !handle_signals {
            b = b.disable_signals();
        }
        let (h, tls) = (hub.clone(), ntex_tls::openssl::SslAcceptor::new(acceptor));
        b = b
            .listen("mqtt", mqtt, async move |_| {
                ntex_service::chain_factory(tls.clone())
                    .map_err(|e| ntex_mqtt::MqttError::Service(broker::ServerError::Tls(e.to_string())))
                    .and_then(broker::mqtt_service(h.clone(), None))
            })?
            .config("mqtt", broker::mqtt_config());
        if let Some(plain) = plain {
            let h = hub.clone();
            b = b
                .listen("mqtt-plain", plain, async move |_| broker::mqtt_service(h.clone(), None))?
                .config("mqtt-plain", broker::mqtt_config());
        }
        let mut ws_task = None;
        if let Some(w) = ws {
            let (h, peers) = (hub.clone(), Arc::new(crate::ws::RelayPeers::default()));
            let p = peers.clone();
            b = b
                .listen("mqtt-ws-relay", w.relay, async move |_| {
                    broker::mqtt_service(h.clone(), Some(p.clone()))
                })?
                .config("mqtt-ws-relay", broker::mqtt_config());
            let public = tokio::net::TcpListener::from_std(w.public)?;
            ws_task = Some((public, w.acceptor, w.relay_addr, peers));
        }
        let mut aws_tasks = Vec::new();
        if let Some(a) = aws {
            let (core, peers) = (aws_core.clone(), Arc::new(AwsRelayPeers::default()));
            let p = peers.clone();
            b = b
                .listen("aws-relay", a.relay, async move |_| {
                    broker::aws::aws_mqtt_service(core.clone(), p.clone())
                })?
                .config("aws-relay", broker::mqtt_config());
            for (l, which) in [(a.mqtt, Listener::Mqtt), (a.alpn, Listener::Alpn)] {
                if let Some(l) = l {
                    aws_tasks.push((
                        tokio::net::TcpListener::from_std(l)?,
                        which,
                        a.acceptor.clone(),
                        a.relay_addr,
                        peers.clone(),
                    ));
                }
            }
        }
        let control = tokio::net::TcpListener::from_std(control)?;
        Ok((b.run(), control, ws_task, aws_tasks))
    })();
    let (srv, control, ws_task, aws_tasks) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let control_task = tokio::task::spawn_local(control::server::serve(control, hub, aws_core.clone(), info));
    let aws_tasks: Vec<_> = aws_tasks
        .into_iter()
        .map(|(l, which, acc, relay, peers)| {
            tokio::task::spawn_local(crate::aws::transport::serve(
                l,
                which,
                acc,
                relay,
                peers,
                aws_core.clone(),
            ))
        })
        .collect();
    let ws_task = ws_task.map(|(listener, acceptor, relay, peers)| {
        tokio::task::spawn_local(crate::ws::serve(listener, acceptor, relay, peers))
    });
    let _ = ready.send(Ok(()));
    match select(stop, srv.clone()).await {
        Either::Left(_) => srv.stop(false).await,
        Either::Right(_) => tracing::info!("emulator stopped by signal"),
    }
    control_task.abort();
    if let Some(t) = ws_task {
        t.abort();
    }
    for t in aws_tasks {
        t.abort();
    }
    tracing::info!("emulator stopped");
}

/// A running emulator. Dropping it shuts the emulator down (as [`shutdown`] does).
///
/// [`shutdown`]: EmulatorHandle::shutdown
#[derive(Debug)]
pub struct EmulatorHandle {
    mqtt_port: u16,
    plain_mqtt_port: Option<u16>,
    ws_port: Option<u16>,
    aws_mqtt_port: Option<u16>,
    aws_port: Option<u16>,
    aws_endpoint: String,
    aws_region: String,
    control_addr: SocketAddr,
    ca_pem: Vec<u8>,
    ca_path: PathBuf,
    hub_host_name: String,
    dps_id_scope: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _tmp: Option<TempDir>,
}

impl EmulatorHandle {
    /// Bound TLS MQTT port (IoT Hub and DPS).
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_port
    }

    /// Bound plain-TCP MQTT port, if enabled.
    pub fn plain_mqtt_port(&self) -> Option<u16> {
        self.plain_mqtt_port
    }

    /// Bound MQTT-over-secure-WebSocket port (`wss://localhost:{port}/$iothub/websocket`),
    /// if enabled ([`EmulatorConfig::ws_port`]; always with [`EmulatorConfig::ephemeral`]).
    pub fn ws_port(&self) -> Option<u16> {
        self.ws_port
    }

    /// Bound AWS IoT certificate-MQTT port (AWS's 8883), if enabled.
    pub fn aws_mqtt_port(&self) -> Option<u16> {
        self.aws_mqtt_port
    }

    /// Bound AWS IoT ALPN / WebSocket port (AWS's 443: ALPN `x-amzn-mqtt-ca`, `mqtt`, or
    /// `wss://{endpoint}:{port}/mqtt`), if enabled.
    pub fn aws_port(&self) -> Option<u16> {
        self.aws_port
    }

    /// The AWS IoT endpoint host name (what clients connect to and send as SNI).
    pub fn aws_endpoint(&self) -> &str {
        &self.aws_endpoint
    }

    /// The AWS region of SigV4 credential scopes.
    pub fn aws_region(&self) -> &str {
        &self.aws_region
    }

    /// Base URL of the control API, `http://127.0.0.1:{port}`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// A client of the control API.
    pub fn control(&self) -> ControlClient {
        ControlClient::from_addr(self.control_addr)
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Path of the CA certificate file (valid while the handle lives).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The hub's `HostName`.
    pub fn hub_host_name(&self) -> &str {
        &self.hub_host_name
    }

    /// The DPS ID scope.
    pub fn dps_id_scope(&self) -> &str {
        &self.dps_id_scope
    }

    /// Stops the emulator: closes every connection and joins its threads (blocks briefly).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Blocks until the emulator stops on its own (a signal, with `handle_signals`).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("emulator thread panicked");
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
