//! The runtime around the request path: refusing a port another process already listens on
//! (unless `reuse_port_group = true`), IPv6 listeners, which I/O driver runs (and the `auto`
//! fallback to epoll), and the accept loop backing off on EMFILE instead of spinning or dying.
//!
//! The per-worker connection cap (accept pauses, the waiting client is neither answered nor
//! reset, then served) is tested in limits.rs (`max_connections_per_worker_queues_second`).

#[macro_use]
mod support;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::gateway::path_str;
use support::*;

/// Makes the info-level driver lines appear whatever RINGGATE_LOG the test run inherited.
const INFO_LOG: (&str, &str) = ("RINGGATE_LOG", "info");

/// Lines of `gw`'s stderr.
fn stderr_lines(gw: &Gateway) -> Vec<String> {
    gw.output().lines().filter_map(|l| l.strip_prefix("stderr: ")).map(str::to_string).collect()
}

/// A GET through `addr` to the echo upstream answers 200 with the echoed target.
fn assert_proxies(addr: SocketAddr, path: &str) {
    let resp = Client::connect(addr).request(&get(path));
    assert_eq!(resp.status, 200, "GET {path} via {addr}: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", path, b""), "GET {path} via {addr}");
}

/// A second ringgate on a port the first one listens on must refuse to start (monoio's own bind
/// sets SO_REUSEPORT, so without the probe it would silently share the port), and say why;
/// with `reuse_port_group = true` it may join on purpose.
fn second_instance_refused_without_reuse_port_group(driver: Driver) {
    let up = TestUpstream::echo();
    let first = ConfigBuilder::proxy_to(up.addr()).start(driver);
    assert_ne!(first.addr.port(), 0, "the banner must report the real port");
    let taken = first.addr.to_string();

    let second = ConfigBuilder::proxy_to(up.addr()).no_listeners().listener(&taken).render();
    let file = TempFile::new("second", "toml", &second);
    // A gateway that shares the port anyway keeps running: run_cli then fails on its deadline.
    let out = run_cli(&["run", "--config", path_str(&file.path), "--driver", driver.as_str()], Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second instance on {taken} exited with {}", out.status);
    assert!(!stdout.contains("listening on"), "the second instance claimed to listen:\n{stdout}");
    assert!(
        stderr.contains("already in use") && stderr.contains("reuse_port_group"),
        "the error should say the address is in use and name reuse_port_group:\n{stderr}"
    );
    assert_proxies(first.addr, "/first-after-refusal");

    let third = ConfigBuilder::proxy_to(up.addr())
        .no_listeners()
        .listener_with(&taken, "reuse_port_group = true")
        .start(driver);
    assert_eq!(third.addr, first.addr, "the third instance should share the first one's port");
    // The kernel spreads new connections over both processes; every one must be served.
    for i in 0..6 {
        assert_proxies(first.addr, &format!("/shared-{i}"));
    }
    drop(third);
    // A killed io_uring process releases its sockets only when the kernel tears its ring down,
    // shortly after the exit: until then its listener stays in the SO_REUSEPORT group and a
    // connection hashed to it is reset. So: retry until the first instance answers alone.
    let deadline = Instant::now() + PROMPT;
    loop {
        match try_get(first.addr, "/first-after-third-exits") {
            Ok(resp) => {
                assert_eq!(resp.status, 200, "{}", resp.head_str());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying after the third instance exited: {e}");
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the first instance stopped serving after the third exited: {e}"),
        }
    }
}

/// One GET on a new connection, errors returned (a closed connection is an error too).
fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut c = Client::try_connect(addr)?;
    c.try_send(&get(path))?;
    c.try_read_response_to("GET", None)?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a response"))
}

/// A listener on the IPv6 loopback serves requests; X-Forwarded-For carries the bare IPv6
/// address (no brackets, not IPv4-mapped).
fn ipv6_listener(driver: Driver) {
    // Machines without an IPv6 loopback (IPv6 disabled in the kernel or the container) cannot
    // run this test: it notes that and passes.
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!("note: skipping ipv6_listener, cannot bind [::1]:0 here: {e}");
        return;
    }
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).no_listeners().listener("[::1]:0").start(driver);
    assert!(gw.addr.is_ipv6() && gw.addr.ip().is_loopback(), "banner address {}", gw.addr);
    assert_ne!(gw.addr.port(), 0);
    assert_proxies(gw.addr, "/v6");
    let seen = up.wait_requests(1, PROMPT);
    let xff = support::http::header_list(&seen[0].headers, "x-forwarded-for");
    assert_eq!(xff, ["::1"], "X-Forwarded-For for a client on [::1]:\n{}", seen[0].head_str());
}

/// Each worker logs the driver it really runs on, and `--driver` is obeyed.
fn driver_is_logged(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start_with_env(driver, &[INFO_LOG]);
    let (want, other) = match driver {
        Driver::Uring => ("driver=io_uring", "driver=epoll"),
        Driver::Epoll => ("driver=epoll", "driver=io_uring"),
    };
    // The worker logs from its own thread, possibly after the banner.
    assert!(gw.wait_output(want, PROMPT), "no `{want}` line within {PROMPT:?}:\n{}", gw.output());
    assert_proxies(gw.addr, "/driver");
    let lines = stderr_lines(&gw);
    assert!(lines.iter().any(|l| l.contains(want)), "`{want}` is not on stderr:\n{}", gw.output());
    assert!(!lines.iter().any(|l| l.contains(other)), "`{other}` logged with --driver {driver:?}:\n{}", gw.output());
}

/// `--driver auto` where io_uring is unavailable (monoio's detection forced off) says so and
/// runs on epoll.
#[test]
fn auto_falls_back_to_epoll_when_uring_unavailable() {
    let up = TestUpstream::echo();
    let gw =
        ConfigBuilder::proxy_to(up.addr()).start_custom("auto", &[("MONOIO_FORCE_LEGACY_DRIVER", "1"), INFO_LOG], &[]);
    assert!(gw.wait_output("driver=epoll", PROMPT), "no `driver=epoll` line:\n{}", gw.output());
    assert_proxies(gw.addr, "/auto");
    let lines = stderr_lines(&gw);
    assert!(lines.iter().any(|l| l.contains("falling back to epoll")), "no fallback warning:\n{}", gw.output());
    assert!(lines.iter().any(|l| l.contains("driver=epoll")), "`driver=epoll` is not on stderr:\n{}", gw.output());
    assert!(!lines.iter().any(|l| l.contains("driver=io_uring")), "io_uring used anyway:\n{}", gw.output());
}

/// Open-file limit of the gateway in [`accept_recovers_from_emfile`]: enough to start (stdio,
/// listener, ring or epoll fd, a few internal descriptors), far below [`EMFILE_CLIENTS`].
const EMFILE_NOFILE: u64 = 48;
const EMFILE_CLIENTS: usize = 80;

/// Clock ticks per second, the unit of /proc/PID/stat times.
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The soft `Max open files` limit of `pid`.
fn open_file_limit(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/limits");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `Max open files` in {path}:\n{text}"))
}

/// When accept fails with EMFILE the gateway stays up, backs off instead of spinning on the
/// still-readable listener, says so on stderr, and serves again once descriptors are free.
fn accept_recovers_from_emfile(driver: Driver) {
    let up = TestUpstream::echo();
    let script = format!("ulimit -n {EMFILE_NOFILE} && exec \"$0\" \"$@\"");
    let mut gw = ConfigBuilder::proxy_to(up.addr())
        .workers(1)
        // Idle connections must hold their descriptors for the whole test.
        .limit("header_read_timeout = \"60s\"")
        .start_custom(driver.as_str(), &[], &["sh", "-c", &script]);
    assert_eq!(open_file_limit(gw.pid()), EMFILE_NOFILE, "test setup: the ulimit did not reach the gateway");

    let clients: Vec<TcpStream> = (0..EMFILE_CLIENTS)
        .map(|i| {
            TcpStream::connect_timeout(&gw.addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect client {i} to {}: {e}", gw.addr))
        })
        .collect();
    assert!(
        gw.wait_output("accept failed", PROMPT),
        "{EMFILE_CLIENTS} connections with {EMFILE_NOFILE} descriptors, yet no `accept failed` log:\n{}",
        gw.output()
    );
    assert!(gw.is_running(), "the gateway died on EMFILE:\n{}", gw.output());
    let lines = stderr_lines(&gw);
    assert!(
        lines.iter().any(|l| l.contains("accept failed") && l.contains("os error 24")),
        "the accept error should be EMFILE (os error 24):\n{}",
        gw.output()
    );

    // Still saturated: a gateway that retries accept at once burns a core here.
    let hz = clock_ticks_per_second();
    let before = gw.cpu_ticks();
    // A deliberate wait: CPU use is measured over this window.
    thread::sleep(Duration::from_secs(1));
    let used = gw.cpu_ticks() - before;
    assert!(gw.is_running(), "the gateway died while out of descriptors:\n{}", gw.output());
    assert!(used < hz / 2, "the gateway used {used} of {hz} clock ticks in 1 s while out of descriptors (spinning?)");

    drop(clients);
    let mut c = Client::connect(gw.addr);
    c.set_read_timeout(PROMPT);
    let resp = c.request(&get("/after-emfile"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/after-emfile", b""));
}

/// CPUs each thread of `pid` may run on, by thread name (from /proc/PID/task/*/status).
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir").flatten() {
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if let (Some(name), Some(cpus)) = (field("Name:"), field("Cpus_allowed_list:")) {
            out.push((name, cpus));
        }
    }
    out
}

/// `pin_cores`: worker i runs only on pin_cores[i % len]; other threads are not pinned.
fn pin_cores_pins_workers(driver: Driver) {
    let up = TestUpstream::echo();
    let last = std::thread::available_parallelism().map(|n| n.get() - 1).unwrap_or(0);
    let config = format!(
        "workers = 2\npin_cores = [{last}]\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"up\"\ntargets = [\"{}\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"up\"\n",
        up.addr()
    );
    let gw = Gateway::start(&config, driver);
    assert_proxies(gw.addr, "/pinned");
    let threads = thread_cpus(gw.pid());
    let workers: Vec<_> = threads.iter().filter(|(n, _)| n.starts_with("ringgate-w")).collect();
    assert_eq!(workers.len(), 2, "threads: {threads:?}");
    for (name, cpus) in workers {
        assert_eq!(cpus, &last.to_string(), "{name} pinned to {cpus}, want {last}; threads: {threads:?}");
    }
}

both_drivers!(
    pin_cores_pins_workers,
    second_instance_refused_without_reuse_port_group,
    ipv6_listener,
    driver_is_logged,
    accept_recovers_from_emfile,
);
