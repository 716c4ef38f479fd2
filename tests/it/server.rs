/*!
Starting the real `promo serve` binary on loopback for a test, and talking to it.

A [`Serve`] is one command line; [`Serve::start`] spawns it with `--bind 127.0.0.1:0`, reads
the first line of standard output (`listening on http://127.0.0.1:PORT`), waits for
`GET /readyz` and hands back a [`Server`], which kills the process when dropped. Standard
error (the logs) goes to a file next to the test's other files and is quoted in every
failure. Every wait here is bounded: poll every 100 ms for at most [`WAIT`].
*/

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any wait of these tests lasts: the first line, readiness, a reload, an exit.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a wait polls.
pub const POLL: Duration = Duration::from_millis(100);

/// The date tests pin coupon statuses to (`--today`).
pub const TODAY: &str = "2020-01-02";

/// One `promo serve` command line.
#[derive(Debug, Clone)]
pub struct Serve {
    rules: PathBuf,
    log: PathBuf,
    args: Vec<OsString>,
}

impl Serve {
    /// `promo serve --rules RULES --bind 127.0.0.1:0 --today 2020-01-02`, logs (standard
    /// error) written to `log`.
    pub fn new(rules: &Path, log: &Path) -> Serve {
        Serve {
            rules: rules.to_path_buf(),
            log: log.to_path_buf(),
            args: Vec::new(),
        }
    }

    /// Adds `--name value`.
    pub fn opt(mut self, name: &str, value: impl Into<OsString>) -> Serve {
        self.args.push(name.into());
        self.args.push(value.into());
        self
    }

    /// `--state DIR`.
    pub fn state(self, dir: &Path) -> Serve {
        self.opt("--state", dir)
    }

    /// `--customers FILE`.
    pub fn customers(self, file: &Path) -> Serve {
        self.opt("--customers", file)
    }

    /// Spawns the server, reads its address from the first stdout line and waits until
    /// `GET /readyz` answers 200. Panics (with the logs) when it does not come up in time.
    pub fn start(&self) -> Server {
        let mut server = self.spawn();
        server.wait_ready();
        server
    }

    /// Spawns the server and reads its address from the first stdout line, the moment it
    /// says it listens: without waiting for it to be ready.
    pub fn spawn(&self) -> Server {
        // Appends, so the logs of a restarted server follow those of the first run.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
        cmd.arg("serve")
            .arg("--rules")
            .arg(&self.rules)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--today")
            .arg(TODAY)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keeps reading so that the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut server = Server {
            child,
            base: String::new(),
            log: self.log.clone(),
            client: Client::new(""),
        };
        let line = match rx.recv_timeout(WAIT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading stdout of {cmd:?}: {e}\n{}", server.logs()),
            Err(_) => panic!(
                "no first line on stdout of {cmd:?} within {WAIT:?}\n{}",
                server.logs()
            ),
        };
        let addr = line.trim_end();
        let Some(port) = addr.strip_prefix("listening on http://127.0.0.1:") else {
            panic!(
                "the first stdout line of {cmd:?} is {line:?}, expected `listening on http://127.0.0.1:PORT`\n{}",
                server.logs()
            );
        };
        assert!(
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port != "0",
            "not a port in {line:?}"
        );
        server.base = format!("http://127.0.0.1:{port}");
        server.client = Client::new(&server.base);
        server
    }
}

/// A running `promo serve`, killed (SIGKILL) when dropped if still running.
pub struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    client: Client,
}

impl Server {
    /// The `127.0.0.1:PORT` the server listens on, for raw connections.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A client of this server (cheap to clone, shareable between threads).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The server's logs so far, for failure messages.
    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- server logs ({}), last {} lines:\n{}",
            self.log.display(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// Polls `GET /readyz` until it answers 200.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited ({status}) before ready\n{}", self.logs());
            }
            if let Ok(r) = self.client.try_get("/readyz") {
                if r.status == 200 {
                    return;
                }
            }
            if start.elapsed() > WAIT {
                panic!("GET /readyz not 200 within {WAIT:?}\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no handler runs, nothing is flushed.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM with the `kill` command (the crate forbids unsafe code).
    pub fn sigterm(&self) {
        self.signal("-TERM");
    }

    /// Sends a signal (`-TERM`, `-HUP`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {}: {status}", self.pid());
    }

    /// Waits (at most [`WAIT`]) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > WAIT {
                panic!("the server did not exit within {WAIT:?}\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// `GET /v1/ruleset`, asserted 200.
    pub fn ruleset(&self) -> Value {
        let r = self.client.get("/v1/ruleset");
        assert_eq!(r.status, 200, "GET /v1/ruleset: {}", r.body);
        r.json()
    }

    /// The live ruleset's version.
    pub fn version(&self) -> String {
        let v = self.ruleset();
        v["version"]
            .as_str()
            .unwrap_or_else(|| panic!("no version in {v}"))
            .to_owned()
    }

    /// `GET /metrics`, asserted 200.
    pub fn metrics(&self) -> String {
        let r = self.client.get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
        r.body
    }

    /// Polls `GET /v1/ruleset` until `done` holds for it; the last answer.
    pub fn wait_ruleset(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let r = self.ruleset();
            if done(&r) {
                return r;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "GET /v1/ruleset: not {what} within {WAIT:?}; last answer:\n{r:#}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer: status and body text.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: String,
}

impl Resp {
    /// The body as JSON; panics (with the body) when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} with a body that is not JSON ({e}): {:?}",
                self.status, self.body
            )
        })
    }
}

/// A blocking HTTP/1.1 client of one server (ureq); 4xx and 5xx are answers, not errors.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn new(base: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .new_agent();
        Client {
            agent,
            base: base.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn read(resp: ureq::http::Response<ureq::Body>) -> Result<Resp, String> {
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .read_to_string()
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Resp { status, body })
    }

    /// `GET path`; a transport error is an `Err`.
    pub fn try_get(&self, path: &str) -> Result<Resp, String> {
        let resp = self
            .agent
            .get(self.url(path))
            .call()
            .map_err(|e| e.to_string())?;
        Client::read(resp)
    }

    /// `POST path` with `body` as `application/json`; a transport error is an `Err`.
    pub fn try_post_raw(&self, path: &str, body: &str) -> Result<Resp, String> {
        let resp = self
            .agent
            .post(self.url(path))
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        Client::read(resp)
    }

    /// `GET path`.
    #[track_caller]
    pub fn get(&self, path: &str) -> Resp {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST path` with a JSON body given as text.
    #[track_caller]
    pub fn post_raw(&self, path: &str, body: &str) -> Resp {
        self.try_post_raw(path, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST path` with `body`.
    #[track_caller]
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_raw(path, &body.to_string())
    }

    /// `POST path` with no body.
    #[track_caller]
    pub fn post_empty(&self, path: &str) -> Resp {
        let resp = self
            .agent
            .post(self.url(path))
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Client::read(resp).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST /v1/events` with one event, asserted 200; the result.
    #[track_caller]
    pub fn decide(&self, event: &Value) -> Value {
        let r = self.post("/v1/events", event);
        assert_eq!(r.status, 200, "POST /v1/events {event}: {}", r.body);
        r.json()
    }

    /// `POST /v1/events` with an array of events, asserted 200; the results.
    #[track_caller]
    pub fn decide_all(&self, events: &[Value]) -> Vec<Value> {
        let r = self.post("/v1/events", &Value::Array(events.to_vec()));
        assert_eq!(
            r.status,
            200,
            "POST /v1/events [{} events]: {}",
            events.len(),
            r.body
        );
        match r.json() {
            Value::Array(results) => results,
            other => panic!("an array of events answered a non-array: {other}"),
        }
    }
}

/// The value of one sample of `/metrics` text: the line of metric `name` whose labels
/// include every `key="value"` of `labels`. `None` when there is no such line.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels_text, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.find('}')?;
                (&r[..end], r[end + 1..].trim())
            }
            None if rest.starts_with(' ') => ("", rest.trim()),
            None => return None,
        };
        let all = labels
            .iter()
            .all(|(k, v)| labels_text.contains(&format!("{k}=\"{v}\"")));
        if !all {
            return None;
        }
        let value = value.split_whitespace().next()?;
        let value = value.strip_suffix(".0").unwrap_or(value);
        value.parse().ok()
    })
}
