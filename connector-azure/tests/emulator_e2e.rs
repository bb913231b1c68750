//! The Azure provider plugged into the real actor tree, against the emulator over TLS with
//! the emulator's own CA: telemetry with properties, C2D as a typed message, and SAS
//! renewal under a 5-second TTL with nothing lost.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use connector_actors::messages::{RouteKey, Sink, Subscribe};
use connector_actors::Connector;
use connector_azure::{AzureOptions, AzureProvider, ConnectionString};
use connector_core::{ConnectionEvent, DisconnectReason, DropPolicy, Inbound, PemSource, Publish, QoS};
use connector_emulator::control::api::{Authentication, C2dRequest};
use connector_emulator::EmulatorHandle;
use futures::StreamExt;

use common::{fast_backoff, start, WAIT};

/// Creates a device on the emulator and a provider for it that trusts the emulator's CA,
/// with SAS tokens of `ttl`.
async fn device(emu: &EmulatorHandle, id: &str, ttl: Duration) -> AzureProvider {
    let cs: ConnectionString = common::sas_device(emu, id).await.parse().unwrap();
    let mut opts = common::hub_options(emu);
    opts.sas_ttl = ttl;
    opts.keep_alive = Duration::from_secs(30);
    AzureProvider::new(cs, opts).unwrap()
}

#[actix_rt::test]
async fn telemetry_with_properties_reaches_the_emulator() {
    let emu = start();
    let conn = Connector::builder(device(&emu, "telemetry-dev", Duration::from_secs(3600)).await)
        .backoff(fast_backoff())
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    conn.publisher()
        .publish(
            Publish::telemetry(r#"{"t":21.5}"#)
                .property("unit", "C")
                .property("room", "kitchen 1")
                .content_type("application/json")
                .content_encoding("utf-8")
                .message_id("m-1"),
        )
        .await
        .unwrap();
    let got = emu.control().telemetry("telemetry-dev", None).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.payload.as_deref(), Some(r#"{"t":21.5}"#));
    assert_eq!(m.properties.get("unit"), Some(&Some("C".to_string())));
    assert_eq!(m.properties.get("room"), Some(&Some("kitchen 1".to_string())));
    assert_eq!(m.system_properties.get("$.ct"), Some(&Some("application/json".to_string())));
    assert_eq!(m.system_properties.get("$.mid"), Some(&Some("m-1".to_string())));
    // Over the hub's limit: refused before anything is sent.
    let big = conn.publisher().publish(Publish::telemetry(vec![b'x'; 300 * 1024])).await;
    assert!(matches!(
        big,
        Err(connector_actors::PublishError::Invalid(connector_core::ProviderError::PayloadTooLarge { .. }))
    ));
    assert_eq!(emu.control().telemetry("telemetry-dev", None).await.unwrap().len(), 1);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn c2d_messages_arrive_as_typed_messages_with_their_properties() {
    let emu = start();
    let conn = Connector::builder(device(&emu, "c2d-dev", Duration::from_secs(3600)).await)
        .backoff(fast_backoff())
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    conn.subscriber()
        .subscribe(Subscribe {
            key: RouteKey::Kind(connector_core::InboundKind::C2d),
            sink: Sink::Channel(tx),
        })
        .await
        .unwrap();
    // The provider's own subscriptions are made when the link comes up; wait for the hub to
    // see the device subscribed before sending.
    let mut properties = BTreeMap::new();
    properties.insert("colour".to_string(), Some("dark blue".to_string()));
    let req = C2dRequest {
        payload: Some("reboot".into()),
        properties,
        message_id: Some("c2d-1".into()),
        ..Default::default()
    };
    emu.control().send_c2d("c2d-dev", &req).await.unwrap();
    let got = tokio::time::timeout(WAIT, rx.recv()).await.expect("the C2D message arrives").unwrap();
    let Inbound::C2d(m) = got else { panic!("a typed C2D message, got {got:?}") };
    assert_eq!(&m.payload[..], b"reboot");
    assert_eq!(m.property("colour"), Some("dark blue"));
    assert_eq!(m.system_property("$.mid"), Some("c2d-1"));
    conn.stop().await;
    emu.shutdown();
}

/// The emulator closes a connection when its token expires; the connection renews the SAS
/// token before that, through the reconnect path, and nothing accepted is lost.
#[actix_rt::test]
async fn five_second_sas_tokens_are_renewed_without_losing_telemetry() {
    const N: usize = 600;
    let emu = start();
    let conn = Connector::builder(device(&emu, "renew-dev", Duration::from_secs(5)).await)
        .backoff(fast_backoff())
        .offline_queue(N, DropPolicy::Newest)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let mut events = conn.events(256);
    let publisher = conn.publisher();
    // 600 messages spread over ≈ 24 s: five token lifetimes.
    let sender = actix_rt::spawn(async move {
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..N {
            pending.push(publisher.publish(Publish::telemetry(i.to_string()).qos(QoS::AtLeastOnce)));
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        }
        let mut failed = Vec::new();
        while let Some(r) = pending.next().await {
            if let Err(e) = r {
                failed.push(e);
            }
        }
        failed
    });
    let mut renewals = 0;
    while renewals < 5 {
        let e = tokio::time::timeout(Duration::from_secs(15), events.next())
            .await
            .expect("lifecycle events")
            .unwrap();
        if e == (ConnectionEvent::Disconnected { reason: DisconnectReason::CredentialRenewal }) {
            renewals += 1;
        }
        assert!(
            !matches!(e, ConnectionEvent::Disconnected { reason: DisconnectReason::ConnectionLost }),
            "the emulator closed an expired connection: renewal came too late"
        );
    }
    let failed = sender.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let got = emu.control().telemetry("renew-dev", None).await.unwrap();
    let unique: HashSet<String> = got.iter().filter_map(|m| m.payload.clone()).collect();
    println!(
        "azure SAS renewal: ttl=5s renewals={} sent={N} received={} unique={} lost={}",
        conn.metrics().credential_renewals.get(),
        got.len(),
        unique.len(),
        N - unique.len()
    );
    assert_eq!(unique.len(), N);
    conn.stop().await;
    emu.shutdown();
}

/// A module identity connects with its own key, and its telemetry carries the module id
/// and the output name (`$.on`) as IoT Edge routes expect.
#[actix_rt::test]
async fn module_identity_sends_to_a_named_output() {
    let emu = start();
    emu.control().create_device("edge-dev").await.unwrap();
    let info = emu
        .control()
        .put_identity("edge-dev", Some("filter"), &connector_emulator::control::api::IdentitySpec::default())
        .await
        .unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("a SAS module") };
    let cs: ConnectionString = format!(
        "HostName={};DeviceId=edge-dev;ModuleId=filter;SharedAccessKey={}",
        emu.hub_host_name(),
        symmetric_key.primary_key
    )
    .parse()
    .unwrap();
    let mut opts = AzureOptions::default().port(emu.mqtt_port());
    opts.trust_roots = Some(PemSource::File(emu.ca_path().to_owned()));
    let provider = AzureProvider::new(cs, opts).unwrap();
    assert_eq!(provider.client_id(), "edge-dev/filter");
    let conn = Connector::builder(provider).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    conn.publisher()
        .publish(
            Publish::telemetry(r#"{"filtered":true}"#).property("$.on", "alerts").property("level", "high"),
        )
        .await
        .unwrap();
    let got = emu.control().telemetry("edge-dev", Some("filter")).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].module_id.as_deref(), Some("filter"));
    assert_eq!(got[0].system_properties.get("$.on"), Some(&Some("alerts".to_string())));
    assert_eq!(got[0].properties.get("level"), Some(&Some("high".to_string())));
    // Nothing was recorded as the parent device's own telemetry.
    assert!(emu.control().telemetry("edge-dev", None).await.unwrap().iter().all(|m| m.module_id.is_some()));
    conn.stop().await;
    emu.shutdown();
}

/// Two devices on one emulator: a C2D message for one never reaches the other.
#[actix_rt::test]
async fn two_devices_do_not_see_each_others_c2d() {
    let emu = start();
    let mut streams = Vec::new();
    let mut conns = Vec::new();
    for id in ["iso-a", "iso-b"] {
        let conn = Connector::builder(device(&emu, id, Duration::from_secs(3600)).await)
            .backoff(fast_backoff())
            .start();
        conn.wait_connected(WAIT).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        conn.subscriber()
            .subscribe(Subscribe {
                key: RouteKey::Kind(connector_core::InboundKind::C2d),
                sink: Sink::Channel(tx),
            })
            .await
            .unwrap();
        streams.push(rx);
        conns.push(conn);
    }
    let req =
        C2dRequest { payload: Some("for a".into()), message_id: Some("only-a".into()), ..Default::default() };
    emu.control().send_c2d("iso-a", &req).await.unwrap();
    let got = tokio::time::timeout(WAIT, streams[0].recv()).await.expect("a gets its message").unwrap();
    let Inbound::C2d(m) = got else { panic!("C2D, got {got:?}") };
    assert_eq!(m.system_property("$.mid"), Some("only-a"));
    // Then b gets one of its own, and it is the first thing b ever received.
    let req =
        C2dRequest { payload: Some("for b".into()), message_id: Some("only-b".into()), ..Default::default() };
    emu.control().send_c2d("iso-b", &req).await.unwrap();
    let got = tokio::time::timeout(WAIT, streams[1].recv()).await.expect("b gets its message").unwrap();
    let Inbound::C2d(m) = got else { panic!("C2D, got {got:?}") };
    assert_eq!(m.system_property("$.mid"), Some("only-b"), "b saw another device's message first");
    assert!(streams[0].try_recv().is_err() && streams[1].try_recv().is_err());
    for c in conns {
        c.stop().await;
    }
    emu.shutdown();
}

/// Plug and Play: the model id travels in the username, the hub records it for the device,
/// and component telemetry is stamped with the model and its component.
#[actix_rt::test]
async fn plug_and_play_model_id_and_component_telemetry() {
    const MODEL: &str = "dtmi:com:example:TemperatureController;2";
    let emu = start();
    let mut provider = device(&emu, "pnp-dev", Duration::from_secs(3600)).await;
    provider =
        AzureProvider::new(provider.connection_string().clone(), provider.options().clone().model_id(MODEL))
            .unwrap();
    assert!(provider
        .username()
        .ends_with(&format!("&model-id={}", "dtmi%3Acom%3Aexample%3ATemperatureController%3B2")));
    let conn = Connector::builder(provider).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    assert_eq!(emu.control().identity("pnp-dev", None).await.unwrap().model_id.as_deref(), Some(MODEL));
    let publish = connector_azure::pnp::component_telemetry(
        Publish::telemetry(r#"{"temperature":21.5}"#),
        "thermostat1",
    )
    .content_type("application/json")
    .content_encoding("utf-8");
    conn.publisher().publish(publish).await.unwrap();
    let got = emu.control().telemetry("pnp-dev", None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].system_properties.get("$.sub"), Some(&Some("thermostat1".to_string())));
    assert_eq!(got[0].annotations.get("dt-dataschema").map(String::as_str), Some(MODEL));
    // An invalid model id is refused when the provider is built, before any connection.
    let bad = AzureProvider::new(
        "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
            .parse()
            .unwrap(),
        AzureOptions::default().model_id("not a dtmi"),
    );
    assert!(bad.is_err());
    conn.stop().await;
    emu.shutdown();
}

/// Plug and Play writable properties: a desired change on a component is acknowledged
/// through the TwinActor with `{"value","ac","av"}` under the component marker, as the
/// service expects to see it.
#[actix_rt::test]
async fn plug_and_play_writable_property_is_acknowledged_through_the_twin() {
    use connector_azure::pnp::{ack_document, WritableAck};
    let emu = start();
    let conn = Connector::builder(device(&emu, "pnp-ack", Duration::from_secs(3600)).await)
        .backoff(fast_backoff())
        .start();
    let twin = conn.twin().expect("the Azure provider has a twin");
    let (_, mut desired) = twin.desired(8);
    conn.wait_connected(WAIT).await.unwrap();
    // The first delivery is the catch-up of the initial document.
    let initial = tokio::time::timeout(WAIT, desired.next()).await.expect("catch-up").unwrap();
    assert!(initial.catch_up);
    emu.control()
        .patch_desired(
            "pnp-ack",
            None,
            serde_json::json!({"thermostat1": {"__t": "c", "targetTemperature": 23.0}}),
        )
        .await
        .unwrap();
    let change = tokio::time::timeout(WAIT, desired.next()).await.expect("desired patch").unwrap();
    let target = change.body.pointer("/thermostat1/targetTemperature").and_then(|v| v.as_f64()).unwrap();
    let av = change.version.expect("a versioned patch");
    let ack =
        ack_document(Some("thermostat1"), "targetTemperature", &WritableAck::accepted(target.into(), av));
    twin.report(&ack).await.unwrap();
    let service = emu.control().twin("pnp-ack", None).await.unwrap();
    let reported = service.pointer("/properties/reported/thermostat1").cloned().unwrap();
    assert_eq!(reported["__t"], "c");
    assert_eq!(reported["targetTemperature"], serde_json::json!({"value": 23.0, "ac": 200, "av": av}));
    conn.stop().await;
    emu.shutdown();
}

/// A connection string carrying a fixed SharedAccessSignature cannot be renewed: when it
/// expires the emulator closes the connection, every later attempt fails with a typed
/// credentials failure naming the expiry (nothing is sent with a dead token), and a QoS 1
/// publish accepted meanwhile stays queued for when credentials come back (its caller's
/// bounded wait ends in a typed error, never silence).
#[actix_rt::test]
async fn an_expired_fixed_signature_fails_typed_and_loses_nothing_silently() {
    use connector_azure::{SasKey, SasToken};
    use connector_core::ConnectFailure;
    let emu = start();
    let info = emu.control().create_device("fixed-sas").await.unwrap();
    let Authentication::Sas { symmetric_key } = info.authentication else { panic!("a SAS device") };
    let key = SasKey::from_base64(&symmetric_key.primary_key).unwrap();
    let resource = format!("{}/devices/fixed-sas", emu.hub_host_name());
    let token = SasToken::generate_with_ttl(
        &key,
        &resource,
        std::time::SystemTime::now(),
        Duration::from_secs(3),
        None,
    )
    .unwrap();
    let cs: ConnectionString = format!(
        "HostName={};DeviceId=fixed-sas;SharedAccessSignature={}",
        emu.hub_host_name(),
        token.expose()
    )
    .parse()
    .unwrap();
    let conn = Connector::builder(AzureProvider::new(cs, common::hub_options(&emu)).unwrap())
        .backoff(fast_backoff())
        .ack_timeout(Duration::from_secs(3))
        .start();
    let mut events = conn.events(64);
    conn.wait_connected(WAIT).await.unwrap();
    conn.publisher().publish(Publish::telemetry("before expiry")).await.unwrap();
    // The emulator closes the connection at expiry; the next attempt cannot get a token.
    let failure = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(e) = events.next().await {
            match e {
                // An attempt made in the last moment of the token's life reaches the hub,
                // which refuses the token as it expires: not yet the failure looked for.
                ConnectionEvent::ConnectionFailed {
                    reason: ConnectFailure::Refused { code: 5, .. }, ..
                } => {}
                ConnectionEvent::ConnectionFailed { reason, .. } => return reason,
                _ => {}
            }
        }
        panic!("events ended")
    })
    .await
    .expect("a failed attempt after expiry");
    assert!(matches!(failure, ConnectFailure::Credentials { .. }), "{failure:?}");
    assert!(failure.to_string().contains("expired"), "{failure}");
    assert!(!failure.to_string().contains(token.expose()), "the token leaked into {failure}");
    let late =
        conn.publisher().publish(Publish::telemetry("after expiry").timeout(Duration::from_secs(2))).await;
    let Err(connector_actors::PublishError::Timeout { id, .. }) = late else {
        panic!("the caller's wait ends in a typed error: {late:?}")
    };
    // Still accepted, for when credentials come back: its caller can still withdraw it.
    let withdrawn = conn.publisher().cancel(id).await;
    assert!(
        matches!(
            withdrawn,
            Ok(connector_actors::messages::Cancelled::Withdrawn
                | connector_actors::messages::Cancelled::Abandoned)
        ),
        "the message stays accepted: {withdrawn:?}"
    );
    let got = emu.control().telemetry("fixed-sas", None).await.unwrap();
    assert_eq!(got.iter().filter_map(|m| m.payload.as_deref()).collect::<Vec<_>>(), ["before expiry"]);
    println!("fixed SAS: failure after expiry = {failure}; late publish = {late:?}");
    conn.stop().await;
    emu.shutdown();
}
