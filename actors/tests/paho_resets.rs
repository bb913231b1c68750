//! Connections reset under a stream of QoS 1 publishes over TLS, through a real fault proxy
//! in front of a real mosquitto. Each reset makes paho's write of a PUBLISH fail with a socket
//! error; the bundled paho C library (1.3.16) then freed that message's topic and payload
//! twice (its stored copy and its command's), corrupting the heap — this test aborted the
//! process in most runs before the patch in `third_party/paho-mqtt-sys` (see its PATCHES.md).
//! Every accepted message must also be delivered.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use connector_actors::Connector;
use connector_core::{
    ConnectionEvent, DropPolicy, Inbound, MqttOptions, MqttProvider, PemSource, Publish, QoS, TlsOptions,
};
use futures::StreamExt;
use test_support::{FaultProxy, Mosquitto, MosquittoConfig, TestPki, TlsListener};

#[actix_rt::test]
async fn resets_mid_publish_over_tls_neither_crash_nor_lose() {
    const RESETS: usize = 25;
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
    let proxy = FaultProxy::to_port(broker.tls_port().unwrap());
    let sub = Connector::builder(provider_with(&broker.url(), "resets-sub", |o| o.clean_session(false)))
        .backoff(fast_backoff())
        .start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("resets/#", QoS::AtLeastOnce, 1_000_000).await.unwrap();

    let tls = TlsOptions { ca: Some(PemSource::File(pki.ca_cert.clone())), ..Default::default() };
    let opts = MqttOptions::new(
        format!("mqtts://localhost:{}", proxy.port()),
        test_support::unique_client_id("resets-pub"),
    )
    .tls(tls)
    .keep_alive(Duration::from_secs(30));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let publ = Connector::builder(MqttProvider::new(opts).unwrap())
        .backoff(fast_backoff())
        .inflight_window(100)
        .offline_queue(1_000_000, DropPolicy::Newest)
        .events_to(tx)
        .start();
    publ.wait_connected(WAIT).await.unwrap();
    let mut events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let publisher = publ.publisher();

    // A producer that keeps the window full.
    let producer = {
        let publisher = publisher.clone();
        actix_rt::spawn(async move {
            let mut n = 0usize;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let p = Publish::to_topic("resets/seq", format!("{n:08}-{}", "x".repeat(200)))
                    .qos(QoS::AtLeastOnce);
                if publisher.enqueue(p).await.is_err() {
                    break;
                }
                n += 1;
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
                if publisher.stats().await.map(|s| s.queued_count).unwrap_or(0) > 2_000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            n
        })
    };
    for _ in 0..RESETS {
        // Traffic flows on a fresh connection, then the path resets it mid-write.
        event_matching(&mut events, WAIT, "a connection", |e| matches!(e, ConnectionEvent::Connected { .. }))
            .await;
        let before = publisher.stats().await.unwrap().acked_total;
        let deadline = Instant::now() + WAIT;
        while publisher.stats().await.unwrap().acked_total < before + 200 {
            assert!(Instant::now() < deadline, "no traffic on the new connection");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.reset_connections();
    }
    producer.abort();
    let _ = producer.await;
    let sent = publisher.stats().await.unwrap();
    let accepted = sent.acked_total as usize + sent.incomplete_count;
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < accepted {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(Inbound::Message(m))) = tokio::time::timeout(left, inbox.next()).await else { break };
        seen.insert(m.payload[..8].to_vec());
    }
    println!(
        "{RESETS} resets over TLS: accepted={accepted} delivered_unique={} resent={}",
        seen.len(),
        sent.resent_total
    );
    assert_eq!(seen.len(), accepted, "accepted messages lost");
    publ.stop().await;
    sub.stop().await;
}
