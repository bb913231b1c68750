//! Embedding the tree in an actix program: an actor of yours receives typed messages
//! (`Recipient<Received>`), lifecycle events go to another, and a publish is awaited for
//! its PUBACK.
//!
//! ```text
//! cargo run -p connector-examples --example embed -- [broker URI]
//! ```
//! With no URI it starts a local mosquitto on a free port.

use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use connector_actors::messages::{Event, Received, Subscribe};
use connector_actors::Connector;
use connector_core::{Inbound, MqttOptions, MqttProvider, Publish, QoS};

/// Prints what arrives and signals `done` after `expect` messages.
struct Printer {
    expect: usize,
    seen: usize,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<Received> for Printer {
    type Result = ();
    fn handle(&mut self, Received(msg): Received, _: &mut Self::Context) {
        if let Inbound::Message(m) = msg {
            println!("received on {}: {}", m.topic, String::from_utf8_lossy(&m.payload));
        }
        self.seen += 1;
        if self.seen == self.expect {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
    }
}

impl Handler<Event> for Printer {
    type Result = ();
    fn handle(&mut self, Event(e): Event, _: &mut Self::Context) {
        println!("lifecycle: {e:?}");
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let _broker;
    let url = match std::env::args().nth(1) {
        Some(u) => u,
        None => {
            _broker =
                test_support::Mosquitto::start().context("mosquitto is not installed; pass a broker URI")?;
            _broker.url()
        }
    };
    let (done, all_received) = tokio::sync::oneshot::channel();
    let printer = Printer { expect: 3, seen: 0, done: Some(done) }.start();
    let conn = Connector::builder(MqttProvider::new(MqttOptions::new(&url, "embed-example"))?)
        .on_event(printer.clone().recipient())
        .start();
    conn.wait_connected(Duration::from_secs(10)).await?;
    conn.subscriber().subscribe(Subscribe::topic("embed/#", QoS::AtLeastOnce, printer.recipient())).await?;
    for i in 0..3 {
        let ack = conn
            .publisher()
            .publish(Publish::to_topic(format!("embed/{i}"), format!("hello {i}")).qos(QoS::AtLeastOnce))
            .await?;
        println!("acknowledged message {:?}", ack.id);
    }
    tokio::time::timeout(Duration::from_secs(10), all_received)
        .await
        .context("messages did not come back")??;
    conn.stop().await;
    Ok(())
}
