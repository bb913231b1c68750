//! A minimal connected program on the actor path: start the connector, publish one QoS 1
//! message, print `VmRSS_kB <n>`, stop.

use std::time::Duration;

use anyhow::Context as _;
use connector_actors::Connector;
use connector_core::{MqttOptions, MqttProvider, Publish, QoS};

fn main() -> anyhow::Result<()> {
    let url = connector_benches::rss::url_arg()?;
    actix_rt::System::new().block_on(async move {
        let provider = MqttProvider::new(MqttOptions::new(url, "rss-actors"))?;
        let conn = Connector::builder(provider).start();
        conn.wait_connected(Duration::from_secs(10)).await?;
        conn.publisher()
            .publish(Publish::to_topic("bench/rss", &b"hello"[..]).qos(QoS::AtLeastOnce))
            .await
            .context("publish")?;
        connector_benches::rss::report()?;
        conn.stop().await;
        Ok(())
    })
}
