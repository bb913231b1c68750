//! The checked-in operations assets are consistent with the code: every metric the
//! Grafana dashboard queries is one the connector or the agent defines, and the systemd
//! unit is a notify service with a watchdog.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("connector_") {
        let start = i + pos;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn dashboard_queries_only_defined_metrics() {
    let dash: serde_json::Value = serde_json::from_str(&read("grafana/dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" || k == "definition" {
                        out.push(v.as_str().unwrap_or_default().to_owned());
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let defined: BTreeSet<String> = [read("../connector-core/src/metrics.rs"), read("src/metrics.rs")]
        .iter()
        .flat_map(|t| {
            t.split('"')
                .filter(|s| s.starts_with("connector_") && !s.contains(' '))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut used = BTreeSet::new();
    for e in &exprs {
        used.extend(metric_names(e));
    }
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| {
            let base =
                ["_bucket", "_sum", "_count"].iter().fold(n.as_str(), |b, s| b.strip_suffix(s).unwrap_or(b));
            !defined.contains(base)
        })
        .collect();
    assert!(unknown.is_empty(), "dashboard queries undefined metrics: {unknown:?}");
    // And it covers the agent's own families and the core connection ones.
    for must in [
        "connector_connected",
        "connector_offline_queue_depth",
        "connector_agent_messages_total",
        "connector_agent_store_bytes",
    ] {
        assert!(used.iter().any(|u| u == must), "{must} not on the dashboard");
    }
}

#[test]
fn systemd_unit_is_notify_with_watchdog_and_reload() {
    let unit = read("systemd/connector-agent.service");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=connector-agent",
        "RestartPreventExitStatus=2 3",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} missing");
    }
}
