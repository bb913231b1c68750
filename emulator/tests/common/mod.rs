//! Helpers for the emulator's integration tests: an emulator per test (port 0), paho
//! devices over real TLS, SAS tokens computed here with openssl (independently of both
//! the emulator and any client crate).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_emulator::control::api::{Authentication, IdentityInfo};
use connector_emulator::{ControlClient, Emulator, EmulatorConfig, EmulatorHandle};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use paho_mqtt as mqtt;

/// Everything a test waits for gets this long at most.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Env {
    pub emu: EmulatorHandle,
    pub ctl: ControlClient,
}

impl Env {
    pub fn start() -> Env {
        Env::with(EmulatorConfig::ephemeral())
    }

    pub fn with(config: EmulatorConfig) -> Env {
        let emu = Emulator::start(config).expect("start the emulator");
        let ctl = emu.control();
        Env { emu, ctl }
    }

    pub fn host(&self) -> &str {
        self.emu.hub_host_name()
    }

    /// Creates a SAS device and returns its primary key.
    pub async fn device(&self, id: &str) -> String {
        key_of(&self.ctl.create_device(id).await.expect("create device"))
    }

    /// Connects `id` as a SAS device with a one-hour token.
    pub async fn connect(&self, id: &str, key: &str) -> Device {
        let token = sas(&format!("{}/devices/{id}", self.host()), key, now() + 3600, None);
        self.connect_with(id, &hub_user(self.host(), id), Some(&token), None, true)
            .await
            .expect("device connects")
    }

    /// Connects with explicit credentials; `cert` is (certificate PEM, key PEM) paths.
    pub async fn connect_with(
        &self,
        client_id: &str,
        user: &str,
        password: Option<&str>,
        cert: Option<(&Path, &Path)>,
        clean: bool,
    ) -> Result<Device, mqtt::Error> {
        Device::connect(self.emu.mqtt_port(), self.emu.ca_path(), client_id, user, password, cert, clean)
            .await
    }

    /// `wss://localhost:{ws_port}/$iothub/websocket`.
    pub fn ws_uri(&self) -> String {
        format!("wss://localhost:{}/$iothub/websocket", self.emu.ws_port().expect("WebSocket enabled"))
    }

    /// As [`Env::connect_with`], over the WebSocket listener.
    pub async fn connect_ws_with(
        &self,
        client_id: &str,
        user: &str,
        password: Option<&str>,
        cert: Option<(&Path, &Path)>,
    ) -> Result<Device, mqtt::Error> {
        Device::connect_uri(&self.ws_uri(), self.emu.ca_path(), client_id, user, password, cert, true).await
    }
}

/// `{host}/{device}/?api-version=2021-04-12`.
pub fn hub_user(host: &str, client_id: &str) -> String {
    format!("{host}/{client_id}/?api-version=2021-04-12")
}

pub fn key_of(info: &IdentityInfo) -> String {
    match &info.authentication {
        Authentication::Sas { symmetric_key } => symmetric_key.primary_key.clone(),
        other => panic!("not a SAS identity: {other:?}"),
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Percent-encodes everything but `A-Z a-z 0-9 - _ . ~`, upper-case hex.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn hmac_b64(key_b64: &str, msg: &str) -> String {
    let key = openssl::base64::decode_block(key_b64).expect("key is base64");
    let pkey = PKey::hmac(&key).expect("hmac key");
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("signer");
    signer.update(msg.as_bytes()).expect("hmac update");
    openssl::base64::encode_block(&signer.sign_to_vec().expect("hmac"))
}

/// A SAS token over `resource` (percent-encoded, upper-case hex, as the Python SDK does).
pub fn sas(resource: &str, key_b64: &str, expiry: u64, skn: Option<&str>) -> String {
    sas_with_sr(&encode(resource), key_b64, expiry, skn)
}

/// A SAS token with `sr` spelled exactly as given (signed as sent).
pub fn sas_with_sr(sr: &str, key_b64: &str, expiry: u64, skn: Option<&str>) -> String {
    let sig = hmac_b64(key_b64, &format!("{sr}\n{expiry}"));
    let mut t = format!("SharedAccessSignature sr={sr}&sig={}&se={expiry}", encode(&sig));
    if let Some(n) = skn {
        t.push_str(&format!("&skn={n}"));
    }
    t
}

/// A paho async client connected to the emulator, with its message stream.
pub struct Device {
    pub client: mqtt::AsyncClient,
    pub rx: mqtt::AsyncReceiver<Option<mqtt::Message>>,
}

/// paho-mqtt deadlocks when the last reference to a client is dropped on one of its own
/// callback threads (`MQTTAsync_destroy` waits for the mutex the thread holds), which
/// happens when a token callback outlives the test's handle. Test clients are therefore
/// never destroyed: they are parked here until the process exits.
fn keep(client: mqtt::AsyncClient) {
    static KEPT: std::sync::Mutex<Vec<mqtt::AsyncClient>> = std::sync::Mutex::new(Vec::new());
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(client);
}

impl Drop for Device {
    fn drop(&mut self) {
        keep(self.client.clone());
    }
}

impl Device {
    pub async fn connect(
        port: u16,
        ca: &Path,
        client_id: &str,
        user: &str,
        password: Option<&str>,
        cert: Option<(&Path, &Path)>,
        clean: bool,
    ) -> Result<Device, mqtt::Error> {
        Device::connect_uri(&format!("ssl://localhost:{port}"), ca, client_id, user, password, cert, clean)
            .await
    }

    /// Connects to `uri` (`ssl://…` or `wss://…`).
    pub async fn connect_uri(
        uri: &str,
        ca: &Path,
        client_id: &str,
        user: &str,
        password: Option<&str>,
        cert: Option<(&Path, &Path)>,
        clean: bool,
    ) -> Result<Device, mqtt::Error> {
        let mut client = mqtt::AsyncClient::new(
            mqtt::CreateOptionsBuilder::new()
                .server_uri(uri)
                .client_id(client_id)
                .persistence(None)
                .mqtt_version(mqtt::MQTT_VERSION_3_1_1)
                .finalize(),
        )?;
        let rx = client.get_stream(100);
        let mut ssl = mqtt::SslOptionsBuilder::new();
        ssl.trust_store(ca)?.enable_server_cert_auth(true).verify(true);
        if let Some((c, k)) = cert {
            ssl.key_store(c)?.private_key(k)?;
        }
        let mut opts = if uri.starts_with("wss://") {
            mqtt::ConnectOptionsBuilder::new_ws()
        } else {
            mqtt::ConnectOptionsBuilder::new_v3()
        };
        opts.ssl_options(ssl.finalize())
            .user_name(user)
            .clean_session(clean)
            .keep_alive_interval(Duration::from_secs(30))
            .connect_timeout(WAIT);
        if let Some(p) = password {
            opts.password(p);
        }
        match client.connect(opts.finalize()).await {
            Ok(_) => Ok(Device { client, rx }),
            Err(e) => {
                keep(client);
                Err(e)
            }
        }
    }

    /// SUBSCRIBE; returns the granted QoS, or 0x80 when the hub refused the filter.
    pub async fn subscribe(&self, filter: &str, qos: i32) -> i32 {
        match self.client.subscribe(filter, qos).await {
            Ok(rsp) => rsp.subscribe_response().expect("SUBACK"),
            Err(mqtt::Error::Failure) => 0x80,
            Err(e) => panic!("subscribe {filter}: {e}"),
        }
    }

    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: i32,
    ) -> Result<(), mqtt::Error> {
        self.client.publish(mqtt::Message::new(topic, payload.into(), qos)).await
    }

    /// Next message, within [`WAIT`].
    pub async fn recv(&self, what: &str) -> mqtt::Message {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => panic!("connection lost while waiting for {what}"),
            Ok(Err(_)) => panic!("stream closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    /// Waits until paho reports the connection lost.
    pub async fn lost(&self, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(None)) | Ok(Err(_)) => return,
                Ok(Ok(Some(_))) => continue,
                Err(_) => panic!("timed out waiting until {what}"),
            }
        }
    }

    /// True when nothing arrives for `quiet` (used only to show something did *not*
    /// happen after a positive check already passed).
    pub async fn nothing_within(&self, quiet: Duration) -> Option<mqtt::Message> {
        match tokio::time::timeout(quiet, self.rx.recv()).await {
            Ok(Ok(Some(m))) => Some(m),
            _ => None,
        }
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect(None).await;
    }
}

/// The CONNACK return code of a refused connect.
pub fn connack_code(err: &mqtt::Error) -> Option<i32> {
    match err {
        mqtt::Error::ConnectReturn(rc) => Some(*rc as i32),
        _ => None,
    }
}

/// A `$rid`/`$version` query parameter of a response topic.
pub fn param(topic: &str, name: &str) -> Option<String> {
    let q = topic.split_once('?')?.1;
    q.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('=')).map(str::to_string)
}

/// Writes PEM strings to files in `dir` and returns their paths.
pub fn write_pem(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write PEM");
    p
}

// ---- AWS IoT ----

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let pkey = PKey::hmac(key).expect("hmac key");
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("signer");
    signer.update(msg).expect("hmac update");
    signer.sign_to_vec().expect("hmac")
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
pub fn amz_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    // civil_from_days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// A SigV4 presigned `/mqtt?…` path and query signed over `host` only (JS v1 style),
/// computed independently of the emulator.
pub fn presign(
    host: &str,
    region: &str,
    key_id: &str,
    secret: &str,
    at: u64,
    expires: Option<u64>,
) -> String {
    let date = amz_date(at);
    let day = &date[..8];
    let cred = format!("{key_id}/{day}/{region}/iotdevicegateway/aws4_request");
    let mut params = vec![
        ("X-Amz-Algorithm".to_string(), "AWS4-HMAC-SHA256".to_string()),
        ("X-Amz-Credential".to_string(), cred),
        ("X-Amz-Date".to_string(), date.clone()),
        ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
    ];
    if let Some(e) = expires {
        params.push(("X-Amz-Expires".to_string(), e.to_string()));
    }
    params.sort();
    let query =
        params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
    let canonical = format!(
        "GET\n/mqtt\n{query}\nhost:{host}\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let digest = openssl::hash::hash(MessageDigest::sha256(), canonical.as_bytes()).expect("sha256");
    let sts =
        format!("AWS4-HMAC-SHA256\n{date}\n{day}/{region}/iotdevicegateway/aws4_request\n{}", hex(&digest));
    let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"iotdevicegateway");
    let k = hmac(&k, b"aws4_request");
    format!("/mqtt?{query}&X-Amz-Signature={}", hex(&hmac(&k, sts.as_bytes())))
}

/// How an AWS test client connects.
pub struct AwsConnect<'a> {
    pub uri: String,
    pub client_id: &'a str,
    pub user: &'a str,
    pub cert: Option<(&'a Path, &'a Path)>,
    pub alpn: Option<&'a str>,
}

/// Connects a paho client to the AWS endpoint (MQTT 3.1.1, clean session).
pub async fn aws_connect(ca: &Path, c: AwsConnect<'_>) -> Result<Device, mqtt::Error> {
    let mut client = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&c.uri)
            .client_id(c.client_id)
            .persistence(None)
            .mqtt_version(mqtt::MQTT_VERSION_3_1_1)
            .finalize(),
    )?;
    let rx = client.get_stream(100);
    let mut ssl = mqtt::SslOptionsBuilder::new();
    ssl.trust_store(ca)?.enable_server_cert_auth(true).verify(true);
    if let Some((cert, key)) = c.cert {
        ssl.key_store(cert)?.private_key(key)?;
    }
    if let Some(a) = c.alpn {
        ssl.alpn_protos(&[a]);
    }
    let mut opts = if c.uri.starts_with("wss://") {
        mqtt::ConnectOptionsBuilder::new_ws()
    } else {
        mqtt::ConnectOptionsBuilder::new_v3()
    };
    opts.ssl_options(ssl.finalize())
        .user_name(c.user)
        .clean_session(true)
        .keep_alive_interval(Duration::from_secs(30))
        .connect_timeout(WAIT);
    match client.connect(opts.finalize()).await {
        Ok(_) => Ok(Device { client, rx }),
        Err(e) => {
            keep(client);
            Err(e)
        }
    }
}

/// A thing with an ACTIVE certificate from the emulator CA attached; returns the
/// certificate id and the (cert, key) PEM paths inside `dir`.
pub async fn aws_thing_with_cert(env: &Env, thing: &str, dir: &Path) -> (String, PathBuf, PathBuf) {
    use connector_emulator::control::aws_api::CreateCertificate;
    env.ctl.aws_create_thing(thing).await.expect("create thing");
    let c = env
        .ctl
        .aws_create_certificate(&CreateCertificate { thing_name: Some(thing.into()), ..Default::default() })
        .await
        .expect("create certificate");
    let cert = write_pem(dir, &format!("{thing}.pem"), &c.certificate_pem);
    let key = write_pem(dir, &format!("{thing}.key"), c.private_key_pem.as_deref().expect("issued key"));
    (c.certificate_id, cert, key)
}

impl Env {
    /// `ssl://localhost:{aws_mqtt_port}`.
    pub fn aws_mqtt_uri(&self) -> String {
        format!("ssl://localhost:{}", self.emu.aws_mqtt_port().expect("AWS MQTT enabled"))
    }

    /// Connects with a client certificate on the 8883-style port.
    pub async fn aws_cert_connect(
        &self,
        client_id: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Device, mqtt::Error> {
        let c =
            AwsConnect { uri: self.aws_mqtt_uri(), client_id, user: "", cert: Some((cert, key)), alpn: None };
        aws_connect(self.emu.ca_path(), c).await
    }
}

impl Device {
    /// Next message within [`WAIT`] as (topic, JSON payload).
    pub async fn recv_json(&self, what: &str) -> (String, serde_json::Value) {
        let m = self.recv(what).await;
        let v = serde_json::from_slice(m.payload())
            .unwrap_or_else(|e| panic!("{what}: payload on {} is not JSON: {e}", m.topic()));
        (m.topic().to_string(), v)
    }

    /// Next message, which must arrive on `topic`, as JSON.
    pub async fn expect_json(&self, topic: &str) -> serde_json::Value {
        let (t, v) = self.recv_json(topic).await;
        assert_eq!(t, topic, "unexpected message {v}");
        v
    }
}

/// An ACTIVE certificate from the emulator CA attached to no thing (a fleet-provisioning
/// claim certificate); returns its id and the (cert, key) PEM paths inside `dir`.
pub async fn aws_claim_cert(env: &Env, name: &str, dir: &Path) -> (String, PathBuf, PathBuf) {
    use connector_emulator::control::aws_api::CreateCertificate;
    let c = env
        .ctl
        .aws_create_certificate(&CreateCertificate { common_name: Some(name.into()), ..Default::default() })
        .await
        .expect("create claim certificate");
    let cert = write_pem(dir, &format!("{name}.pem"), &c.certificate_pem);
    let key = write_pem(dir, &format!("{name}.key"), c.private_key_pem.as_deref().expect("issued key"));
    (c.certificate_id, cert, key)
}

/// Connects a paho MQTT 5 client to the AWS endpoint (clean start) with the given
/// keep-alive; returns the device and the CONNACK (its properties).
pub async fn aws_connect_v5(
    ca: &Path,
    c: AwsConnect<'_>,
    keep_alive: Duration,
) -> Result<(Device, mqtt::ServerResponse), mqtt::Error> {
    let mut client = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&c.uri)
            .client_id(c.client_id)
            .persistence(None)
            .mqtt_version(mqtt::MQTT_VERSION_5)
            .finalize(),
    )?;
    let rx = client.get_stream(100);
    let mut ssl = mqtt::SslOptionsBuilder::new();
    ssl.trust_store(ca)?.enable_server_cert_auth(true).verify(true);
    if let Some((cert, key)) = c.cert {
        ssl.key_store(cert)?.private_key(key)?;
    }
    if let Some(a) = c.alpn {
        ssl.alpn_protos(&[a]);
    }
    let mut opts = mqtt::ConnectOptionsBuilder::new_v5();
    opts.ssl_options(ssl.finalize())
        .user_name(c.user)
        .clean_start(true)
        .keep_alive_interval(keep_alive)
        .connect_timeout(WAIT);
    match client.connect(opts.finalize()).await {
        Ok(rsp) => Ok((Device { client, rx }, rsp)),
        Err(e) => {
            keep(client);
            Err(e)
        }
    }
}
