//! The command line: `--version`, `check FILE` (every error, with its key path, on stderr, exit
//! non-zero), and `run` refusing bad configs. `check` and `--version` do not start a runtime, so
//! they run once; tests that start `run` go through both drivers.

#[macro_use]
mod support;

use std::time::Duration;
use support::gateway::path_str;
use support::*;

const CLI_TIMEOUT: Duration = Duration::from_secs(20);

fn good_config() -> String {
    ConfigBuilder::new()
        .limit("header_read_timeout = \"5s\"")
        .upstream_raw("demo", &["builtin:demo"], "")
        .route("/", "demo", "")
        .render()
}

/// Runs `ringgate check` on `config`; returns (success, stderr).
fn check(config: &str) -> (bool, String) {
    let file = TempFile::new("check", "toml", config);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Whether one line of `text` mentions every part (e.g. `["listeners", "address"]` matches
/// `listeners[0].address: ...` as well as `listeners.0.address`).
fn line_mentions(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn version_prints_name_and_version() {
    let out = run_cli(&["--version"], CLI_TIMEOUT);
    assert!(out.status.success(), "--version failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ringgate"), "{stdout:?}");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout:?}");
}

#[test]
fn check_accepts_good_file() {
    let (ok, stderr) = check(&good_config());
    assert!(ok, "a valid config was rejected: {stderr}");
}

#[test]
fn check_accepts_documented_example() {
    // The full example of docs/config.md must stay valid (paths and addresses adjusted to run here).
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).expect("read docs/config.md");
    let start = doc.find("```toml").expect("a toml block in docs/config.md") + "```toml".len();
    let end = start + doc[start..].find("```").expect("end of the toml block");
    let example = doc[start..end].replace("127.0.0.1:8080", "127.0.0.1:0");
    let (ok, stderr) = check(&example);
    assert!(ok, "the documented example config is rejected: {stderr}");
}

#[test]
fn check_reports_every_error_with_key_path() {
    let config = "workers = 1\n\n\
        [[listeners]]\naddress = \"not-an-address\"\n\n\
        [[upstreams]]\nname = \"api\"\ntargets = []\n\n\
        [[routes]]\nprefix = \"/\"\nupstream = \"missing\"\n";
    let (ok, stderr) = check(config);
    assert!(!ok, "an invalid config passed check");
    for parts in [&["listeners", "address"][..], &["upstreams", "targets"], &["routes", "upstream"]] {
        assert!(line_mentions(&stderr, parts), "no error line mentioning {parts:?} in:\n{stderr}");
    }
}

#[test]
fn check_rejects_unknown_key() {
    let config = good_config().replace("[limits]\n", "[limits]\nmax_header_bytez = 10\n");
    assert!(config.contains("max_header_bytez"), "test setup: the typo was not inserted");
    let (ok, stderr) = check(&config);
    assert!(!ok, "an unknown key passed check");
    assert!(stderr.contains("max_header_bytez"), "the error should name the unknown key:\n{stderr}");
}

#[test]
fn check_rejects_unknown_top_level_key() {
    let config = format!("wrokers = 2\n{}", good_config());
    let (ok, stderr) = check(&config);
    assert!(!ok, "an unknown top-level key passed check");
    assert!(stderr.contains("wrokers"), "{stderr}");
}

#[test]
fn check_rejects_address_without_port() {
    let config = good_config().replace("127.0.0.1:0", "127.0.0.1");
    let (ok, stderr) = check(&config);
    assert!(!ok, "an address without a port passed check");
    assert!(line_mentions(&stderr, &["address"]), "{stderr}");
}

#[test]
fn check_rejects_bad_duration() {
    let config = good_config().replace("\"5s\"", "\"soon\"");
    let (ok, stderr) = check(&config);
    assert!(!ok, "a bad duration passed check");
    assert!(stderr.contains("header_read_timeout"), "{stderr}");
}

#[test]
fn check_rejects_missing_file() {
    let path = support::gateway::temp_path("missing", "toml");
    let out = run_cli(&["check", path_str(&path)], CLI_TIMEOUT);
    assert!(!out.status.success(), "check of a missing file succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(path_str(&path)), "the error should name the file:\n{stderr}");
}

#[test]
fn run_rejects_unknown_driver() {
    let file = TempFile::new("driver", "toml", &good_config());
    let out = run_cli(&["run", "--config", path_str(&file.path), "--driver", "kqueue"], CLI_TIMEOUT);
    assert!(!out.status.success(), "--driver kqueue accepted");
}

#[test]
#[ignore = "binds the fixed port 127.0.0.1:8080"]
fn no_arguments_serves_demo_on_8080() {
    let mut child = std::process::Command::new(support::gateway::binary())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ringgate");
    let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match Client::try_connect(addr) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                panic!("nothing listening on {addr}: {e}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let resp = client.request(&get("/"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
}

/// `run` with an invalid config exits non-zero without listening.
fn run_rejects_invalid_config(driver: Driver) {
    let file = TempFile::new("bad-run", "toml", "workers = 1\n[[listeners]]\naddress = \"nope\"\n");
    let out = run_cli(&["run", "--config", path_str(&file.path), "--driver", driver.as_str()], CLI_TIMEOUT);
    assert!(!out.status.success(), "run accepted an invalid config");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "{out:?}");
}

/// Port 0 in the config: the banner reports the real port, which serves requests; two
/// listeners each print their own banner.
fn banner_reports_real_ports(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).listener("127.0.0.1:0").start(driver);
    assert_eq!(gw.addrs.len(), 2);
    assert_ne!(gw.addrs[0], gw.addrs[1]);
    for addr in &gw.addrs {
        assert_ne!(addr.port(), 0);
        let resp = Client::connect(*addr).request(&get("/"));
        assert_eq!(resp.status, 200, "listener {addr}: {}", resp.head_str());
    }
}

/// The built-in demo upstream answers through a route.
fn builtin_demo_upstream_answers(driver: Driver) {
    let gw = Gateway::start(&good_config(), driver);
    let resp = gw.client().request(&get("/"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
}

both_drivers!(run_rejects_invalid_config, banner_reports_real_ports, builtin_demo_upstream_answers,);
