//! Starting the real `ringgate` binary: config in a temp file, stdout/stderr drained by threads,
//! the listening (and admin) addresses parsed from the banners, the child killed on drop; and
//! small helpers to call the admin listener.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{req, Client};

/// How long the binary may take to print every `listening on` banner.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const BANNER: &str = "listening on http://";
/// The banner of a TLS listener (`tls = { ... }` in its table).
const TLS_BANNER: &str = "listening on https://";
/// Printed once when the config has an `[admin]` section.
const ADMIN_BANNER: &str = "admin on http://";

/// The I/O driver the gateway runs on (`--driver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Uring,
    Epoll,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Uring => "uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Path of the binary under test: `$RINGGATE_BIN` if set (e.g. to test a release build), else
/// the binary cargo built for this test run.
pub fn binary() -> PathBuf {
    std::env::var_os("RINGGATE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringgate")))
}

/// A unique path in the temp dir (process id + counter), for config files.
pub fn temp_path(stem: &str, ext: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("ringgate-test-{}-{n}-{stem}.{ext}", std::process::id()))
}

/// A file removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(stem: &str, ext: &str, contents: &str) -> TempFile {
        let path = temp_path(stem, ext);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write temp file {}: {e}", path.display()));
        TempFile { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Captured output lines of a child, shared with the drain threads.
type Log = Arc<Mutex<Vec<String>>>;

fn push_log(log: &Log, line: String) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    /// Address of the first listener.
    pub addr: SocketAddr,
    /// Addresses of every listener, in banner order.
    pub addrs: Vec<SocketAddr>,
    /// Address of the admin listener, from its banner (only when the config has `[admin]`).
    admin: Option<SocketAddr>,
    log: Log,
    exit: Option<ExitStatus>,
    /// Shared with the gateways started by [`Gateway::start_again`].
    config: Arc<TempFile>,
}

impl Gateway {
    /// Writes `config` to a temp file, runs `ringgate run --config FILE --driver D` and waits for
    /// one `listening on` banner per `[[listeners]]` table, and for the `admin on` banner when the
    /// config has an `[admin]` section.
    pub fn start(config: &str, driver: Driver) -> Gateway {
        Gateway::start_with_env(config, driver, &[])
    }

    pub fn start_with_env(config: &str, driver: Driver, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_custom(config, driver.as_str(), env, &[])
    }

    /// Like [`Gateway::start_with_env`], with the `--driver` value as a string (e.g. `auto`) and
    /// the binary run through `wrapper` when it is not empty: `wrapper[0] wrapper[1..] BINARY run
    /// ...`. For example `["sh", "-c", "ulimit -n 48 && exec \"$0\" \"$@\""]` lowers the
    /// open-file limit; `exec` keeps the process id, so [`Gateway::pid`] is the gateway's.
    pub fn start_custom(config: &str, driver: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Gateway {
        let file = Arc::new(TempFile::new("config", "toml", config));
        Gateway::launch(file, config, driver, env, wrapper, &[])
    }

    /// Like [`Gateway::start`], with `args` after `run --config FILE --driver D`.
    pub fn start_args(config: &str, driver: Driver, args: &[&str]) -> Gateway {
        let file = Arc::new(TempFile::new("config", "toml", config));
        Gateway::launch(file, config, driver.as_str(), &[], &[], args)
    }

    /// Starts another process on this gateway's config file as it is now (see
    /// [`Gateway::write_config`]), with `args` after `run --config FILE --driver D`: e.g.
    /// `--takeover` for a successor that takes the listening sockets over. The file stays until
    /// both gateways are dropped.
    pub fn start_again(&self, driver: Driver, args: &[&str]) -> Gateway {
        let path = self.config_path();
        let config = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read config {}: {e}", path.display()));
        Gateway::launch(Arc::clone(&self.config), &config, driver.as_str(), &[], &[], args)
    }

    /// Runs `[wrapper...] BINARY run --config FILE --driver D ARGS...` (`config` is the text of
    /// `file`) and waits for the banners (see [`Gateway::start`]).
    fn launch(
        file: Arc<TempFile>,
        config: &str,
        driver: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
        args: &[&str],
    ) -> Gateway {
        let expected = config.lines().filter(|l| l.trim() == "[[listeners]]").count().max(1);
        let want_admin = config.lines().any(|l| l.trim() == "[admin]");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(binary()),
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(binary());
                c
            }
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&file.path)
            .arg("--driver")
            .arg(driver)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {wrapper:?} {}: {e}", binary().display()));
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("child stdout is piped");
        let stderr = child.stderr.take().expect("child stderr is piped");
        let out_log = Arc::clone(&log);
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        push_log(&out_log, format!("stdout: {text}"));
                        // The receiver is gone once startup is over; later lines are only logged.
                        let _ = tx.send(text);
                    }
                }
            }
        });
        let err_log = Arc::clone(&log);
        thread::spawn(move || drain_lines(stderr, &err_log, "stderr"));

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut addrs = Vec::new();
        let mut admin = None;
        while addrs.len() < expected || (want_admin && admin.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_banner(&line) {
                        addrs.push(addr);
                    } else if let Some(addr) = parse_addr_after(&line, ADMIN_BANNER) {
                        admin = Some(addr);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let admin_note = if want_admin && admin.is_none() {
                        format!(", and no `{ADMIN_BANNER}` line")
                    } else {
                        String::new()
                    };
                    panic!(
                        "ringgate ({driver}) printed {} of {expected} `{BANNER}` lines{admin_note} within \
                         {STARTUP_TIMEOUT:?}; output:\n{}\nconfig:\n{config}",
                        addrs.len(),
                        snapshot(&log)
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
                    // Give the stderr thread a moment to record the last lines.
                    thread::sleep(Duration::from_millis(50));
                    panic!(
                        "ringgate ({driver}) closed stdout before listening (exit: {status:?}); \
                         output:\n{}\nconfig:\n{config}",
                        snapshot(&log)
                    );
                }
            }
        }
        Gateway { child, addr: addrs[0], addrs, admin, log, exit: None, config: file }
    }

    /// The config file the gateway runs with (`run --config`); rewrite it to test reloads.
    pub fn config_path(&self) -> &Path {
        &self.config.path
    }

    /// Replaces the config file's contents (one `write`, not atomic: readers may see it half
    /// written, which is what a file watch must cope with).
    pub fn write_config(&self, contents: &str) {
        let path = self.config_path();
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("rewrite config {}: {e}", path.display()));
    }

    /// The admin listener's address, when the config has an `[admin]` section.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The admin listener's address; panics when the gateway has none.
    pub fn admin(&self) -> SocketAddr {
        self.admin.unwrap_or_else(|| panic!("this gateway has no admin listener (no [admin] section)"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new client connected to the first listener.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Everything the process printed so far (stdout and stderr, prefixed).
    pub fn output(&self) -> String {
        snapshot(&self.log)
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("run kill -{name}: {e}"));
        assert!(status.success(), "kill -{name} {} failed: {status}", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = wait_with_deadline(&mut self.child, timeout);
        }
        self.exit
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Waits up to `timeout` for a line of the output (see [`Gateway::output`]) containing
    /// `needle`; returns whether one appeared.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().lines().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time used so far by all threads of the process: utime + stime (fields 14 and 15 of
    /// /proc/PID/stat), in clock ticks (see `libc::sysconf(_SC_CLK_TCK)`).
    pub fn cpu_ticks(&self) -> u64 {
        let path = format!("/proc/{}/stat", self.pid());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        // Field 2 (comm) is parenthesised and may hold spaces; count from the last ')'. The
        // first field after it is field 3 (state), so utime (14) is the 12th.
        let rest = text.rfind(')').map(|i| &text[i + 1..]).unwrap_or_else(|| panic!("no ')' in {path}: {text}"));
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> u64 {
            fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no field {n} in {path}: {text}"))
        };
        field(14) + field(15)
    }

    /// Peak resident set size (`VmHWM` in /proc/PID/status), in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Current resident set size (`VmRSS`), in KiB.
    pub fn vm_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- ringgate output (pid {}) ----\n{}\n---- end of ringgate output ----",
                self.child.id(),
                self.output()
            );
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {path}:\n{text}"))
}

fn drain_lines(stream: impl Read, log: &Log, prefix: &str) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => push_log(log, format!("{prefix}: {}", String::from_utf8_lossy(&line).trim_end())),
        }
    }
}

fn snapshot(log: &Log) -> String {
    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
}

/// Parses the address out of a line containing `listening on http://IP:PORT` (or `https://`).
pub fn parse_banner(line: &str) -> Option<SocketAddr> {
    parse_addr_after(line, BANNER).or_else(|| parse_addr_after(line, TLS_BANNER))
}

/// Parses the `IP:PORT` that follows `prefix` (e.g. `admin on http://`) in `line`.
fn parse_addr_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))).unwrap_or(rest.len());
    rest[..end].trim_end_matches('/').parse().ok()
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Runs the binary with `args` to completion (killed after `timeout`), capturing its output.
pub fn run_cli(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", binary().display()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_thread = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match wait_with_deadline(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`ringgate {}` did not exit within {timeout:?}", args.join(" "));
        }
    };
    Output { status, stdout: out_thread.join().unwrap_or_default(), stderr: err_thread.join().unwrap_or_default() }
}

/// `path` as a &str for command lines.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Sends `METHOD path` (no body) to an admin listener on a new connection and returns the status
/// and the body as text.
pub fn admin_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut c = Client::connect(addr);
    let headers: &[(&str, &str)] =
        if method == "GET" { &[("Connection", "close")] } else { &[("Content-Length", "0"), ("Connection", "close")] };
    let resp = c.request(&req(method, path, headers, b""));
    (resp.status, resp.body_str())
}

/// `POST path` on the admin listener (e.g. `/reload`): status and body.
pub fn admin_post(addr: SocketAddr, path: &str) -> (u16, String) {
    admin_request(addr, "POST", path)
}

/// `GET path` on the admin listener (e.g. `/status`): status and body.
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    admin_request(addr, "GET", path)
}
