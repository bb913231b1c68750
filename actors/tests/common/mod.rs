//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use connector_core::{BackoffPolicy, ConnectionEvent, Jitter, MqttOptions, MqttProvider};
use futures::{Stream, StreamExt};

pub const WAIT: Duration = Duration::from_secs(10);

/// A provider for a test client on `url`, with a client id derived from `name`.
pub fn provider(url: &str, name: &str) -> MqttProvider {
    MqttProvider::new(
        MqttOptions::new(url, test_support::unique_client_id(name)).keep_alive(Duration::from_secs(5)),
    )
    .expect("test options are valid")
}

/// Same, with options adjusted by `f`.
pub fn provider_with(url: &str, name: &str, f: impl FnOnce(MqttOptions) -> MqttOptions) -> MqttProvider {
    let o = MqttOptions::new(url, test_support::unique_client_id(name)).keep_alive(Duration::from_secs(5));
    MqttProvider::new(f(o)).expect("test options are valid")
}

/// Backoff short enough for tests.
pub fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        min: Duration::from_millis(50),
        max: Duration::from_millis(400),
        stable_after: Duration::from_secs(5),
        jitter: Jitter::Full,
    }
}

/// The next item of a stream within `within`, or a failure naming `what`.
pub async fn next_within<S: Stream + Unpin>(s: &mut S, within: Duration, what: &str) -> S::Item {
    match tokio::time::timeout(within, s.next()).await {
        Ok(Some(v)) => v,
        Ok(None) => panic!("stream ended while waiting for {what}"),
        Err(_) => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Skips events until one matches, failing after `within`.
pub async fn event_matching<S: Stream<Item = ConnectionEvent> + Unpin>(
    s: &mut S,
    within: Duration,
    what: &str,
    mut f: impl FnMut(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = next_within(s, left, what).await;
        if f(&e) {
            return e;
        }
    }
}

/// Reads a counter or gauge value from the Prometheus text format: the sample whose name
/// is `name` and whose labels include every `labels` pair.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (head, value) = line.rsplit_once(' ')?;
        let (n, lbls) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        if n != name {
            return None;
        }
        let ok = labels.iter().all(|(k, v)| lbls.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if ok {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// The registry rendered as Prometheus text.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}
