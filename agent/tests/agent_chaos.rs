//! Chaos through a real TCP fault proxy between the agent and the hub (the emulator), while a
//! producer writes 100 lines/s into the ingestion socket: blackholes longer than every
//! timeout (ending in a reset, or healing as they were), a refused port, the agent SIGKILLed
//! and restarted on its store in the middle of an outage, and a token expiry followed by an
//! outage. Every line answered `{"ok":true}` must reach the hub.
//!
//! `chaos_compressed` is the CI variant (short thresholds, 8–12 s outages, about 80 s).
//! `chaos_long` is the long run (`scripts/chaos.sh`): 90 s blackhole, 90 s refused port,
//! a 10-minute outage, a blackhole that heals, then a random fault every 20–60 s for
//! `CHAOS_MINUTES` (default 20), with RSS and descriptors sampled; with `CHAOS_REPORT` set it
//! writes the figures there as Markdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod common;

use std::time::Duration;

use chaos::{Chaos, Step};
use test_support::Fault;

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn chaos_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let connection =
        "stall_threshold = \"1s\"\nprobe_timeout = \"1s\"\nbackoff_min = \"100ms\"\nbackoff_max = \"1s\"\n";
    let mut c = Chaos::start(dir.path(), "agent-chaos", connection, "", 100);
    let script = [
        Step::Pass(S(3)),
        Step::Fault { fault: Fault::Blackhole, lasting: S(12), reset: true },
        Step::Pass(S(3)),
        Step::Fault { fault: Fault::Refuse, lasting: S(12), reset: false },
        Step::Pass(S(3)),
        Step::Fault { fault: Fault::Blackhole, lasting: S(10), reset: false },
        Step::Pass(S(3)),
        Step::KillDuringBlackhole { lasting: S(8), after: S(3) },
        Step::Pass(S(3)),
        Step::ExpireTokenThenRefuse { lasting: S(8) },
        Step::Pass(S(3)),
    ];
    let steps: Vec<_> = script.iter().filter_map(|s| c.step(s)).collect();
    let r = c.finish(steps);
    r.print("chaos (compressed)");
    assert!(r.acked > 1000, "the producer got lines in: {}", r.summary());
    assert_eq!(r.lost, 0, "accepted lines lost: {}", r.summary());
    assert_eq!(r.dropped_by_limits, 0.0, "no configured limit was reached: {}", r.summary());
    // Every outage was noticed while it lasted.
    for s in &r.steps {
        assert!(s.detected_after.is_some(), "{} went unnoticed", s.name);
    }
}
