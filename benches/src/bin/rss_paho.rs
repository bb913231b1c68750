//! A minimal connected program on raw paho (no async runtime): connect, publish one QoS 1
//! message, print `VmRSS_kB <n>`, disconnect.

use anyhow::Context as _;
use paho_mqtt as mqtt;

fn main() -> anyhow::Result<()> {
    let url = connector_benches::rss::url_arg()?;
    let create =
        mqtt::CreateOptionsBuilder::new().server_uri(url).client_id("rss-paho").persistence(None).finalize();
    let client = mqtt::AsyncClient::new(create).context("client")?;
    client.connect(mqtt::ConnectOptionsBuilder::new_v3().finalize()).wait().context("connect")?;
    client.publish(mqtt::Message::new("bench/rss", &b"hello"[..], 1)).wait().context("publish")?;
    connector_benches::rss::report()?;
    client.disconnect(None).wait().context("disconnect")?;
    Ok(())
}
