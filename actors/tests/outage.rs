//! Outages longer than every timeout, through a real TCP fault proxy in front of a real
//! mosquitto: a blackhole (the path silently stops forwarding) ending in a reset or healing
//! as it was, and a refused port, each far longer than the Publisher's acknowledgement
//! timeout, while a producer keeps handing messages over. Nothing accepted may be lost;
//! duplicates are counted, not refused. Each run prints sent / acknowledged / delivered /
//! lost / duplicates, when the link was declared dead and how long after the path healed the
//! first message arrived.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use connector_actors::{ConnectorBuilder, StallPolicy};
use connector_core::{ConnectionEvent, DisconnectReason, DropPolicy, Inbound, Publish, QoS};
use futures::StreamExt;
use test_support::{Fault, FaultProxy, Mosquitto};

/// Messages per second the producer hands over.
const RATE: u64 = 50;

struct Outcome {
    sent: usize,
    unique: usize,
    lost: usize,
    /// Disconnect reasons after the fault started, with how long after.
    disconnects: Vec<(Duration, DisconnectReason)>,
}

struct Run {
    name: &'static str,
    fault: Fault,
    outage: Duration,
    /// The path comes back refusing what it held (a NAT that forgot the mapping).
    reset_on_heal: bool,
    /// The publisher asks the broker to keep its session.
    persistent: bool,
    tune: fn(ConnectorBuilder) -> ConnectorBuilder,
}

/// An acknowledgement timeout far shorter than the outages: it must never drop a message.
fn short_ack_timeout(b: ConnectorBuilder) -> ConnectorBuilder {
    b.ack_timeout(Duration::from_secs(2))
}

/// Runs one outage: 1 s of traffic, the fault for `outage`, then the path heals and the
/// producer goes on for 1 s; then waits for the Publisher to have nothing left.
async fn outage(run: Run) -> Option<Outcome> {
    let name = run.name;
    let broker = Mosquitto::start()?;
    let proxy = FaultProxy::to_port(broker.port());
    let sub =
        connector_actors::Connector::builder(provider_with(&broker.url(), &format!("{name}-sub"), |o| {
            o.clean_session(false)
        }))
        .backoff(fast_backoff())
        .start();
    sub.wait_connected(WAIT).await.unwrap();
    let topic = format!("outage/{name}");
    let (_, mut inbox) = sub.subscriber().stream(topic.clone(), QoS::AtLeastOnce, 100_000).await.unwrap();
    let arrivals: Arc<Mutex<Vec<(Instant, usize)>>> = Arc::default();
    let collector = {
        let arrivals = arrivals.clone();
        actix_rt::spawn(async move {
            while let Some(Inbound::Message(m)) = inbox.next().await {
                let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
                arrivals.lock().unwrap().push((Instant::now(), i));
            }
        })
    };

    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(1024);
    let builder =
        connector_actors::Connector::builder(provider_with(&proxy.url(), &format!("{name}-pub"), |o| {
            let mut o = o.keep_alive(Duration::from_secs(60)).clean_session(!run.persistent);
            o.connect_timeout = Duration::from_secs(2);
            o
        }))
        .backoff(fast_backoff())
        .inflight_window(100)
        .offline_queue(100_000, DropPolicy::Newest)
        .events_to(events_tx);
    let publ = (run.tune)(builder).start();
    publ.wait_connected(WAIT).await.unwrap();
    let events: Arc<Mutex<Vec<(Instant, ConnectionEvent)>>> = Arc::default();
    let recorder = {
        let events = events.clone();
        actix_rt::spawn(async move {
            while let Some(e) = events_rx.recv().await {
                events.lock().unwrap().push((Instant::now(), e));
            }
        })
    };
    let publisher = publ.publisher();

    let mut sent = 0usize;
    let send_for = |d: Duration, sent: &mut usize| {
        let publisher = publisher.clone();
        let topic = topic.clone();
        let start = *sent;
        let n = (d.as_millis() as u64 * RATE / 1000) as usize;
        *sent += n;
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            for i in start..start + n {
                tick.tick().await;
                let p = Publish::to_topic(topic.clone(), i.to_string()).qos(QoS::AtLeastOnce);
                publisher.enqueue(p).await.unwrap();
            }
        }
    };
    send_for(Duration::from_secs(1), &mut sent).await;
    proxy.set(run.fault);
    let fault_at = Instant::now();
    send_for(run.outage, &mut sent).await;
    if run.reset_on_heal {
        proxy.reset_connections();
    }
    proxy.set(Fault::Pass);
    let healed = Instant::now();
    send_for(Duration::from_secs(1), &mut sent).await;

    let unique =
        || arrivals.lock().unwrap().iter().map(|(_, i)| *i).collect::<std::collections::HashSet<_>>().len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unique() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen: HashMap<usize, u32> = HashMap::new();
    let mut first_after_heal = None;
    for (at, i) in arrivals.lock().unwrap().iter() {
        if *at >= healed && first_after_heal.is_none() {
            first_after_heal = Some(*at - healed);
        }
        *seen.entry(*i).or_default() += 1;
    }
    // Everything accepted completes (acknowledged) once delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = publisher.stats().await.unwrap();
    while stats.incomplete_count > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = publisher.stats().await.unwrap();
    }
    publ.stop().await;
    sub.stop().await;
    recorder.abort();
    collector.abort();
    let disconnects: Vec<(Duration, DisconnectReason)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(at, e)| match e {
            ConnectionEvent::Disconnected { reason } if *at >= fault_at => {
                Some((*at - fault_at, reason.clone()))
            }
            _ => None,
        })
        .collect();
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    let lost = sent - seen.len();
    println!(
        "{name}: outage={:?} sent={sent} acked={} resent={} delivered_unique={} duplicates={duplicates} lost={lost} \
         incomplete={} first_disconnect_after={:?} first_delivery_after_heal={first_after_heal:?} stalls={} ack_timeouts={}",
        run.outage,
        stats.acked_total,
        stats.resent_total,
        seen.len(),
        stats.incomplete_count,
        disconnects.first(),
        stats.stalls_total,
        stats.ack_timeouts_total,
    );
    Some(Outcome { sent, unique: seen.len(), lost, disconnects })
}

/// An 8 s outage with the short acknowledgement timeout.
fn run(name: &'static str, fault: Fault, reset_on_heal: bool, persistent: bool) -> Run {
    Run { name, fault, outage: Duration::from_secs(8), reset_on_heal, persistent, tune: short_ack_timeout }
}

/// Runs it and checks that every accepted message arrived.
async fn loses_nothing(r: Run) -> Option<Outcome> {
    let name = r.name;
    let o = outage(r).await?;
    assert_eq!(o.lost, 0, "{name}: accepted messages lost");
    assert_eq!(o.unique, o.sent);
    Some(o)
}

#[actix_rt::test]
async fn a_blackhole_that_ends_in_a_reset_loses_nothing() {
    loses_nothing(run("blackhole-reset", Fault::Blackhole, true, false)).await;
}

#[actix_rt::test]
async fn a_blackhole_on_a_persistent_session_loses_nothing() {
    loses_nothing(run("blackhole-persistent", Fault::Blackhole, true, true)).await;
}

#[actix_rt::test]
async fn a_blackhole_that_heals_loses_nothing() {
    loses_nothing(run("blackhole-heal", Fault::Blackhole, false, false)).await;
}

#[actix_rt::test]
async fn a_refused_port_longer_than_the_ack_timeout_loses_nothing() {
    loses_nothing(run("refused", Fault::Refuse, false, false)).await;
}

#[actix_rt::test]
async fn the_stall_watchdog_declares_a_blackholed_link_dead_long_before_the_keep_alive() {
    // Keep-alive 60 s and an acknowledgement timeout of 60 s: only the watchdog (1 s
    // threshold, 1 s probe) can notice an 8 s blackhole.
    let r = Run {
        tune: |b| {
            b.ack_timeout(Duration::from_secs(60)).stall_watchdog(Some(StallPolicy {
                threshold: Duration::from_secs(1),
                probe_timeout: Duration::from_secs(1),
            }))
        },
        ..run("stall", Fault::Blackhole, true, false)
    };
    let Some(o) = loses_nothing(r).await else { return };
    let (_, first) = o.disconnects.first().expect("the link was declared dead during the blackhole");
    assert!(matches!(first, DisconnectReason::Stalled { .. }), "declared dead by the watchdog: {first:?}");
}
