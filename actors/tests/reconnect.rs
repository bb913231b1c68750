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

#[actix_rt::test]
async fn resubscribes_after_a_restart_that_lost_the_session() {
    // No broker persistence and a clean session: after the restart the broker knows
    // nothing of the subscription, and the Subscriber must make it again.
    let Some(mut broker) = Mosquitto::start() else { return };
    let sub = Connector::builder(provider(&broker.url(), "resub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("resub/#", QoS::AtLeastOnce, 16).await.unwrap();
    let publ = Connector::builder(provider(&broker.url(), "resub-pub")).backoff(fast_backoff()).start();
    publ.wait_connected(WAIT).await.unwrap();
    publ.publisher().publish(Publish::to_topic("resub/a", &b"before"[..])).await.unwrap();
    next_within(&mut inbox, WAIT, "the message before the restart").await;

    let mut events = sub.events(16);
    broker.kill();
    broker.restart();
    event_matching(&mut events, WAIT, "the subscriber reconnecting without a session", |e| {
        *e == ConnectionEvent::Connected { session_present: false }
    })
    .await;
    publ.wait_connected(WAIT).await.unwrap();
    // The re-subscription races the first publish: publish until one arrives.
    let mut got = None;
    for i in 0..50 {
        publ.publisher().publish(Publish::to_topic("resub/b", format!("after-{i}"))).await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), inbox.next()).await {
            got = Some(m);
            break;
        }
    }
    let got = got.expect("messages arrive again after the re-subscription");
    assert_eq!(got.topic(), "resub/b");
    publ.stop().await;
    sub.stop().await;
}

/// A provider whose credentials last two seconds: the connection renews them by
/// reconnecting, as it will for SAS tokens.
struct ShortLived(connector_core::MqttProvider);

impl connector_core::Provider for ShortLived {
    fn name(&self) -> &'static str {
        "short-lived"
    }
    fn connect_params(
        &self,
        now: std::time::SystemTime,
    ) -> Result<connector_core::ConnectParams, connector_core::ProviderError> {
        let mut p = self.0.connect_params(now)?;
        p.credentials_expire = Some(now + Duration::from_secs(2));
        Ok(p)
    }
    fn telemetry_topic(&self, p: &Publish) -> Result<String, connector_core::ProviderError> {
        self.0.telemetry_topic(p)
    }
}

#[actix_rt::test]
async fn credential_renewal_reconnects_without_losing_accepted_messages() {
    const N: usize = 3_000;
    let Some(broker) = Mosquitto::start() else { return };
    let sub = Connector::builder(provider(&broker.url(), "renew-sub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("renew/#", QoS::AtLeastOnce, N * 2).await.unwrap();

    let publ = Connector::builder(ShortLived(provider(&broker.url(), "renew-pub")))
        .backoff(fast_backoff())
        .offline_queue(N, DropPolicy::Newest)
        .start();
    publ.wait_connected(WAIT).await.unwrap();
    let mut events = publ.events(256);
    let publisher = publ.publisher();
    // Spread the messages over more than two credential lifetimes.
    let sender = actix_rt::spawn(async move {
        let mut pending = FuturesUnordered::new();
        for i in 0..N {
            pending.push(publisher.publish(Publish::to_topic("renew/seq", i.to_string())));
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut failed = 0;
        while let Some(r) = pending.next().await {
            failed += usize::from(r.is_err());
        }
        failed
    });
    let mut renewals = 0;
    while renewals < 2 {
        event_matching(&mut events, WAIT, "a credential renewal", |e| {
            *e == ConnectionEvent::Disconnected {
                reason: connector_core::DisconnectReason::CredentialRenewal,
            }
        })
        .await;
        event_matching(&mut events, WAIT, "the reconnect after renewal", |e| {
            matches!(e, ConnectionEvent::Connected { .. })
        })
        .await;
        renewals += 1;
    }
    assert_eq!(sender.await.unwrap(), 0, "no publish failed across renewals");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < N {
        let Ok(Some(Inbound::Message(m))) = tokio::time::timeout(WAIT, inbox.next()).await else { break };
        seen.insert(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    println!(
        "credential renewal: renewals={} sent={N} received_unique={} lost={}",
        publ.metrics().credential_renewals.get(),
        seen.len(),
        N - seen.len()
    );
    assert_eq!(seen.len(), N);
    publ.stop().await;
    sub.stop().await;
}
