//! Local emulator of the **Azure IoT Hub** and **DPS** device endpoints (and of the
//! **AWS IoT Core** device endpoint, below, which also speaks MQTT 5): MQTT 3.1.1 over
//! TLS with the emulator's own CA, authentication like the hub, and an HTTP control API
//! through which a test or a person plays the back end. It is the peer the connector's
//! tests run against and the default a newcomer runs with no cloud at hand.
//!
//! It is an independent implementation from `shared/protocols/azure-iot-hub.md` and
//! `azure-dps.md`: it shares no code with the client crates.
//!
//! # Module map
//! | module | what |
//! |---|---|
//! | [`Emulator`], [`EmulatorHandle`] (`server.rs`) | start on own threads, bound ports, CA, shutdown |
//! | [`EmulatorConfig`] (`config.rs`) | ports, state directory, host names, limits |
//! | `broker/` | ntex-mqtt server wiring: CONNECT, SUBSCRIBE, PUBLISH routing, per-connection task |
//! | `auth/` | CONNECT user names, SAS verification, X.509 (thumbprint, CA) |
//! | `azure/` | the hub back end: registry, connections and sessions, twin, C2D, methods, telemetry, DPS, faults |
//! | `ws.rs` | MQTT over secure WebSocket: TLS, the `/$iothub/websocket` upgrade, relay to the hub |
//! | `ca.rs` | the emulator CA, server certificate, thumbprints, chain verification |
//! | [`control`] | control API routes ([`control::api`] bodies), [`ControlClient`], the `ctl` CLI |
//! | `aws/` | the AWS IoT Core back end: registry, shadow, jobs and fleet-provisioning services, SigV4, topics, transports (TLS/ALPN/WSS) |
//! | `broker/aws.rs` | the AWS MQTT server on the internal relay listener |
//!
//! # AWS IoT Core endpoint
//! Independent of `azure/`, from `shared/protocols/aws-iot-core.md`, `aws-shadow.md`,
//! `aws-jobs.md` and `aws-fleet-provisioning.md`.
//! * **Transports** ([`EmulatorConfig::aws_mqtt_port`], [`EmulatorConfig::aws_port`]):
//!   TLS ≥ 1.2 with SNI required to be the endpoint ([`EmulatorConfig::aws_endpoint`],
//!   covered by the server certificate) or another configured host name. The
//!   8883-style port is MQTT with a client certificate. The 443-style port routes by
//!   ALPN: [`ALPN_MQTT_CA`] → certificate MQTT, [`ALPN_MQTT`] → custom-authorizer MQTT,
//!   `http/1.1`/none → `GET /mqtt` WebSocket upgrade (subprotocol `mqtt` or `mqttv3.1`).
//! * **Certificates**: principal = certificate id (hex SHA-256 of the DER). Registered
//!   and `ACTIVE` → accepted; unknown, `INACTIVE`, expired or missing → CONNACK 5.
//!   Policies are allow-all. Deactivating or deleting a certificate closes its connections.
//! * **SigV4** (WebSocket): verified over the headers `X-Amz-SignedHeaders` names, the
//!   session token never signed, service `iotdevicegateway` or `iotdata`, the region
//!   configured; `X-Amz-Date` ≤ 5 min ahead; refused after `X-Amz-Expires` (+5 min), or
//!   after 15 min without it. Failures answer HTTP 403.
//! * **Custom authorizers** replace the Lambda with an allow-list of tokens
//!   ([`control::aws_api::Authorizer`]): the named authorizer (`x-amz-customauthorizer-name`)
//!   or the default one; token under its `tokenKeyName` in the CONNECT user name query
//!   (ALPN `mqtt`) or in the upgrade's headers/query (WebSocket); with a signing key, the
//!   base64 RSA-SHA256 `x-amz-customauthorizer-signature` must verify. Denied → CONNACK 5
//!   (MQTT) or 403 (WebSocket).
//! * **CONNECT**: client id 1–128 bytes (else code 2); a second connection with the same
//!   client id closes the first; keep-alive clamped to 30–1200 s (0 → 1200), idle
//!   timeout 1.5×; Will only on a user topic, not retained.
//! * **SUBSCRIBE**: user filters, and filters under `$aws/things/{t}/shadow/…`,
//!   `…/jobs/…`, `$aws/certificates/…`, `$aws/provisioning-templates/…`; ≤ 8 per
//!   packet, ≤ 256 bytes, ≤ 8 levels; QoS min(requested, 1); others fail. `a/#` does not
//!   match `a`.
//! * **PUBLISH**: user topics are captured as telemetry and delivered to subscribers;
//!   `$aws/things/{t}/shadow[/name/{n}]/{get,update,delete}` go to the shadow service
//!   (404 `Thing not found` for unknown things); `$aws/things/{t}/jobs/…` to the jobs
//!   service and `$aws/certificates/create[-from-csr]/{json,cbor}`,
//!   `$aws/provisioning-templates/{name}/provision/{json,cbor}` to fleet provisioning (one
//!   dispatch point, `aws::dispatch_service`). Other `$` topics, retained publishes and
//!   payloads above 128 KB close the connection. Policies are allow-all: any connection
//!   may use any thing's topics (as for the shadow).
//! * **Shadow** (`aws-shadow.md` §4, §8): merge (`null` deletes, objects merge, arrays
//!   replace), metadata timestamps, delta, versions (409 on conflict), clientToken echo,
//!   `update/accepted` → `update/documents` → `update/delta` (when non-empty), 400/413/415
//!   with the documented messages, 8 KB, depth 6. Control-API updates and deletes publish
//!   the same messages.
//! * **Jobs** (`aws-jobs.md`): jobs created through the control API queue one execution
//!   per target thing. `get`, `start-next`, `{jobId}/get` (`$next`, `executionNumber`,
//!   `includeJobDocument`), `{jobId}/update` (`expectedVersion` as number or numeric
//!   string, `statusDetails`, `stepTimeoutInMinutes` incl. −1, `includeJobExecutionState`,
//!   `includeJobDocument`); answers on `…/accepted` / `…/rejected` go to the requesting
//!   client only (when it subscribed), with `clientToken` echoed and `timestamp`. States
//!   QUEUED → IN_PROGRESS → SUCCEEDED / FAILED / REJECTED (device; QUEUED may go straight
//!   to a terminal state), TIMED_OUT (step timer or the job's `inProgressTimeoutInMinutes`),
//!   CANCELED / REMOVED (back end); `versionNumber` from 1, +1 per change. Rejections:
//!   `InvalidTopic`, `InvalidJson`, `InvalidRequest` (fields, limits, statuses a device may
//!   not set), `InvalidStateTransition` and `VersionMismatch` (with `executionState`),
//!   `ResourceNotFound`, `TerminalStateReached` (describing a terminal execution of a job no
//!   longer in progress), `RequestThrottled` (fault). `notify` when the pending set
//!   changes (on QUEUED → IN_PROGRESS too only when set through `/aws/jobs-settings`; the
//!   docs' example has none), `notify-next` when the
//!   next execution changes; both to every subscriber. Retries (simplified
//!   `retryConfig`) queue a new execution number after FAILED / TIMED_OUT. Timers run on
//!   a service clock the control API can advance (`POST /aws/clock`), checked before
//!   every request and by a one-second tick.
//! * **Fleet provisioning** (`aws-fleet-provisioning.md`): CreateKeysAndCertificate (RSA
//!   2048 key + certificate from the emulator CA) and CreateCertificateFromCsr (signature
//!   verified; RSA ≥ 2048 or EC P-256/384/521) register the certificate
//!   `PENDING_ACTIVATION` with a single-use ownership token valid for 1 h (service clock;
//!   on expiry an unattached inactive certificate is deleted). RegisterThing evaluates a
//!   template from the control API ([`control::aws_api::ProvisioningTemplate`]: `Ref`,
//!   `Fn::Join`, parameter defaults, `AttributePayload`, certificate `Status`, flat
//!   `DeviceConfiguration`), creates or updates the thing, attaches and activates the
//!   certificate (the device can then connect with it) and answers `thingName` and
//!   `deviceConfiguration`. Any authenticated connection may call them unless the
//!   template lists `allowedPrincipals` (403 `AccessDenied`). Errors are
//!   `{"statusCode","errorCode","errorMessage"}`: 400 `InvalidPayload` /
//!   `InvalidCertificateOwnershipToken`, 404 `ResourceNotFound`, 429 `Throttling` (fault).
//!   Answers go to the requesting client only.
//!
//! * **MQTT 5** (same listeners, same rules): reason codes (CONNACK 0x85/0x86/0x87/0x88,
//!   SUBACK 0x8F, DISCONNECT with a reason string when the server closes, 0x8E when a
//!   newer connection took the client id); CONNACK with
//!   Maximum QoS 1, Retain Available 0, no shared subscriptions or subscription
//!   identifiers, Topic Alias Maximum 8, Receive Maximum 100, Server Keep Alive when the
//!   client's was clamped;
//!   inbound topic aliases (resolved by ntex-mqtt; an unknown alias closes the connection
//!   with a protocol error). User properties, content type, response topic, correlation
//!   data and payload format indicator (of PUBLISH and Will) go unchanged to MQTT 5
//!   subscribers (3.1.1 subscribers get the bare message); telemetry records user
//!   properties, content type and the Topic Alias a PUBLISH carried
//!   ([`control::aws_api::AwsTelemetry`]).
//!
//! Refused on the AWS side: QoS 2, retained messages, MQTT 5 enhanced authentication,
//! session expiry, message expiry, shared subscriptions and request/problem information,
//! persistent sessions (CleanSession 0 / Clean Start 0 is accepted with session-present 0
//! and nothing kept), lifecycle events (`$aws/events/…`), Device Defender, streams, tunnels, Basic
//! Ingest, HTTPS publish, custom auth with credentials in the CONNECT over WebSocket, the
//! 10-in-flight shadow limit (429 only by fault injection); jobs: continuous jobs and
//! thing groups, rollout/abort configurations, `$aws/events/job…` (a deleted thing's
//! executions are forgotten, not REMOVED); fleet provisioning: CBOR payloads (answered on
//! `…/rejected` with a CBOR-encoded 400 saying so), pre-provisioning hooks, `Fn::Sub` /
//! `Fn::FindInMap` / `Mappings`, thing groups and types, policy evaluation.
//!
//! # Example
//! ```no_run
//! use connector_emulator::{Emulator, EmulatorConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emu = Emulator::start(EmulatorConfig::ephemeral())?;
//! let ctl = emu.control();
//! let dev = ctl.create_device("device-01").await?; // SAS keys generated
//! println!("mqtts://localhost:{} trusting {}", emu.mqtt_port(), emu.ca_path().display());
//! # let _ = dev;
//! emu.shutdown();
//! # Ok(()) }
//! ```
//! Standalone: `cargo run -p connector-emulator -- serve [--mqtt-port 8883]
//! [--ws-port 8443 | --no-websocket] [--control-port 8990] [--state-dir DIR]`, then `connector-emulator ctl device create
//! dev1` and `connector-emulator ctl device connection-string dev1`.
//!
//! # What the device side gets
//! * **Transports**: MQTT over TLS on `mqtt_port` (the hub's 8883) and MQTT over secure
//!   WebSocket on `ws_port` (the hub's 443): `GET /$iothub/websocket` with subprotocol
//!   `mqtt`, MQTT in binary frames; any other path, method or subprotocol gets an HTTP
//!   4xx. Both carry the same hub (same authentication, X.509 included, same topics);
//!   see `ws.rs` for how.
//! * **CONNECT** (IoT Hub): client id `{device}` or `{device}/{module}`; user name
//!   `{host}/{device}[/{module}]/?api-version=…` (api-version required; `model-id`
//!   recorded); `{host}` is `hub_host_name` or another configured host name
//!   (case-insensitive). Password = SAS token, verified over `sr` exactly as sent, `sr`
//!   then decoded and matched segment-wise; device/module keys or a policy key (`skn`,
//!   policy with `DeviceConnect`). No password + client certificate = X.509 by thumbprint
//!   (SHA-1 or SHA-256) or by CA (CN = device id, chain to a registered CA).
//!   Refusals: return code 2 (client id/user name mismatch, invalid id), 3 (throttled by
//!   a fault), 4 (malformed user name, no api-version, unparsable token, no credentials),
//!   5 (unknown identity, wrong key, expired token, wrong host, disabled, thumbprint or CA
//!   mismatch). The connection is closed when the token expires. One connection per
//!   identity: a new CONNECT closes the previous one. Keep-alive: 1.5 × the client's,
//!   at most 1767 s. CleanSession 0 keeps subscriptions and pending C2D.
//! * **SUBSCRIBE**: only `devices/{id}/messages/devicebound/#` (or `devices/+/…`, devices
//!   only), `$iothub/methods/POST/#`, `$iothub/twin/res/#`,
//!   `$iothub/twin/PATCH/properties/desired/#` (DPS: `$dps/registrations/res/#`); granted
//!   QoS min(requested, 1); anything else gets the SUBACK failure code.
//! * **PUBLISH**: telemetry on the identity's own `…/messages/events/{bag}` (property bag
//!   parsed; RETAIN adds `mqtt-retain`), `$iothub/twin/GET/?$rid=`,
//!   `$iothub/twin/PATCH/properties/reported/?$rid=`, `$iothub/methods/res/{status}/?$rid=`.
//!   Any other topic, another identity's topic, a malformed bag, QoS 2 or a message above
//!   256 KB closes the connection.
//! * **Twin**: GET → `$iothub/twin/res/200/?$rid=` with `{"desired":{…,"$version"},
//!   "reported":{…,"$version"}}`; reported PATCH → `204` with `&$version=`; malformed JSON,
//!   invalid keys/values/depth → 400, above 32 KB → 413, throttled → 429. Desired changes
//!   are pushed on `$iothub/twin/PATCH/properties/desired/?$version=` to a subscribed,
//!   connected device (never queued).
//! * **Methods**: `$iothub/methods/POST/{name}/?$rid={rid}` at QoS 0; only the answer of
//!   the identity the request went to completes the call.
//! * **C2D**: `devices/{id}/messages/devicebound/{bag}` (`$.mid`, `$.cid`, `$.uid`, `$.ct`,
//!   `$.ce`, `$.to`, `iothub-ack`, application properties), QoS of the subscription;
//!   completed by PUBACK, sent again on the next connection until then; 64 KB, 50 pending.
//! * **DPS** (same listener, told apart by the user name
//!   `{idScope}/registrations/{regId}/api-version=…`): SAS with `skn=registration` and the
//!   individual key or the group-derived key, or X.509 (CN = registration id; thumbprint
//!   for individual enrollments, CA for groups). Register → `202` `assigning` with
//!   `operationId` and `retry-after`; poll → `200` `assigned` with `assignedHub` (the hub
//!   host name) and `deviceId`, creating the device with the same credential.
//!
//! # Refused rather than approximated
//! MQTT 5; QoS 2; arbitrary topics and wildcard
//! subscriptions; module inputs and C2D to modules (IoT Edge only); C2D feedback,
//! expiry and abandon/reject; X.509 CA authentication of modules; method
//! `connectTimeoutInSeconds` (an offline device gets 404 at once); DPS TPM attestation,
//! custom allocation and re-provisioning policies; hub-side throttling other than the
//! injected faults; the 5-subscription limit is not enforced.
//!
//! # Control API routes
//! JSON in and out; errors are `{"errorCode": 404001, "message": "…"}` with the HTTP
//! status. Ids in paths are percent-encoded. Bodies are in [`control::api`].
//!
//! | route | what |
//! |---|---|
//! | `GET /info` | host names, ports, ID scope, CA path ([`control::api::Info`]) |
//! | `GET /devices` | devices ([`control::api::IdentityInfo`], keys included) |
//! | `PUT /devices/{d}` | create/update ([`control::api::IdentitySpec`]; keys generated) |
//! | `GET`, `DELETE /devices/{d}` | show, delete (with modules; connections closed) |
//! | `GET /devices/{d}/modules` | modules of a device |
//! | `PUT`, `GET`, `DELETE /devices/{d}/modules/{m}` | modules |
//! | `GET …/twin` | service-side twin (`$metadata`, `$version`, tags) |
//! | `PATCH …/twin` | merge desired properties / tags ([`control::api::TwinUpdate`]); device notified |
//! | `PUT …/twin` | replace desired properties (and tags) |
//! | `POST …/methods` | invoke ([`control::api::MethodInvocation`]) → `{"status","payload"}`; 404 offline, 504 timeout |
//! | `POST /devices/{d}/messages/devicebound` | queue C2D ([`control::api::C2dRequest`]) |
//! | `GET /devices/{d}/messages/devicebound` | C2D not yet acknowledged |
//! | `GET`, `DELETE …/messages/events` | telemetry of the device (not its modules) or module |
//! | `GET`, `DELETE /messages/events[?deviceId=&moduleId=]` | all telemetry |
//! | `GET /connections` | live connections with subscriptions |
//! | `POST …/faults/drop` | close the connection now |
//! | `POST …/faults/expire-token` | close it as if its token expired |
//! | `PUT …/faults/refuse-connect` | refuse CONNECTs with a code ([`control::api::RefuseConnect`]) |
//! | `PUT …/faults/throttle` | 429 for twin requests / refuse CONNECT with 3 ([`control::api::Throttle`]) |
//! | `DELETE …/faults`, `GET /faults`, `DELETE /faults` | clear / list faults |
//! | `GET /policies`, `PUT`, `DELETE /policies/{name}` | shared access policies (`iothubowner`, `device` exist) |
//! | `GET /certificates`, `PUT`, `DELETE /certificates/{name}` | CA certificates for X.509 CA auth |
//! | `POST /certificates/issue` | a client certificate from the emulator CA |
//! | `GET /dps/enrollments`, `PUT`, `GET`, `DELETE /dps/enrollments/{regId}` | individual enrollments |
//! | `GET /dps/enrollmentGroups`, `PUT`, `GET`, `DELETE /dps/enrollmentGroups/{id}` | enrollment groups |
//! | `GET /dps/registrations[/{regId}]` | finished registrations |
//! | `GET /aws/things`, `PUT`, `GET`, `DELETE /aws/things/{t}` | things ([`control::aws_api::Thing`]) |
//! | `GET`, `POST`, `DELETE /aws/things/{t}/shadow[?name=]` | shadow document; update as a cloud app; delete |
//! | `GET /aws/things/{t}/shadows` | shadow names (`null` = classic) |
//! | `GET`, `POST /aws/certificates` | list; issue from the CA or register a PEM ([`control::aws_api::CreateCertificate`]) |
//! | `GET`, `PUT`, `DELETE /aws/certificates/{id}` | show, set status, delete |
//! | `PUT`, `DELETE /aws/certificates/{id}/things/{t}` | attach, detach |
//! | `POST`, `GET /aws/access-keys`, `DELETE /aws/access-keys/{id}` | SigV4 key pairs |
//! | `GET /aws/authorizers`, `PUT`, `DELETE /aws/authorizers/{name}` | custom authorizers |
//! | `GET`, `DELETE /aws/telemetry[?clientId=&thingName=&topic=]` | captured user-topic publishes |
//! | `GET /aws/connections`, `POST /aws/connections/{c}/drop` | live connections; drop one |
//! | `GET /aws/faults`, `PUT`, `DELETE /aws/faults/{c}` | refuse CONNECT / throttle shadow (429), jobs, provisioning ([`control::aws_api::AwsFaults`]) |
//! | `GET`, `POST /aws/jobs` | list; create a job ([`control::aws_api::CreateJob`] → [`control::aws_api::JobInfo`]); targets get `notify`/`notify-next` |
//! | `GET`, `PUT /aws/jobs-settings` | jobs settings ([`control::aws_api::JobsSettings`]: `notify` also on QUEUED → IN_PROGRESS) |
//! | `GET /aws/jobs/{id}`, `POST /aws/jobs/{id}/cancel` | show; cancel ([`control::aws_api::CancelJob`]: QUEUED, IN_PROGRESS too with `force`) |
//! | `GET /aws/things/{t}/jobs` | the thing's executions ([`control::aws_api::JobExecutionInfo`]) |
//! | `GET /aws/things/{t}/jobs/{id}[?executionNumber=]` | one execution (default the latest) |
//! | `POST /aws/things/{t}/jobs/{id}/cancel`, `DELETE /aws/things/{t}/jobs/{id}` | execution → CANCELED (IN_PROGRESS with `force`, else 409); → REMOVED |
//! | `GET /aws/provisioning-templates`, `PUT`, `GET`, `DELETE /aws/provisioning-templates/{name}` | fleet-provisioning templates ([`control::aws_api::ProvisioningTemplate`], checked on `PUT`) |
//! | `GET`, `POST /aws/clock` | the jobs/provisioning service clock; advance it ([`control::aws_api::AdvanceClock`] → [`control::aws_api::ServiceClock`]) |
//!
//! `…` is `/devices/{d}` or `/devices/{d}/modules/{m}`. The CLI mirrors them:
//! `connector-emulator ctl [--url URL] <info | device | module | twin | invoke | c2d |
//! telemetry | connections | fault | enrollment | group | cert | policies | aws> …`
//! (`--help` on each).

mod auth;
mod aws;
mod azure;
mod broker;
mod ca;
mod config;
pub mod control;
mod error;
mod server;
mod util;
mod ws;

pub use aws::transport::{ALPN_MQTT, ALPN_MQTT_CA, AWS_WS_PATH};
pub use config::{
    EmulatorConfig, DEFAULT_AWS_MQTT_PORT, DEFAULT_AWS_PORT, DEFAULT_AWS_REGION, DEFAULT_CONTROL_PORT,
    DEFAULT_ID_SCOPE, DEFAULT_MQTT_PORT, DEFAULT_WS_PORT,
};
pub use control::client::ControlClient;
pub use error::{ControlError, EmulatorError};
pub use server::{Emulator, EmulatorHandle};
pub use ws::{WS_PATH, WS_SUBPROTOCOL};

use std::process::ExitCode;

/// Entry point of the `connector-emulator` binary (`serve` or `ctl`).
pub fn cli_main() -> ExitCode {
    use clap::Parser as _;
    let cli = control::cli::Cli::parse();
    match cli.command {
        control::cli::Command::Serve(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).init();
            match Emulator::start(args.config()) {
                Ok(handle) => {
                    println!("connector-emulator (Azure IoT Hub + DPS)");
                    println!("  MQTT over TLS : {}:{}", args.bind, handle.mqtt_port());
                    if let Some(p) = handle.ws_port() {
                        println!("  MQTT over WSS : wss://{}:{p}{}", args.bind, ws::WS_PATH);
                    }
                    if let Some(p) = handle.plain_mqtt_port() {
                        println!("  MQTT plain    : {}:{p}", args.bind);
                    }
                    println!("  control API   : {}", handle.control_url());
                    println!("  trust CA      : {}", handle.ca_path().display());
                    println!(
                        "  HostName      : {}   DPS ID scope: {}",
                        handle.hub_host_name(),
                        handle.dps_id_scope()
                    );
                    println!(
                        "  try           : connector-emulator ctl --url {} device create dev1",
                        handle.control_url()
                    );
                    handle.wait();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}", error_chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
        control::cli::Command::Ctl(args) => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(control::cli::run_ctl(args)) {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
