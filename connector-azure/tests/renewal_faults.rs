//! SAS renewal while the network misbehaves: 5-second tokens, so renewals (and the hub
//! closing connections whose token expired) keep coming while a TCP fault proxy between the
//! device and the emulator's hub blackholes the path, then refuses the port. Nothing
//! accepted may be lost.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use connector_actors::{Connector, StallPolicy};
use connector_azure::{AzureProvider, ConnectionString};
use connector_core::{DropPolicy, Publish, QoS};
use test_support::{Fault, FaultProxy};

use common::{fast_backoff, start, WAIT};

#[actix_rt::test]
async fn sas_renewal_through_a_blackhole_and_a_refused_port_loses_nothing() {
    const N: usize = 500;
    let emu = start();
    let proxy = FaultProxy::to_port(emu.mqtt_port());
    let cs: ConnectionString = common::sas_device(&emu, "renew-faults").await.parse().unwrap();
    let mut opts = common::hub_options(&emu).port(proxy.port());
    opts.sas_ttl = Duration::from_secs(5);
    opts.keep_alive = Duration::from_secs(30);
    opts.connect_timeout = Duration::from_secs(2);
    let conn = Connector::builder(AzureProvider::new(cs, opts).unwrap())
        .backoff(fast_backoff())
        .offline_queue(N, DropPolicy::Newest)
        .stall_watchdog(Some(StallPolicy {
            threshold: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        }))
        .start();
    conn.wait_connected(WAIT).await.unwrap();
    let publisher = conn.publisher();
    let started = Instant::now();
    // 500 messages over ≈ 25 s (five token lifetimes); faults from 4 s to 12 s and 15 s to 19 s.
    let mut faults = vec![
        (Duration::from_secs(4), Fault::Blackhole),
        (Duration::from_secs(12), Fault::Pass),
        (Duration::from_secs(15), Fault::Refuse),
        (Duration::from_secs(19), Fault::Pass),
    ];
    faults.reverse();
    for i in 0..N {
        publisher.enqueue(Publish::telemetry(i.to_string()).qos(QoS::AtLeastOnce)).await.unwrap();
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        while faults.last().is_some_and(|(at, _)| started.elapsed() >= *at) {
            let (_, f) = faults.pop().unwrap();
            proxy.set(f);
        }
    }
    proxy.set(Fault::Pass);
    let mut unique = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unique.len() < N && Instant::now() < deadline {
        let got = emu.control().telemetry("renew-faults", None).await.unwrap();
        unique = got.iter().filter_map(|m| m.payload.clone()).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = conn.publisher().stats().await.unwrap();
    println!(
        "azure SAS renewal through faults: ttl=5s renewals={} reconnects={} sent={N} unique={} lost={} resent={} stalls={}",
        conn.metrics().credential_renewals.get(),
        conn.metrics().reconnects.get(),
        unique.len(),
        N - unique.len(),
        stats.resent_total,
        stats.stalls_total,
    );
    assert_eq!(unique.len(), N, "accepted messages lost");
    assert!(conn.metrics().credential_renewals.get() >= 2, "tokens were renewed along the way");
    conn.stop().await;
    emu.shutdown();
}
