//! `/metrics`, `/healthz` and `/readyz` scraped over HTTP and parsed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use connector_actors::Connector;
use connector_core::{Publish, QoS};
use prometheus::Registry;
use test_support::Mosquitto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn http_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

#[actix_rt::test]
async fn metrics_are_scraped_and_parsed_with_the_expected_counters() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let registry = Registry::new();
    let conn = Connector::builder(provider(&broker.url(), "metrics"))
        .backoff(fast_backoff())
        .registry(&registry)
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let server = conn.serve_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());

    for i in 0..3 {
        conn.publisher()
            .publish(Publish::to_topic("m/x", format!("{i}")).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
    }
    conn.publisher().publish(Publish::to_topic("m/x", &b"q0"[..]).qos(QoS::AtMostOnce)).await.unwrap();

    let (status, text) = get(addr, &http_get("/metrics")).await;
    assert_eq!(status, 200);
    let l = |extra: &'static [(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("provider", "mqtt")];
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(sample(&text, "connector_messages_published_total", &l(&[("outcome", "acked")])), Some(3.0));
    assert_eq!(sample(&text, "connector_messages_published_total", &l(&[("outcome", "sent")])), Some(1.0));
    assert_eq!(sample(&text, "connector_publish_ack_latency_seconds_count", &l(&[])), Some(3.0));
    assert_eq!(sample(&text, "connector_connected", &l(&[])), Some(1.0));
    assert_eq!(sample(&text, "connector_connection_state", &l(&[])), Some(2.0));
    assert_eq!(sample(&text, "connector_connect_attempts_total", &l(&[])), Some(1.0));
    assert_eq!(sample(&text, "connector_offline_queue_depth", &l(&[])), Some(0.0));
    assert_eq!(sample(&text, "connector_inflight_messages", &l(&[])), Some(0.0));

    assert_eq!(get(addr, &http_get("/healthz")).await.0, 200);
    assert_eq!(get(addr, &http_get("/readyz")).await.0, 200);
    assert_eq!(get(addr, &http_get("/nope")).await.0, 404);
    assert_eq!(get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.0, 405);
    assert_eq!(get(addr, "garbage").await.0, 400);

    broker.kill();
    test_support::wait_until_async(WAIT, "the connector to notice the broker is gone", || {
        !conn.is_connected()
    })
    .await;
    assert_eq!(get(addr, &http_get("/readyz")).await.0, 503);
    assert_eq!(get(addr, &http_get("/healthz")).await.0, 200);
    let (_, text) = get(addr, &http_get("/metrics")).await;
    assert_eq!(sample(&text, "connector_connected", &l(&[])), Some(0.0));
    assert_eq!(sample(&text, "connector_disconnects_total", &l(&[("reason", "connection_lost")])), Some(1.0));
    conn.stop().await;
}

#[test]
fn the_default_metrics_address_is_loopback() {
    let addr: SocketAddr = connector_actors::DEFAULT_METRICS_ADDR.parse().unwrap();
    assert!(addr.ip().is_loopback());
}
