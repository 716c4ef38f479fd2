//! The machinery the service benchmarks share (`benches/serve.rs`, `benches/pg_serve.rs`):
//! the stream of events (from the test generator), a `promo serve` child process, the
//! HTTP/1.1 client, and the closed-loop load generator with its tally and latencies.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use crate::gen;
use crate::report::{fixed, grouped, nanos_since};

pub type BoxError = Box<dyn Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// The server under test: `PROMO_BENCH_BIN`, or the binary Cargo built with this bench.
pub fn promo_bin() -> String {
    std::env::var("PROMO_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_promo").to_string())
}
/// How long a request may take before it counts as failed (the server answers `408`
/// after 10 s by default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to print its address, and then to be ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit after `SIGTERM` before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The stream.

/// The events to send, in stream order, each as the JSON object of one request.
pub struct Stream {
    pub bodies: Vec<Bytes>,
    pub ids: Vec<String>,
    /// Every k-th event is kept for the replay check.
    pub sample_every: usize,
}

impl Stream {
    /// The body of a request for events `from..to`: an object for one event of a single
    /// variant, else an array.
    pub fn body(&self, from: usize, to: usize, array: bool) -> Bytes {
        let events = self.bodies.get(from..to).unwrap_or_default();
        if !array {
            if let [one] = events {
                return one.clone();
            }
        }
        let len = events.iter().map(|b| b.len() + 1).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(len);
        out.push(b'[');
        for (i, b) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b);
        }
        out.push(b']');
        Bytes::from(out)
    }
}

/// `generate`, saying on standard output how many events are sent, how many were dropped
/// and why, and how long it took.
pub fn generate_announced(cfg: &gen::GenConfig, rules: &Path, max_samples: usize) -> Res<Stream> {
    let t = Instant::now();
    let (stream, invalid, repeated) = generate(cfg, rules, max_samples)?;
    println!(
        "stream: {} events to send, generated in {} s ({} dropped: {} the ruleset would refuse, {} repeated ids)",
        grouped(stream.bodies.len() as u64),
        fixed(t.elapsed().as_nanos(), 1_000_000_000, 1),
        grouped(invalid + repeated),
        grouped(invalid),
        grouped(repeated)
    );
    Ok(stream)
}

/// What a load bench sends: the stream (announced), and the customer snapshot the servers
/// load, written to `customers.jsonl` in a temporary directory named after `prefix` (kept
/// as long as the returned directory is).
pub struct LoadData {
    pub stream: Arc<Stream>,
    pub customers: PathBuf,
    /// Holds the snapshot until dropped; the PostgreSQL bench writes its rules here too.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

impl LoadData {
    pub fn prepare(
        cfg: &gen::GenConfig,
        rules: &Path,
        max_samples: usize,
        prefix: &str,
    ) -> Res<LoadData> {
        let stream = generate_announced(cfg, rules, max_samples)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let customers = dir.path().join("customers.jsonl");
        let mut w = std::io::BufWriter::new(File::create(&customers)?);
        gen::write_snapshot_jsonl(&mut w, cfg)?;
        std::io::Write::flush(&mut w)?;
        Ok(LoadData {
            stream: Arc::new(stream),
            customers,
            dir,
        })
    }
}

/// The load generator's runtime, on `threads` worker threads.
pub fn client_runtime(threads: usize) -> Res<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?)
}

/// Generates the stream and keeps the events the service should decide: a declared type
/// with the fields it requires, and the first occurrence of each id.
fn generate(cfg: &gen::GenConfig, rules: &Path, max_samples: usize) -> Res<(Stream, u64, u64)> {
    let ruleset = promo::rules::load_ruleset(rules)
        .map_err(|e| format!("loading {}: {e}", rules.display()))?;
    let mut seen: HashSet<String> = HashSet::with_capacity(cfg.events);
    let mut bodies = Vec::with_capacity(cfg.events);
    let mut ids = Vec::with_capacity(cfg.events);
    let (mut invalid, mut repeated) = (0u64, 0u64);
    let mut line = Vec::with_capacity(1024);
    for e in gen::Generator::new(cfg) {
        line.clear();
        gen::write_jsonl_event(&mut line, &e)?;
        while line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = std::str::from_utf8(&line)?;
        let decidable = promo::io::event_json::parse_event(text)
            .is_ok_and(|ev| promo::engine::admit::event_kind(&ruleset, &ev).is_ok());
        if !decidable {
            invalid += 1;
            continue;
        }
        if !seen.insert(e.id.clone()) {
            repeated += 1;
            continue;
        }
        bodies.push(Bytes::copy_from_slice(&line));
        ids.push(e.id);
    }
    let sample_every = (bodies.len() / max_samples).max(1);
    Ok((
        Stream {
            bodies,
            ids,
            sample_every,
        },
        invalid,
        repeated,
    ))
}

// ---------------------------------------------------------------------------------------
// The server.

/// A running `promo serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub stopped: bool,
}

/// How a server ended.
pub struct Stopped {
    pub status: Option<ExitStatus>,
    /// From `SIGTERM` to its exit.
    pub nanos: u64,
    /// It did not exit within the timeout and was killed.
    pub killed: bool,
}

impl Server {
    /// `promo serve ARGS --bind 127.0.0.1:0`, once it answers `GET /readyz`.
    pub fn start<S: AsRef<OsStr>>(rt: &Runtime, args: &[S], log: &Path) -> Res<Server> {
        let promo = promo_bin();
        let mut cmd = Command::new(&promo);
        cmd.arg("serve").args(args).arg("--bind").arg("127.0.0.1:0");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(log)?))
            .spawn()
            .map_err(|e| format!("starting {promo}: {e}"))?;
        let stdout = child.stdout.take();
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_path_buf(),
            stopped: false,
        };
        let Some(stdout) = stdout else {
            return Err("the server's standard output is not a pipe".into());
        };
        // The first line gives the address; the rest is drained so the server never blocks.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            let first = out.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(server.failed(&format!("reading its output: {e}"))),
            Err(_) => return Err(server.failed("no address printed")),
        };
        let Some(addr) = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            return Err(server.failed(&format!("unexpected first line {:?}", first.trim())));
        };
        if !addr.ip().is_loopback() {
            return Err(server.failed(&format!("listening on {addr}, not on loopback")));
        }
        server.addr = addr;
        let started = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _)) = rt.block_on(get(addr, "/readyz")) {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                server.stopped = true;
                return Err(server.failed(&format!("exited ({status})")));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(server.failed("not ready in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An error naming what went wrong, with the end of the server's log.
    pub fn failed(&mut self, what: &str) -> BoxError {
        self.kill();
        format!(
            "promo serve: {what}; the end of its log ({}):\n{}",
            self.log.display(),
            log_tail(&self.log)
        )
        .into()
    }

    /// The server's peak RSS so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The CPU time the server has taken so far (`cpu_ms`).
    pub fn cpu_ms(&self) -> Option<u64> {
        cpu_ms(&self.child.id().to_string())
    }

    /// `SIGTERM`, then waits for the exit; `SIGKILL` after the timeout.
    pub fn stop(mut self) -> Res<Stopped> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed: {sent}", self.child.id()).into());
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                return Ok(Stopped {
                    status: Some(status),
                    nanos: nanos_since(started),
                    killed: false,
                });
            }
            if started.elapsed() > STOP_TIMEOUT {
                self.kill();
                return Ok(Stopped {
                    status: None,
                    nanos: nanos_since(started),
                    killed: true,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.stopped = true;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The CPU time a process (`self` or a pid) has taken so far, user and system, in
/// milliseconds: its threads', those that ended included (Linux, 10 ms ticks).
pub fn cpu_ms(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields from the state on; the command before it may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime, fields 14 and 15 of proc(5), in ticks of 1/100 s.
    Some((ticks(11)? + ticks(12)?) * 10)
}

/// The CPU time two processes took over a window, in milliseconds: the server's, and the
/// load generator's.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSpent {
    pub server_ms: u64,
    pub client_ms: u64,
}

impl CpuSpent {
    /// Both processes' CPU time so far.
    pub fn now(server: &Server) -> Option<CpuSpent> {
        Some(CpuSpent {
            server_ms: server.cpu_ms()?,
            client_ms: cpu_ms("self")?,
        })
    }

    /// What was spent since `before`.
    pub fn since(self, before: CpuSpent) -> CpuSpent {
        CpuSpent {
            server_ms: self.server_ms.saturating_sub(before.server_ms),
            client_ms: self.client_ms.saturating_sub(before.client_ms),
        }
    }
}

/// Microseconds of CPU per event, two decimals (`-` without events or a reading).
pub fn us_per_event(ms: Option<u64>, events: u64) -> String {
    match ms {
        Some(ms) if events > 0 => fixed(u128::from(ms) * 1_000_000 / u128::from(events), 1_000, 2),
        _ => "-".to_string(),
    }
}

/// The last lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(20)..)
        .unwrap_or_default()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// The HTTP client.

pub type Sender = SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Res<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request and its whole answer.
pub async fn exchange(
    sender: &mut Sender,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
) -> Res<(StatusCode, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    sender.ready().await?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A `GET` on a connection of its own.
pub async fn get(addr: SocketAddr, path: &str) -> Res<(StatusCode, Bytes)> {
    let mut sender = connect(addr).await?;
    exchange(&mut sender, addr, Method::GET, path, Bytes::new()).await
}

/// The result of one event, as much of it as the bench reads, borrowed from the answer's
/// bytes where it can be: the load generator shares the machine with the server, so what
/// it spends on reading answers is taken from the figures.
#[derive(Deserialize)]
pub struct Answer<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(default)]
    pub replay: bool,
    /// Kept as written, read as values only for the sampled events.
    #[serde(borrow)]
    pub decisions: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct DecisionTally<'a> {
    #[serde(default, borrow)]
    pub rule: Cow<'a, str>,
    #[serde(default, borrow)]
    pub decision: Cow<'a, str>,
    #[serde(default)]
    pub coupons: Vec<IgnoredAny>,
}

/// What one connection (or a whole window, once merged) measured.
#[derive(Default)]
pub struct Tally {
    /// Latency of each answered request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Requests answered `200` with the results of their events.
    pub requests: u64,
    pub events: u64,
    pub failed: u64,
    pub decisions: u64,
    pub coupons: u64,
    /// Answers `"replay": true` (none expected: every id is fresh).
    pub replays: u64,
    /// Grant decisions answered, by rule.
    pub grants: BTreeMap<String, u64>,
    /// The decisions answered for sampled events, by stream index.
    pub samples: Vec<(usize, serde_json::Value)>,
    /// The first failures, to show.
    pub errors: Vec<String>,
}

impl Tally {
    pub fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.errors.len() < 3 {
            self.errors.push(what);
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.requests += other.requests;
        self.events += other.events;
        self.failed += other.failed;
        self.decisions += other.decisions;
        self.coupons += other.coupons;
        self.replays += other.replays;
        for (rule, n) in other.grants {
            *self.grants.entry(rule).or_default() += n;
        }
        self.samples.extend(other.samples);
        for e in other.errors {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
    }

    /// Counts the answer to events `from..to`; an error if it is not their results in order.
    pub fn answered(
        &mut self,
        stream: &Stream,
        from: usize,
        to: usize,
        array: bool,
        body: &[u8],
    ) -> Res<()> {
        let answers: Vec<Answer> = if array {
            serde_json::from_slice(body)?
        } else {
            vec![serde_json::from_slice(body)?]
        };
        if answers.len() != to - from {
            return Err(format!("{} results for {} events", answers.len(), to - from).into());
        }
        for (i, a) in (from..to).zip(&answers) {
            let id = stream.ids.get(i).map_or("", String::as_str);
            if a.event_id != id {
                return Err(
                    format!("result for `{}` where `{id}` was expected", a.event_id).into(),
                );
            }
        }
        // Counted only once the whole answer is the results of its events.
        for (i, a) in (from..to).zip(&answers) {
            if a.replay {
                self.replays += 1;
            }
            let raw = a.decisions.map_or("[]", RawValue::get);
            let decisions: Vec<DecisionTally> = serde_json::from_str(raw)?;
            self.decisions += decisions.len() as u64;
            for d in &decisions {
                self.coupons += d.coupons.len() as u64;
                if d.decision == "grant" {
                    match self.grants.get_mut(d.rule.as_ref()) {
                        Some(n) => *n += 1,
                        None => {
                            self.grants.insert(d.rule.to_string(), 1);
                        }
                    }
                }
            }
            // The sampled events' decisions, kept whole for the replay check.
            if i % stream.sample_every == 0 {
                self.samples.push((i, serde_json::from_str(raw)?));
            }
        }
        self.requests += 1;
        self.events += (to - from) as u64;
        Ok(())
    }
}

/// What the connections of a window share.
pub struct Window {
    pub stream: Arc<Stream>,
    /// The next event of the stream to send.
    pub next: AtomicUsize,
    /// Where the window's part of the stream ends.
    pub end: usize,
    pub deadline: Instant,
    pub batch: usize,
    pub array: bool,
}

/// One connection's closed loop: the next events, one request at a time.
pub async fn connection(w: Arc<Window>, addr: SocketAddr) -> Tally {
    let mut t = Tally::default();
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            t.fail(format!("connecting: {e}"));
            return t;
        }
    };
    loop {
        if Instant::now() >= w.deadline {
            break;
        }
        let from = w.next.fetch_add(w.batch, Ordering::Relaxed);
        if from >= w.end {
            break;
        }
        let to = (from + w.batch).min(w.end);
        let body = w.stream.body(from, to, w.array);
        let sent = Instant::now();
        let res = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut sender, addr, Method::POST, "/v1/events", body),
        )
        .await;
        let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        match res {
            Ok(Ok((StatusCode::OK, answer))) => {
                match t.answered(&w.stream, from, to, w.array, &answer) {
                    Ok(()) => t.latencies_us.push(us),
                    Err(e) => t.fail(format!("events {from}..{to}: {e}")),
                }
            }
            Ok(Ok((status, answer))) => {
                let text = String::from_utf8_lossy(answer.get(..300).unwrap_or(&answer));
                t.fail(format!("events {from}..{to}: {status} {text}"));
            }
            Ok(Err(e)) => {
                t.fail(format!("events {from}..{to}: {e}"));
                match connect(addr).await {
                    Ok(s) => sender = s,
                    Err(_) => break,
                }
            }
            Err(_) => {
                t.fail(format!(
                    "events {from}..{to}: no answer in {REQUEST_TIMEOUT:?}"
                ));
                match connect(addr).await {
                    Ok(s) => sender = s,
                    Err(_) => break,
                }
            }
        }
    }
    t
}

/// What a window measured: the merged tally and its wall time.
pub struct Measured {
    pub tally: Tally,
    pub nanos: u64,
    /// Where the window stopped in the stream.
    pub next: usize,
}

/// How a window sends: over how many connections, to which servers, how many events per
/// request.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    /// Connections in all; connection `i` goes to `addrs[i % addrs.len()]`.
    pub conns: usize,
    pub addrs: &'a [SocketAddr],
    /// Events per request: 1 sends an object, more an array.
    pub batch: usize,
}

/// Runs `load.conns` closed loops over events `from..end` until they are used up or
/// `duration` is over.
pub async fn window(
    stream: &Arc<Stream>,
    load: Load<'_>,
    from: usize,
    end: usize,
    duration: Duration,
) -> Measured {
    let started = Instant::now();
    let w = Arc::new(Window {
        stream: Arc::clone(stream),
        next: AtomicUsize::new(from),
        end,
        deadline: started + duration,
        batch: load.batch,
        array: load.batch > 1,
    });
    let tasks: Vec<_> = (0..load.conns)
        .filter_map(|i| load.addrs.get(i % load.addrs.len().max(1)).copied())
        .map(|addr| tokio::spawn(connection(Arc::clone(&w), addr)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally.fail(format!("a connection's task failed: {e}")),
        }
    }
    tally.latencies_us.sort_unstable();
    Measured {
        tally,
        nanos: nanos_since(started),
        next: w.next.load(Ordering::Relaxed).min(end),
    }
}

// ---------------------------------------------------------------------------------------
// The report.

/// A percentile of sorted latencies (`per_10k` of 10,000: 5,000 is the median).
pub fn percentile_us(sorted: &[u32], per_10k: usize) -> Option<u32> {
    let rank = (sorted.len() * per_10k).div_ceil(10_000).max(1);
    sorted.get(rank - 1).copied()
}

/// Microseconds as milliseconds, two decimals.
pub fn ms(us: Option<u32>) -> String {
    us.map_or("-".to_string(), |us| fixed(us.into(), 1_000, 2))
}
