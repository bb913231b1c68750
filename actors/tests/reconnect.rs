//! Reconnects: refused credentials with a growing, jittered backoff; a broker SIGKILLed and
//! restarted mid-stream with 10,000 QoS 1 messages in flight.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use connector_actors::Connector;
use connector_core::{
    BackoffPolicy, ConnectFailure, ConnectionEvent, DropPolicy, Inbound, Jitter, Publish, QoS, SeqRandom,
};
use futures::stream::{FuturesUnordered, StreamExt};
use test_support::{Mosquitto, MosquittoConfig};

#[actix_rt::test]
async fn refused_credentials_report_the_reason_and_back_off_with_jitter() {
    let Some(broker) = Mosquitto::start_with(MosquittoConfig {
        credentials: Some(("device".into(), "right-password".into())),
        ..Default::default()
    }) else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let policy = BackoffPolicy {
        min: Duration::from_millis(40),
        max: Duration::from_millis(300),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    };
    let p = provider_with(&broker.url(), "bad-creds", |o| o.credentials("device", "wrong-password"));
    let conn = Connector::builder(p)
        .backoff(policy)
        .random(Box::new(SeqRandom::new([0.5, 0.75])))
        .events_to(tx)
        .start();
    let mut events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut delays = Vec::new();
    while delays.len() < 5 {
        let e = event_matching(&mut events, WAIT, "a refused attempt", |e| {
            matches!(e, ConnectionEvent::ConnectionFailed { .. })
        })
        .await;
        let ConnectionEvent::ConnectionFailed { reason, retry_in } = e else { unreachable!() };
        match &reason {
            ConnectFailure::Refused { code, .. } => assert!(matches!(code, 4 | 5), "{reason:?}"),
            other => panic!("expected a CONNACK refusal, got {other:?}"),
        }
        assert!(matches!(reason.label(), "bad_credentials" | "not_authorized"));
        delays.push(retry_in);
    }
    // Envelope 40, 80, 160, 300, 300 ms, sampled at 0.5, 0.75, 0.5, 0.75, 0.5.
    let want: Vec<Duration> = [20, 60, 80, 225, 150].iter().map(|ms| Duration::from_millis(*ms)).collect();
    assert_eq!(delays, want);
    println!("refused attempts backed off by {delays:?}");
    assert!(!conn.is_connected());
    conn.stop().await;

    let good = Connector::builder(provider_with(&broker.url(), "good-creds", |o| {
        o.credentials("device", "right-password")
    }))
    .backoff(fast_backoff())
    .start();
    good.wait_connected(WAIT).await.unwrap();
    good.stop().await;
}

#[actix_rt::test]
async fn broker_sigkill_and_restart_mid_stream_loses_no_qos1_message() {
    const N: usize = 10_000;
    let Some(mut broker) = Mosquitto::start_with(MosquittoConfig { persistence: true, ..Default::default() })
    else {
        return;
    };
    let sub = Connector::builder(provider_with(&broker.url(), "fault-sub", |o| o.clean_session(false)))
        .backoff(fast_backoff())
        .start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("fault/#", QoS::AtLeastOnce, N * 3).await.unwrap();

    let publ = Connector::builder(provider_with(&broker.url(), "fault-pub", |o| o.clean_session(false)))
        .backoff(fast_backoff())
        .inflight_window(100)
        .offline_queue(N, DropPolicy::Newest)
        .ack_timeout(Duration::from_secs(120))
        .start();
    publ.wait_connected(WAIT).await.unwrap();

    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = publ.publisher();
    let counter = acked.clone();
    let sender = actix_rt::spawn(async move {
        let mut pending: FuturesUnordered<_> = (0..N)
            .map(|i| publisher.publish(Publish::to_topic("fault/seq", i.to_string()).qos(QoS::AtLeastOnce)))
            .collect();
        let mut errors = Vec::new();
        while let Some(r) = pending.next().await {
            match r {
                Ok(_) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    });

    test_support::wait_until_async(Duration::from_secs(60), "2,000 acknowledgements before the kill", || {
        acked.load(Ordering::Relaxed) >= 2_000
    })
    .await;
    broker.kill();
    let at_kill = acked.load(Ordering::Relaxed);
    broker.restart();

    let errors = sender.await.unwrap();
    assert!(errors.is_empty(), "publish errors: {errors:?}");

    let mut seen: HashMap<usize, u32> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < N && tokio::time::Instant::now() < deadline {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(Inbound::Message(m))) = tokio::time::timeout(left, inbox.next()).await else { break };
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        *seen.entry(i).or_default() += 1;
    }
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    let lost = N - seen.len();
    let stats = publ.publisher().stats().await.unwrap();
    println!(
        "broker restart: sent={N} acked={} (at kill {at_kill}) resent={} received_unique={} duplicates={duplicates} lost={lost}",
        stats.acked_total,
        stats.resent_total,
        seen.len()
    );
    assert_eq!(lost, 0, "messages lost across the broker restart");
    assert_eq!(stats.acked_total as usize, N);
    publ.stop().await;
    sub.stop().await;
}
