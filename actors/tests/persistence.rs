//! A process using the Publisher with persistence is SIGKILLed after its messages were
//! accepted; a new process on the same store delivers every one of them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use connector_actors::Connector;
use connector_core::{Inbound, Publish, QoS};
use futures::StreamExt;
use test_support::Mosquitto;

const CHILD: &str = "CONNECTOR_TEST_PERSIST_CHILD";
const COUNT: usize = 500;

/// Not a test of its own: the body of the child process, which accepts COUNT messages into
/// the store while the broker is down, says so, and waits to be killed.
#[actix_rt::test]
#[ignore = "run as a child process by messages_accepted_before_sigkill_are_delivered_after_restart"]
async fn child_publisher_process() {
    let spec = std::env::var(CHILD).expect("run by the parent test with its environment");
    let (url, dir) = spec.split_once('|').unwrap();
    let conn =
        Connector::builder(provider(url, "persist-child")).backoff(fast_backoff()).persistence(dir).start();
    for i in 0..COUNT {
        conn.publisher()
            .enqueue(Publish::to_topic("persist/seq", i.to_string()).qos(QoS::AtLeastOnce))
            .await
            .unwrap();
    }
    println!("ACCEPTED {COUNT}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

#[actix_rt::test]
async fn messages_accepted_before_sigkill_are_delivered_after_restart() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let store = tempfile::tempdir().unwrap();
    broker.kill();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_publisher_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{}|{}", broker.url(), store.path().display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let accepted = loop {
        let line = lines.next().expect("child ended before accepting").unwrap();
        // The harness prefixes the line with "test child_publisher_process ... ".
        if let Some((_, n)) = line.split_once("ACCEPTED ") {
            break n.trim().parse::<usize>().unwrap();
        }
    };
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(sigkill(pid), 0);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");

    broker.restart();
    let sub = Connector::builder(provider(&broker.url(), "persist-sub")).backoff(fast_backoff()).start();
    sub.wait_connected(WAIT).await.unwrap();
    let (_, mut inbox) = sub.subscriber().stream("persist/#", QoS::AtLeastOnce, COUNT * 2).await.unwrap();

    let restarted = Connector::builder(provider(&broker.url(), "persist-restarted"))
        .backoff(fast_backoff())
        .persistence(store.path())
        .start();
    let mut seen = HashSet::new();
    let mut received = 0;
    while seen.len() < accepted {
        let Ok(Some(Inbound::Message(m))) = tokio::time::timeout(Duration::from_secs(20), inbox.next()).await
        else {
            break;
        };
        received += 1;
        seen.insert(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    let stats = restarted.publisher().stats().await.unwrap();
    println!(
        "persistence: accepted={accepted} before SIGKILL, delivered after restart={} (received {received}); publisher {stats:?}",
        seen.len()
    );
    assert_eq!(seen.len(), accepted);
    test_support::wait_until_async(WAIT, "the store to drain", || {
        restarted.metrics().acked.get() as usize >= accepted
    })
    .await;
    assert_eq!(restarted.publisher().stats().await.unwrap().incomplete_count, 0);
    restarted.stop().await;
    sub.stop().await;

    // A third run finds nothing left to send.
    let again =
        Connector::builder(provider(&broker.url(), "persist-again")).persistence(store.path()).start();
    again.wait_connected(WAIT).await.unwrap();
    assert_eq!(again.publisher().stats().await.unwrap().incomplete_count, 0);
    again.stop().await;
}

fn sigkill(pid: i32) -> i32 {
    // The workspace forbids unsafe code: signal our own child with kill(1).
    let out = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    if out.success() {
        0
    } else {
        1
    }
}
