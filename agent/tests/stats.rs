//! Device statistics: the /proc parsers on fixture text and malformed input, the sampler
//! on a fixture proc root and on the real one, and the periodic channel.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_agent::stats::{
    parse_loadavg, parse_meminfo, parse_proc_stat, parse_status_rss, parse_uptime, CpuTimes, StatsError,
    StatsOptions, StatsSampler,
};
use test_support::recv_within;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

#[test]
fn parses_proc_stat_fixture() {
    let t = parse_proc_stat(&fixture("stat")).unwrap();
    assert_eq!(
        t,
        CpuTimes {
            user: 1000,
            nice: 50,
            system: 300,
            idle: 8000,
            iowait: 100,
            irq: 10,
            softirq: 20,
            steal: 5
        }
    );
    assert_eq!(t.total(), 9485);
    assert_eq!(t.idle_total(), 8100);
}

#[test]
fn proc_stat_of_an_old_kernel_has_four_counters() {
    let t = parse_proc_stat("cpu 1 2 3 4\n").unwrap();
    assert_eq!(t.total(), 10);
    assert_eq!(t.steal, 0);
}

#[test]
fn malformed_proc_stat_is_a_typed_error() {
    assert!(matches!(parse_proc_stat(""), Err(StatsError::Missing { file: "/proc/stat", .. })));
    assert!(matches!(parse_proc_stat("cpu0 1 2 3 4\n"), Err(StatsError::Missing { .. })));
    assert!(matches!(parse_proc_stat("cpu 1 2 3\n"), Err(StatsError::Missing { what: "cpu counters", .. })));
    match parse_proc_stat("cpu 1 2 x 4\n") {
        Err(StatsError::BadNumber { field: "system", value, .. }) => assert_eq!(value, "x"),
        other => panic!("expected BadNumber, got {other:?}"),
    }
    assert!(matches!(parse_proc_stat("cpu 1 2 3 -4\n"), Err(StatsError::BadNumber { field: "idle", .. })));
}

#[test]
fn cpu_percent_is_busy_share_of_elapsed_jiffies() {
    let a = CpuTimes { user: 100, idle: 100, ..Default::default() };
    let b = CpuTimes { user: 175, idle: 125, ..Default::default() };
    assert_eq!(b.percent_busy_since(&a), Some(75.0));
    assert_eq!(a.percent_busy_since(&a), None, "no elapsed time");
    assert_eq!(a.percent_busy_since(&b), None, "counters went backwards");
}

#[test]
fn parses_meminfo_fixture_and_falls_back_without_memavailable() {
    let m = parse_meminfo(&fixture("meminfo")).unwrap();
    assert_eq!(m.total_bytes, 2_048_000 * 1024);
    assert_eq!(m.available_bytes, 1_024_000 * 1024);
    let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 20 kB\n";
    assert_eq!(parse_meminfo(old).unwrap().available_bytes, 35 * 1024);
}

#[test]
fn malformed_meminfo_is_a_typed_error() {
    assert!(matches!(parse_meminfo("MemFree: 1 kB\n"), Err(StatsError::Missing { what: "MemTotal", .. })));
    assert!(matches!(
        parse_meminfo("MemTotal: lots kB\n"),
        Err(StatsError::BadNumber { field: "MemTotal", .. })
    ));
    assert!(matches!(parse_meminfo("MemTotal: 5 MB\n"), Err(StatsError::BadNumber { .. })));
    assert!(matches!(parse_meminfo("MemTotal: 5 kB\n"), Err(StatsError::Missing { .. })));
    assert!(matches!(parse_meminfo("MemTotal:\n"), Err(StatsError::Missing { what: "value", .. })));
}

#[test]
fn parses_uptime_loadavg_and_rss_fixtures() {
    assert_eq!(parse_uptime(&fixture("uptime")).unwrap().as_secs(), 3600);
    let l = parse_loadavg(&fixture("loadavg")).unwrap();
    assert_eq!((l.one, l.five, l.fifteen), (0.52, 0.41, 0.30));
    assert_eq!(parse_status_rss(&fixture("self/status")).unwrap(), 6144 * 1024);
}

#[test]
fn malformed_uptime_loadavg_and_status_are_typed_errors() {
    assert!(matches!(parse_uptime(""), Err(StatsError::Missing { file: "/proc/uptime", .. })));
    assert!(matches!(parse_uptime("abc 1.0"), Err(StatsError::BadNumber { .. })));
    assert!(matches!(parse_uptime("-5 1.0"), Err(StatsError::BadNumber { .. })));
    assert!(matches!(parse_uptime("NaN 1.0"), Err(StatsError::BadNumber { .. })));
    assert!(matches!(parse_uptime("1e400 1.0"), Err(StatsError::BadNumber { .. })));
    assert!(matches!(parse_loadavg("0.1 0.2"), Err(StatsError::Missing { what: "15 min", .. })));
    assert!(matches!(parse_loadavg("0.1 x 0.3"), Err(StatsError::BadNumber { field: "5 min", .. })));
    assert!(matches!(parse_status_rss("Name: x\n"), Err(StatsError::Missing { what: "VmRSS", .. })));
    assert!(matches!(parse_status_rss("VmRSS: 12q kB\n"), Err(StatsError::BadNumber { .. })));
}

#[test]
fn long_bad_values_are_shortened_in_the_error() {
    let long = format!("cpu {} 1 1 1\n", "9".repeat(500));
    match parse_proc_stat(&long) {
        Err(e @ StatsError::BadNumber { .. }) => assert!(e.to_string().len() < 120, "{e}"),
        other => panic!("expected BadNumber, got {other:?}"),
    }
}

fn copy_fixtures(to: &Path) {
    std::fs::create_dir_all(to.join("self")).unwrap();
    for f in ["stat", "meminfo", "uptime", "loadavg", "self/status"] {
        std::fs::copy(fixtures().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn sampler_reads_fixture_root_and_computes_cpu_between_samples() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    let mut s =
        StatsSampler::new(StatsOptions::new(Duration::from_secs(1), dir.path()).proc_root(dir.path()));
    let first = s.sample().unwrap();
    assert_eq!(first.cpu_percent, None);
    assert_eq!(first.mem_total_bytes, 2_048_000 * 1024);
    assert_eq!(first.mem_available_bytes, 1_024_000 * 1024);
    assert_eq!(first.uptime_secs, 3600);
    assert_eq!(first.process_rss_bytes, 6144 * 1024);
    assert!(first.disk_total_bytes > 0 && first.disk_free_bytes <= first.disk_total_bytes);

    // 400 more jiffies, 100 of them idle → 75 % busy.
    std::fs::write(dir.path().join("stat"), "cpu  1300 50 300 8100 100 10 20 5 0 0\n").unwrap();
    assert_eq!(s.sample().unwrap().cpu_percent, Some(75.0));

    let json = serde_json::to_value(&first).unwrap();
    for key in
        ["cpu_percent", "mem_total_bytes", "disk_free_bytes", "load", "uptime_secs", "process_rss_bytes"]
    {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["load"]["one"], 0.52);
}

#[test]
fn sampler_reports_missing_file_and_bad_disk_path() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    std::fs::remove_file(dir.path().join("meminfo")).unwrap();
    let mut s =
        StatsSampler::new(StatsOptions::new(Duration::from_secs(1), dir.path()).proc_root(dir.path()));
    assert!(matches!(s.sample(), Err(StatsError::Read { path, .. }) if path.ends_with("meminfo")));

    copy_fixtures(dir.path());
    let missing = dir.path().join("no-such-dir");
    let mut s = StatsSampler::new(StatsOptions::new(Duration::from_secs(1), &missing).proc_root(dir.path()));
    assert!(matches!(s.sample(), Err(StatsError::Statvfs { path, .. }) if path == missing));
}

#[test]
fn sampler_reads_the_real_proc() {
    let mut s = StatsSampler::new(StatsOptions::new(Duration::from_secs(1), "/"));
    let a = s.sample().unwrap();
    assert!(a.mem_total_bytes > 0 && a.mem_available_bytes <= a.mem_total_bytes);
    assert!(a.process_rss_bytes > 0);
    assert!(a.disk_total_bytes > 0);
    let b = s.sample().unwrap();
    if let Some(p) = b.cpu_percent {
        assert!((0.0..=100.0).contains(&p), "{p}");
    }
}

#[tokio::test]
async fn periodic_sampler_sends_snapshots_and_stops_when_receiver_dropped() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    let opts = StatsOptions::new(Duration::from_millis(20), dir.path()).proc_root(dir.path());
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let task = tokio::spawn(StatsSampler::new(opts).run(tx));
    for _ in 0..3 {
        let s = recv_within(&mut rx, Duration::from_secs(5), "a stats snapshot").await;
        assert_eq!(s.mem_total_bytes, 2_048_000 * 1024);
    }
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("sampler ends").unwrap();
}

#[tokio::test]
async fn periodic_sampler_skips_failed_samples_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    std::fs::write(dir.path().join("uptime"), "garbage\n").unwrap();
    let opts = StatsOptions::new(Duration::from_millis(10), dir.path()).proc_root(dir.path());
    let mut rx = StatsSampler::new(opts).spawn(1);
    let waited = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
    assert!(waited.is_err(), "no snapshot while uptime is malformed");
    std::fs::write(dir.path().join("uptime"), "42.0 1.0\n").unwrap();
    let s = recv_within(&mut rx, Duration::from_secs(5), "a snapshot after the fix").await;
    assert_eq!(s.uptime_secs, 42);
}
