//! A minimal connected program on raw rumqttc (tokio current-thread runtime): connect,
//! publish one QoS 1 message, print `VmRSS_kB <n>`, disconnect.

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

fn main() -> anyhow::Result<()> {
    let url = connector_benches::rss::url_arg()?;
    let rest = url.strip_prefix("tcp://").context("tcp:// URL")?;
    let (host, port) = rest.rsplit_once(':').context("URL has no port")?;
    let opts = MqttOptions::new("rss-rumqttc", host, port.parse().context("port")?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    rt.block_on(async move {
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client.publish("bench/rss", QoS::AtLeastOnce, false, &b"hello"[..]).await?;
        loop {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await? {
                break;
            }
        }
        connector_benches::rss::report()?;
        client.disconnect().await?;
        Ok(())
    })
}
