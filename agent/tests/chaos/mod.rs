//! The chaos harness: the agent connected to the emulator's hub through a TCP fault proxy,
//! a producer writing numbered lines into its ingestion socket at a steady rate, and a
//! script of faults (blackholes, refused ports, resets, slow paths, token expiry, the agent
//! SIGKILLed and restarted on its store). At the end every line the agent answered
//! `{"ok":true}` must be at the hub; lost, duplicates, detection and recovery times, RSS
//! and open descriptors are reported.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use test_support::{Fault, FaultProxy};

use crate::common::{parse_prometheus, sample, Agent, ExternalCloud, WITHIN};

/// What the producer has seen.
#[derive(Default)]
pub struct Produced {
    /// Lines the agent answered `{"ok":true}`.
    pub acked: Mutex<BTreeSet<u64>>,
    /// Lines it refused, with the reason.
    pub refused: Mutex<Vec<(u64, String)>>,
    /// Lines written.
    pub written: AtomicU64,
    /// Connections made to the socket.
    pub connections: AtomicU64,
}

/// A producer thread writing `{"n":N}` lines at `rate` per second, reconnecting to the
/// socket whenever the agent goes away (a line written but never answered is not counted
/// as accepted).
pub struct Producer {
    stop: Arc<AtomicBool>,
    pub produced: Arc<Produced>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Producer {
    pub fn start(socket: PathBuf, rate: u32) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(Produced::default());
        let (s, p) = (stop.clone(), produced.clone());
        let thread = std::thread::spawn(move || produce(&socket, rate, &s, &p));
        Producer { stop, produced, thread: Some(thread) }
    }

    /// Stops writing and waits for the answers to what was written.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn produce(socket: &Path, rate: u32, stop: &AtomicBool, p: &Arc<Produced>) {
    let pause = Duration::from_secs(1) / rate.max(1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = UnixStream::connect(socket) else {
            // The agent is restarting: its socket comes back.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        p.connections.fetch_add(1, Ordering::Relaxed);
        let lines: Arc<Mutex<Vec<u64>>> = Arc::default();
        let answered = Arc::new(AtomicU64::new(0));
        let reader = {
            let (lines, answered, p) = (lines.clone(), answered.clone(), p.clone());
            let r = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { break };
                    let Some(seq) = v["seq"].as_u64() else { continue };
                    let Some(n) = lines.lock().unwrap().get(seq as usize - 1).copied() else { continue };
                    if v["ok"] == true {
                        p.acked.lock().unwrap().insert(n);
                    } else {
                        p.refused
                            .lock()
                            .unwrap()
                            .push((n, v["error"].as_str().unwrap_or_default().to_owned()));
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            lines.lock().unwrap().push(n);
            if writeln!(stream, "{{\"n\":{n}}}").is_err() {
                lines.lock().unwrap().pop();
                break;
            }
            p.written.fetch_add(1, Ordering::Relaxed);
            n += 1;
            // Pacing, not synchronisation: the producer's rate.
            next += pause;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        if stop.load(Ordering::Relaxed) {
            // Let the agent answer what it was given, then close.
            let written = lines.lock().unwrap().len() as u64;
            let deadline = Instant::now() + WITHIN;
            while answered.load(Ordering::Relaxed) < written
                && Instant::now() < deadline
                && !reader.is_finished()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
        reader.join().unwrap();
    }
}

/// One step of a fault script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Traffic passes.
    Pass(Duration),
    /// A fault for a while; then, with `reset`, the path resets what it held, and passes.
    Fault { fault: Fault, lasting: Duration, reset: bool },
    /// The agent is SIGKILLed `after` into a blackhole of `lasting`, restarted on the same
    /// store while the path is still down, then the path heals.
    KillDuringBlackhole { lasting: Duration, after: Duration },
    /// The hub expires the agent's SAS token (it reconnects with a fresh one) at the start
    /// of a refused port of `lasting`.
    ExpireTokenThenRefuse { lasting: Duration },
}

impl Step {
    fn name(&self) -> String {
        match self {
            Step::Pass(d) => format!("pass {}s", d.as_secs()),
            Step::Fault { fault, lasting, reset } => {
                format!("{fault:?} {}s{}", lasting.as_secs(), if *reset { " then reset" } else { "" })
            }
            Step::KillDuringBlackhole { lasting, .. } => {
                format!("agent SIGKILL in a {}s blackhole", lasting.as_secs())
            }
            Step::ExpireTokenThenRefuse { lasting } => {
                format!("token expiry + refused {}s", lasting.as_secs())
            }
        }
    }
}

/// What one fault step measured.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    /// From the fault's start to the agent reporting itself disconnected (`None`: never).
    pub detected_after: Option<Duration>,
    /// From the path healing to the next message acknowledged by the hub.
    pub recovered_after: Option<Duration>,
}

/// The whole run's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub steps: Vec<StepReport>,
    pub written: u64,
    pub acked: usize,
    pub refused: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub dropped_by_limits: f64,
    pub restarts: u32,
    pub rss_kib: (u64, u64),
    pub fds: (usize, usize),
    /// (time into the run, RSS KiB, descriptors) after every step.
    pub samples: Vec<(Duration, u64, usize)>,
    pub elapsed: Duration,
}

impl Report {
    pub fn print(&self, title: &str) {
        println!("{title}: {}", self.summary());
        for s in &self.steps {
            println!(
                "  {}: declared dead after {:?}, first delivery {:?} after the path healed",
                s.name, s.detected_after, s.recovered_after
            );
        }
    }

    /// The figures as Markdown, for `docs/RELIABILITY.md`.
    pub fn markdown(&self, command: &str, settings: &str) -> String {
        use std::fmt::Write as _;
        let mut m = String::new();
        let secs =
            |d: Option<Duration>| d.map_or_else(|| "—".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        let _ = writeln!(m, "## Last long run\n");
        let _ = writeln!(m, "Command: `{command}`\n");
        let _ = writeln!(m, "Settings: {settings}\n");
        let _ = writeln!(m, "| | |\n|---|---|");
        let _ = writeln!(m, "| duration | {:.0} min |", self.elapsed.as_secs_f64() / 60.0);
        let _ = writeln!(
            m,
            "| lines written / answered `ok:true` / refused | {} / {} / {} |",
            self.written, self.acked, self.refused
        );
        let _ = writeln!(
            m,
            "| accepted lines delivered / **lost** | {} / **{}** |",
            self.acked - self.lost,
            self.lost
        );
        let _ = writeln!(m, "| duplicates delivered | {} |", self.duplicates);
        let _ = writeln!(
            m,
            "| removed by a configured limit (last agent process) | {} |",
            self.dropped_by_limits
        );
        let _ = writeln!(m, "| agent SIGKILLs and restarts | {} |", self.restarts);
        let (rss_min, rss_max) =
            self.samples.iter().fold((u64::MAX, 0), |(a, b), s| (a.min(s.1), b.max(s.1)));
        let (fd_min, fd_max) =
            self.samples.iter().fold((usize::MAX, 0), |(a, b), s| (a.min(s.2), b.max(s.2)));
        let _ = writeln!(
            m,
            "| RSS start → end (min–max over {} samples) | {} → {} KiB ({}–{}) |",
            self.samples.len(),
            self.rss_kib.0,
            self.rss_kib.1,
            rss_min,
            rss_max
        );
        let _ = writeln!(
            m,
            "| open descriptors start → end (min–max) | {} → {} ({}–{}) |\n",
            self.fds.0, self.fds.1, fd_min, fd_max
        );
        let _ = writeln!(
            m,
            "| fault | declared dead after | first acknowledgement after the path healed |\n|---|---|---|"
        );
        for st in &self.steps {
            let _ =
                writeln!(m, "| {} | {} | {} |", st.name, secs(st.detected_after), secs(st.recovered_after));
        }
        m
    }

    pub fn summary(&self) -> String {
        format!(
            "{:.0?} written={} acknowledged={} refused={} delivered={} lost={} duplicates={} dropped_by_limits={} agent_restarts={} rss_kib={}→{} fds={}→{}",
            self.elapsed,
            self.written,
            self.acked,
            self.refused,
            self.delivered,
            self.lost,
            self.duplicates,
            self.dropped_by_limits,
            self.restarts,
            self.rss_kib.0,
            self.rss_kib.1,
            self.fds.0,
            self.fds.1
        )
    }
}

/// The agent, the emulator, the proxy and the producer.
pub struct Chaos {
    pub rt: tokio::runtime::Runtime,
    pub cloud: ExternalCloud,
    pub proxy: FaultProxy,
    pub agent: Agent,
    args: Vec<String>,
    metrics: String,
    device: String,
    pub producer: Producer,
    restarts: u32,
    rss_start: u64,
    fds_start: usize,
    samples: Vec<(Duration, u64, usize)>,
    started: Instant,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Chaos {
    /// Starts everything: `connection` is the agent's `[connection]` table, `rate` the
    /// producer's lines per second.
    pub fn start(dir: &Path, device: &str, connection: &str, store: &str, rate: u32) -> Chaos {
        let rt = crate::common::rt();
        let cloud = ExternalCloud::start(&rt, dir, device);
        let proxy = FaultProxy::to_port(cloud.emu.mqtt_port());
        let socket = dir.join("in.sock");
        let metrics = format!("127.0.0.1:{}", free_port());
        let extra = format!(
            "[telemetry]\ndevice_stats = false\n[ingest]\nsocket = {socket:?}\nbatch_max_messages = 50\nbatch_max_delay = \"100ms\"\n[store]\n{store}\n[connection]\n{connection}\n"
        );
        let cfg = dir.join("agent.toml");
        let text = cloud
            .config_via(&dir.join("s"), proxy.port(), &extra)
            .replace("[metrics]\nenabled = false", &format!("[metrics]\nenabled = true\naddr = {metrics:?}"));
        std::fs::write(&cfg, text).unwrap();
        let args = vec!["--config".to_owned(), cfg.to_str().unwrap().to_owned()];
        let mut agent = start_agent(&args);
        agent.wait_line("connected", |l| l.starts_with(&format!("status: connected device={device}")));
        let (rss_start, fds_start) = usage(agent.pid());
        let producer = Producer::start(socket, rate);
        Chaos {
            rt,
            cloud,
            proxy,
            agent,
            args,
            metrics,
            device: device.to_owned(),
            producer,
            restarts: 0,
            rss_start,
            fds_start,
            samples: Vec::new(),
            started: Instant::now(),
        }
    }

    fn connected(&self) -> Option<bool> {
        let (status, body) = http_get_quiet(&self.metrics, "/metrics")?;
        (status == 200).then(|| sample(&parse_prometheus(&body), "connector_connected", &[]) == Some(1.0))
    }

    /// Messages the hub has acknowledged to this agent process (its metric; cheap to poll,
    /// unlike the hub's whole telemetry list).
    fn acked_count(&self) -> f64 {
        http_get_quiet(&self.metrics, "/metrics")
            .and_then(|(_, body)| {
                sample(
                    &parse_prometheus(&body),
                    "connector_messages_published_total",
                    &[("outcome", "acked")],
                )
            })
            .unwrap_or(0.0)
    }

    /// Runs a fault for `lasting`, watching for the agent to notice it.
    fn hold(&mut self, lasting: Duration, mut during: impl FnMut(&mut Self, Duration)) -> Option<Duration> {
        let start = Instant::now();
        let mut detected = None;
        while start.elapsed() < lasting {
            during(self, start.elapsed());
            if detected.is_none() && self.connected() == Some(false) {
                detected = Some(start.elapsed());
            }
            // Sampling period of the detection time.
            std::thread::sleep(Duration::from_millis(50));
        }
        detected
    }

    /// Heals the path and measures how long the next message takes to be acknowledged by
    /// the hub.
    fn heal(&mut self, reset: bool) -> Option<Duration> {
        let before = self.acked_count();
        if reset {
            self.proxy.reset_connections();
        }
        self.proxy.set(Fault::Pass);
        let healed = Instant::now();
        let mut after = None;
        test_support::wait_until(Duration::from_secs(120), "a delivery after the path healed", || {
            if self.acked_count() > before {
                after = Some(healed.elapsed());
            }
            after.is_some()
        });
        after
    }

    pub fn step(&mut self, step: &Step) -> Option<StepReport> {
        let name = step.name();
        println!("chaos: {name}");
        let (detected_after, recovered_after) = match step {
            Step::Pass(d) => {
                std::thread::sleep(*d);
                let (rss, fds) = usage(self.agent.pid());
                self.samples.push((self.started.elapsed(), rss, fds));
                return None;
            }
            Step::Fault { fault, lasting, reset } => {
                self.proxy.set(*fault);
                let d = self.hold(*lasting, |_, _| {});
                (d, self.heal(*reset))
            }
            Step::KillDuringBlackhole { lasting, after } => {
                self.proxy.set(Fault::Blackhole);
                let mut killed = false;
                let d = self.hold(*lasting, |c, t| {
                    if !killed && t >= *after {
                        killed = true;
                        c.agent.signal(Signal::SIGKILL);
                        let _ = c.agent.wait_exit();
                        c.agent = start_agent(&c.args);
                        c.restarts += 1;
                    }
                });
                (d, self.heal(true))
            }
            Step::ExpireTokenThenRefuse { lasting } => {
                self.rt.block_on(self.cloud.emu.control().expire_token(&self.device, None)).unwrap();
                self.proxy.set(Fault::Refuse);
                let d = self.hold(*lasting, |_, _| {});
                (d, self.heal(false))
            }
        };
        let (rss, fds) = usage(self.agent.pid());
        self.samples.push((self.started.elapsed(), rss, fds));
        Some(StepReport { name, detected_after, recovered_after })
    }

    /// Stops the producer, waits for every accepted line at the hub, and reports.
    pub fn finish(mut self, steps: Vec<StepReport>) -> Report {
        self.producer.stop();
        let p = self.producer.produced.clone();
        let acked = p.acked.lock().unwrap().clone();
        let ctl = self.cloud.emu.control();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        // Not `wait_until`: when lines are missing the run must still report how many.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            counts.clear();
            for m in self.rt.block_on(ctl.telemetry(&self.device, None)).unwrap() {
                let batch: Vec<serde_json::Value> =
                    serde_json::from_str(m.payload.as_deref().unwrap()).unwrap();
                for v in batch {
                    *counts.entry(v["n"].as_u64().unwrap()).or_default() += 1;
                }
            }
            if acked.iter().all(|n| counts.contains_key(n)) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let lost = acked.iter().filter(|n| !counts.contains_key(n)).count();
        let duplicates = counts.values().map(|c| c - 1).sum();
        let dropped_by_limits = http_get_quiet(&self.metrics, "/metrics")
            .map(|(_, body)| {
                let s = parse_prometheus(&body);
                ["expired", "evicted", "failed"]
                    .iter()
                    .filter_map(|r| sample(&s, "connector_messages_discarded_total", &[("reason", r)]))
                    .fold(0.0, |a, b| a + b)
            })
            .unwrap_or(f64::NAN);
        let end = usage(self.agent.pid());
        let refused = p.refused.lock().unwrap().len();
        self.agent.signal(Signal::SIGTERM);
        let exit = self.agent.wait_exit();
        assert_eq!(exit.code(), Some(0), "{}", self.agent.output());
        Report {
            steps,
            written: p.written.load(Ordering::Relaxed),
            acked: acked.len(),
            refused,
            delivered: counts.len(),
            lost,
            duplicates,
            dropped_by_limits,
            restarts: self.restarts,
            rss_kib: (self.rss_start, end.0),
            fds: (self.fds_start, end.1),
            samples: std::mem::take(&mut self.samples),
            elapsed: self.started.elapsed(),
        }
    }
}

fn start_agent(args: &[String]) -> Agent {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&a)
}

/// `GET` that gives `None` where the agent cannot answer (it is restarting).
fn http_get_quiet(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// RSS in KiB and open descriptors of a process.
pub fn usage(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}
