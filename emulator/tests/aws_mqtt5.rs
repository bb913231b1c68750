//! MQTT 5 on the AWS endpoint (paho as the device): CONNACK properties and reason codes,
//! message properties carried to MQTT 5 subscribers and captured with telemetry (MQTT
//! 3.1.1 subscribers get the bare message), topic aliases, services answering v5
//! clients, DISCONNECT on a refused publish.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use mqtt::PropertyCode as P;
use paho_mqtt as mqtt;

async fn v5(
    env: &Env,
    client_id: &str,
    dir: &std::path::Path,
    keep_alive: u64,
) -> (Device, mqtt::ServerResponse) {
    let (_, cert, key) = aws_thing_with_cert(env, client_id, dir).await;
    let c =
        AwsConnect { uri: env.aws_mqtt_uri(), client_id, user: "", cert: Some((&cert, &key)), alpn: None };
    aws_connect_v5(env.emu.ca_path(), c, Duration::from_secs(keep_alive)).await.unwrap()
}

#[tokio::test]
async fn connack_properties_and_refusals() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (dev, rsp) = v5(&env, "k5", dir.path(), 5).await;
    let props = rsp.properties();
    assert_eq!(props.get_int(P::MaximumQos), Some(1));
    assert_eq!(props.get_int(P::RetainAvailable), Some(0));
    assert_eq!(props.get_int(P::TopicAliasMaximum), Some(8));
    assert_eq!(props.get_int(P::ReceiveMaximum), Some(100));
    assert_eq!(props.get_int(P::SharedSubscriptionAvailable), Some(0));
    // Keep-alive 5 s is below AWS's 30 s floor: the server says which one applies.
    assert_eq!(props.get_int(P::ServerKeepAlive), Some(30));
    dev.disconnect().await;
    // An unregistered certificate: CONNACK reason 0x87 Not authorized.
    let issued: connector_emulator::control::api::IssuedCertificate = env
        .ctl
        .request(
            hyper::Method::POST,
            "/certificates/issue",
            Some(&serde_json::json!({"commonName": "ghost"})),
        )
        .await
        .unwrap();
    let gc = write_pem(dir.path(), "ghost.pem", &issued.certificate_pem);
    let gk = write_pem(dir.path(), "ghost.key", &issued.private_key_pem);
    let c = AwsConnect {
        uri: env.aws_mqtt_uri(),
        client_id: "ghost",
        user: "",
        cert: Some((&gc, &gk)),
        alpn: None,
    };
    let err = aws_connect_v5(env.emu.ca_path(), c, Duration::from_secs(30)).await.err().unwrap();
    assert!(matches!(err, mqtt::Error::ReasonCode(mqtt::ReasonCode::NotAuthorized, _)), "{err:?}");
}

#[tokio::test]
async fn message_properties_reach_v5_subscribers_and_telemetry() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (sender, _) = v5(&env, "s5", dir.path(), 30).await;
    let (r5, _) = v5(&env, "r5", dir.path(), 30).await;
    let (_, c3, k3) = aws_thing_with_cert(&env, "r3", dir.path()).await;
    let r3 = env.aws_cert_connect("r3", &c3, &k3).await.unwrap();
    assert_eq!(r3.subscribe("sensors/#", 1).await, 1);
    let granted = r5.client.subscribe("sensors/#", 1).await.unwrap();
    assert_eq!(granted.reason_code(), mqtt::ReasonCode::GrantedQos1);

    let mut props = mqtt::Properties::new();
    props.push_string_pair(P::UserProperty, "unit", "C").unwrap();
    props.push_string_pair(P::UserProperty, "unit", "K").unwrap();
    props.push_string_pair(P::UserProperty, "site", "north").unwrap();
    props.push_string(P::ContentType, "application/json").unwrap();
    props.push_string(P::ResponseTopic, "replies/s5").unwrap();
    props.push_binary(P::CorrelationData, b"req-42".to_vec()).unwrap();
    props.push_int(P::PayloadFormatIndicator, 1).unwrap();
    props.push_int(P::TopicAlias, 1).unwrap();
    let msg = mqtt::MessageBuilder::new()
        .topic("sensors/s5/temp")
        .payload(r#"{"t":21.5}"#)
        .qos(1)
        .properties(props)
        .finalize();
    sender.client.publish(msg).await.unwrap();

    let m = r5.recv("v5 delivery").await;
    assert_eq!((m.topic(), m.payload_str().as_ref()), ("sensors/s5/temp", r#"{"t":21.5}"#));
    let p = m.properties();
    let users: Vec<(String, String)> = p.user_iter().collect();
    assert_eq!(
        users,
        [("unit".into(), "C".into()), ("unit".into(), "K".into()), ("site".into(), "north".into())]
    );
    assert_eq!(p.get_string(P::ContentType).as_deref(), Some("application/json"));
    assert_eq!(p.get_string(P::ResponseTopic).as_deref(), Some("replies/s5"));
    assert_eq!(p.get_binary(P::CorrelationData).as_deref(), Some(&b"req-42"[..]));
    assert_eq!(p.get_int(P::PayloadFormatIndicator), Some(1));
    let m3 = r3.recv("v3 delivery").await;
    assert_eq!((m3.topic(), m3.payload_str().as_ref()), ("sensors/s5/temp", r#"{"t":21.5}"#));
    assert!(m3.properties().user_iter().next().is_none());

    // The alias now stands for the topic: an empty topic with alias 1 lands there.
    let mut alias = mqtt::Properties::new();
    alias.push_int(P::TopicAlias, 1).unwrap();
    let msg = mqtt::MessageBuilder::new().topic("").payload("22.0").qos(1).properties(alias).finalize();
    sender.client.publish(msg).await.unwrap();
    let m = r5.recv("aliased delivery").await;
    assert_eq!((m.topic(), m.payload_str().as_ref()), ("sensors/s5/temp", "22.0"));

    let t = env.ctl.aws_telemetry(Some("s5"), None).await.unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(t[0].user_properties[2], ("site".to_string(), "north".to_string()));
    assert_eq!((t[1].topic.as_str(), t[1].content_type.as_deref()), ("sensors/s5/temp", None));
    sender.disconnect().await;
}

#[tokio::test]
async fn services_answer_v5_clients_and_refusals_use_reason_codes() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let (dev, _) = v5(&env, "j5", dir.path(), 30).await;
    let rsp = dev.client.subscribe("$aws/things/j5/jobs/get/+", 1).await.unwrap();
    assert_eq!(rsp.reason_code(), mqtt::ReasonCode::GrantedQos1);
    dev.publish("$aws/things/j5/jobs/get", r#"{"clientToken":"v5"}"#, 1).await.unwrap();
    let (t, v) = dev.recv_json("jobs answer").await;
    assert_eq!((t.as_str(), v["clientToken"].as_str()), ("$aws/things/j5/jobs/get/accepted", Some("v5")));
    // A filter the endpoint does not serve: SUBACK reason 0x8F.
    let refused = dev.client.subscribe("$aws/events/presence/connected/j5", 1).await;
    match refused {
        Ok(rsp) => assert_eq!(rsp.reason_code(), mqtt::ReasonCode::TopicFilterInvalid),
        Err(e) => {
            assert!(matches!(e, mqtt::Error::ReasonCode(mqtt::ReasonCode::TopicFilterInvalid, _)), "{e:?}")
        }
    }
    // A second connection with the same client id takes over: DISCONNECT 0x8E.
    let (reason_tx, reason_rx) = std::sync::mpsc::channel();
    dev.client.set_disconnected_callback(move |_, _, reason| {
        let _ = reason_tx.send(reason);
    });
    let (cert, key) = (dir.path().join("j5.pem"), dir.path().join("j5.key"));
    let c = AwsConnect {
        uri: env.aws_mqtt_uri(),
        client_id: "j5",
        user: "",
        cert: Some((&cert, &key)),
        alpn: None,
    };
    let (dev, _) = aws_connect_v5(env.emu.ca_path(), c, Duration::from_secs(30)).await.unwrap();
    let reason = tokio::task::spawn_blocking(move || reason_rx.recv_timeout(WAIT)).await.unwrap();
    assert_eq!(reason, Ok(mqtt::ReasonCode::SessionTakenOver));
    // A publish on an unserved reserved topic closes the connection.
    dev.publish("$aws/things/j5/defender/metrics/json", "{}", 0).await.unwrap();
    dev.lost("refused publish").await;
}
