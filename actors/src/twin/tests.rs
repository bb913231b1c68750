use super::*;

fn resp(status: u16, body: &'static [u8]) -> StateResponse {
    StateResponse { request_id: "1".into(), status, version: None, body: Bytes::from_static(body) }
}

#[test]
fn malformed_documents_are_typed_errors() {
    let table: [(&[u8], bool); 7] = [
        (br#"{"desired":{"$version":3},"reported":{"$version":1}}"#, true),
        (b"", false),
        (b"not json", false),
        (b"[1,2]", false),
        (b"\"text\"", false),
        (b"\xff\xfe{", false),
        (br#"{"desired":"#, false),
    ];
    for (body, ok) in table {
        let r = StateResponse { request_id: "1".into(), status: 200, version: None, body: Bytes::from(body) };
        match decode_document(Some(&Codec), &r) {
            Ok(doc) => {
                assert!(ok, "{body:?} decoded");
                assert_eq!((doc.desired_version(), doc.reported_version()), (Some(3), Some(1)));
            }
            Err(TwinError::InvalidJson(_)) => assert!(!ok, "{body:?} refused"),
            Err(e) => panic!("{body:?}: {e:?}"),
        }
    }
    let _ = resp(200, b"{}");
}

#[test]
fn the_document_is_read_by_the_providers_codec_and_only_by_it() {
    // The tree peeks at no shape: what the codec reads is what the document says.
    let doc = decode_document(
        Some(&Codec),
        &resp(200, br#"{"desired":{"a":1,"$version":7},"reported":{"$version":2}}"#),
    )
    .unwrap();
    assert_eq!((doc.desired_version(), doc.reported_version()), (Some(7), Some(2)));
    assert_eq!(doc.desired().and_then(|d| d.get("a")), Some(&Value::from(1)));
    assert_eq!(doc.sections().catch_up, doc.sections().desired);
    assert!(matches!(decode_document(None, &resp(200, b"{}")), Err(TwinError::Unsupported)));
}

#[test]
fn patches_must_be_json() {
    assert!(check_patch(br#"{"a":1}"#).is_ok());
    for bad in [&b""[..], b"{", b"\xff", b"nope"] {
        assert!(matches!(check_patch(bad), Err(TwinError::InvalidJson(_))), "{bad:?}");
    }
}

/// A plain broker provider with a toy state codec.
struct StateProvider(connector_core::MqttProvider);

struct Codec;

impl connector_core::provider::StateCodec for Codec {
    fn read_document(&self, document: &Value, version: Option<u64>) -> connector_core::StateSections {
        let desired = document.get("desired").cloned();
        let reported = document.get("reported").cloned();
        let v = |s: &Option<Value>| s.as_ref().and_then(|s| s.get("$version")).and_then(Value::as_u64);
        connector_core::StateSections {
            desired_version: v(&desired).or(version),
            reported_version: v(&reported),
            catch_up: desired.clone(),
            desired,
            reported,
        }
    }
    fn get(&self, rid: &str) -> Result<connector_core::OutboundPacket, ProviderError> {
        self.report(rid, b"{}")
    }
    fn report(&self, rid: &str, patch: &[u8]) -> Result<connector_core::OutboundPacket, ProviderError> {
        Ok(connector_core::OutboundPacket {
            topic: format!("state/{rid}"),
            payload: Bytes::copy_from_slice(patch),
            qos: connector_core::QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        })
    }
    fn subscriptions(&self) -> Vec<connector_core::SubscriptionSpec> {
        Vec::new()
    }
}

impl Provider for StateProvider {
    fn name(&self) -> &'static str {
        "test"
    }
    fn connect_params(
        &self,
        now: std::time::SystemTime,
    ) -> Result<connector_core::ConnectParams, ProviderError> {
        self.0.connect_params(now)
    }
    fn telemetry_topic(&self, p: &connector_core::Publish) -> Result<String, ProviderError> {
        self.0.telemetry_topic(p)
    }
    fn state(&self) -> Option<&dyn connector_core::provider::StateCodec> {
        Some(&Codec)
    }
}

/// A TwinActor with real (unconnected) siblings.
fn actor() -> (Addr<TwinActor>, Arc<TwinShared>) {
    use crate::publisher::{Publisher, PublisherArgs, PublisherOptions};
    use crate::subscriber::SubscriberArgs;
    let provider: Arc<dyn Provider> = Arc::new(StateProvider(
        connector_core::MqttProvider::new(connector_core::MqttOptions::new("tcp://127.0.0.1:1", "t"))
            .unwrap(),
    ));
    let metrics = ConnectionMetrics::detached("test", "t");
    let publisher = Publisher::spawn(
        PublisherArgs {
            provider: provider.clone(),
            options: PublisherOptions::default(),
            metrics: metrics.clone(),
            supervisor: None,
        },
        None,
    );
    let subscriber = Subscriber::new(
        SubscriberArgs {
            provider: provider.clone(),
            timeout: Duration::from_secs(1),
            table: Default::default(),
            metrics: metrics.clone(),
        },
        None,
    )
    .start();
    let shared = Arc::new(TwinShared::default());
    let settings = TwinSettings {
        provider,
        timeout: Duration::from_millis(200),
        retry: TwinRetry::default(),
        shared: shared.clone(),
        metrics,
    };
    let args = TwinArgs {
        settings,
        publisher: Arc::new(parking_lot::RwLock::new(publisher)),
        subscriber: Arc::new(parking_lot::RwLock::new(subscriber)),
    };
    (TwinActor::new(args, None).start(), shared)
}

fn patch(version: Option<u64>, body: &'static [u8]) -> Received {
    Received(Inbound::DesiredPatch(DesiredPatch { shadow: None, version, body: Bytes::from_static(body) }))
}

#[actix_rt::test]
async fn duplicate_stale_and_malformed_desired_patches_are_dropped() {
    let (twin, shared) = actor();
    let (tx, mut rx) = mpsc::channel(16);
    shared.watch(None, DesiredSink::Channel(tx));
    let table: [(Option<u64>, &'static [u8], bool); 8] = [
        (Some(5), br#"{"a":1}"#, true),
        (Some(5), br#"{"a":1}"#, false),
        (Some(4), br#"{"a":0}"#, false),
        (Some(6), br#"{"a":2}"#, true),
        (None, br#"{"b":1}"#, true),
        (Some(7), b"not json", false),
        (Some(7), b"[1]", false),
        (Some(7), br#"{"a":3}"#, true),
    ];
    for (version, body, delivered) in table {
        twin.send(patch(version, body)).await.unwrap();
        match rx.try_recv() {
            Ok(u) => {
                assert!(delivered, "{version:?} {body:?} delivered");
                assert_eq!((u.version, u.catch_up), (version, false));
            }
            Err(_) => assert!(!delivered, "{version:?} {body:?} not delivered"),
        }
    }
    assert_eq!(shared.inner.lock().last(&None), Some(7));
}

#[actix_rt::test]
async fn offline_requests_time_out_and_unknown_answers_are_ignored() {
    let (twin, _) = actor();
    let got = twin.send(GetTwin).await.unwrap();
    assert_eq!(got, Err(TwinError::Timeout { after: Duration::from_millis(200) }));
    // An answer nobody waits for (late, or another client's) changes nothing.
    let late = StateResponse { request_id: "1".into(), status: 200, version: None, body: Bytes::new() };
    twin.send(Received(Inbound::StateResponse(late))).await.unwrap();
    let got = twin.send(ReportState(Bytes::from_static(b"{"))).await.unwrap();
    assert!(matches!(got, Err(TwinError::InvalidJson(_))), "{got:?}");
}

#[test]
fn shared_watchers_are_kept_by_id() {
    let s = TwinShared::default();
    let (tx, _rx) = mpsc::channel(1);
    let a = s.watch(None, DesiredSink::Channel(tx.clone()));
    let b = s.watch(Some("n".into()), DesiredSink::Channel(tx));
    assert_ne!(a, b);
    assert!(s.unwatch(a));
    assert!(!s.unwatch(a));
    assert_eq!(s.inner.lock().watchers.len(), 1);
}
