//! A throwaway PostgreSQL cluster of the local server binaries, on a free loopback port,
//! stopped and removed on drop: shared by the integration tests (`tests/it/pg.rs`) and the
//! shared-state benchmark (`benches/pg_serve.rs`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's postgresql-15 puts the server binaries.
const DEBIAN_BINDIR: &str = "/usr/lib/postgresql/15/bin";
/// The unprivileged user the server runs as when we run as root.
const SERVER_USER: &str = "nobody";
/// The most initdb or pg_ctl may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A running cluster: `initdb -A trust -U promo` in a temporary directory, started with its
/// socket there and TCP on 127.0.0.1:`port`.
pub struct LocalCluster {
    bindir: PathBuf,
    /// Holds the data directory, the socket directory and the server's log.
    dir: tempfile::TempDir,
    as_user: Option<&'static str>,
    pub port: u16,
}

impl LocalCluster {
    /// initdb, then start on a free port with the server options `settings` (another
    /// process may take the port between our probe and the server's bind: then a new port,
    /// up to three times). PostgreSQL refuses to run as root: as root, the cluster belongs
    /// to `nobody`.
    pub fn start(bindir: PathBuf, prefix: &str, settings: &str) -> Result<LocalCluster, String> {
        let failed = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| failed("a temporary directory", &e))?;
        let as_user = is_root().then_some(SERVER_USER);
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).map_err(|e| failed("the socket directory", &e))?;
        if let Some(user) = as_user {
            let out = Command::new("id")
                .args(["-u", user])
                .output()
                .map_err(|e| failed("id", &e))?;
            let uid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|e| failed("the uid of nobody", &e))?;
            for path in [dir.path(), &sock] {
                std::os::unix::fs::chown(path, Some(uid), None).map_err(|e| failed("chown", &e))?;
            }
        }
        let mut cluster = LocalCluster {
            bindir,
            dir,
            as_user,
            port: 0,
        };
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(cluster.data()).args([
            "-A",
            "trust",
            "-U",
            "promo",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run_bounded(&mut initdb, COMMAND_TIMEOUT).map_err(|e| failed("initdb", &e))?;
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(|e| failed("a free port", &e))?;
            let mut start = cluster.command("pg_ctl");
            start
                .arg("-D")
                .arg(cluster.data())
                .arg("-l")
                .arg(cluster.log())
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 {settings}",
                    sock.display()
                ))
                .args(["-w", "-t", "60", "start"]);
            match run_bounded(&mut start, COMMAND_TIMEOUT) {
                Ok(()) => {
                    cluster.port = port;
                    return Ok(cluster);
                }
                Err(e) => {
                    let log = std::fs::read_to_string(cluster.log()).unwrap_or_default();
                    last = format!("{e}\nserver log:\n{log}");
                }
            }
        }
        Err(format!("pg_ctl start failed three times: {last}"))
    }

    /// A command of the server binaries, run as the server's user.
    pub fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // The server's user may not be allowed into our working directory.
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        if let Err(e) = run_bounded(&mut stop, Duration::from_secs(40)) {
            eprintln!("stopping the PostgreSQL cluster: {e}");
        }
    }
}

/// The directory holding initdb and pg_ctl, if any.
pub fn bindir() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let debian = PathBuf::from(DEBIAN_BINDIR);
    if has(&debian) {
        return Some(debian);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && has(&dir)).then_some(dir)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A loopback port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs `cmd` to its end within `timeout` (killed past it); its output in the error.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let (ok, output) = wait_bounded(child, timeout).map_err(|e| format!("{cmd:?}: {e}"))?;
    if ok {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {output}"))
    }
}

/// Waits for `child` at most `timeout` (killed past it): whether it succeeded, and its
/// output.
pub fn wait_bounded(mut child: Child, timeout: Duration) -> Result<(bool, String), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running after {}s; killed",
                    timeout.as_secs()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}
