//! ringgate's command line: load the config, start the demo upstream if asked, bind listeners,
//! start one worker per core, and wait for signals. No request logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use ringgate::config::{self, Config, DriverChoice, TargetSpec};
use ringgate::net::listener::{group_from, ListenerOpts, TlsOpts};
use ringgate::reload::{self, Reloader, Source};
use ringgate::runtime::{self, WorkerSpec};
use ringgate::shared::Snapshot;
use ringgate::{admin, tls, upgrade};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "Thread-per-core HTTP/1.1 API gateway on io_uring. With no command: run the embedded demo config."
)]
struct Cli {
    /// I/O driver: auto (io_uring, else epoll), uring, or epoll. Overrides the config.
    #[arg(long, global = true, value_parser = ["auto", "uring", "epoll"])]
    driver: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Run {
        #[arg(short, long)]
        config: PathBuf,
        /// Take the listening sockets over from the ringgate running on the config's
        /// `[upgrade] socket`, then tell it to drain (zero-downtime restart or upgrade).
        #[arg(long)]
        takeover: bool,
    },
    /// Validate a config file; print every error and exit non-zero if there is any.
    Check { file: PathBuf },
}

fn init_logging() {
    let level = match std::env::var("RINGGATE_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    // Transparent huge pages (THP "always") back the allocator's arenas with 2 MiB pages, so a
    // few KiB per idle connection would cost whole huge pages of RSS. Opt this process out.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let cli = Cli::parse();
    init_logging();
    let takeover = matches!(cli.command, Some(Command::Run { takeover: true, .. }));
    let (cfg, source, reload_source) = match cli.command {
        Some(Command::Check { file }) => {
            return match config::load_file(&file) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} listeners, {} upstreams, {} routes)",
                        file.display(),
                        c.listeners.len(),
                        c.upstreams.len(),
                        c.routes.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprint!("{}", e.render());
                    eprintln!("{} error(s)", e.issues.len());
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Run { config: path, .. }) => match config::load_file(&path) {
            Ok(c) => (c, path.display().to_string(), Source::File(path.clone())),
            Err(e) => {
                eprint!("{}", e.render());
                return ExitCode::FAILURE;
            }
        },
        None => match config::load_str(config::DEFAULT_CONFIG, "(embedded default)") {
            Ok(c) => (c, "(embedded default)".to_string(), Source::Embedded),
            Err(e) => {
                eprint!("{}", e.render());
                return ExitCode::FAILURE;
            }
        },
    };
    let driver = cli.driver.as_deref().and_then(DriverChoice::parse).unwrap_or(cfg.driver);
    match start(cfg, driver, &source, reload_source, takeover) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ringgate: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn start(cfg: Config, driver: DriverChoice, source: &str, reload_source: Source, takeover: bool) -> Result<(), String> {
    let is_default = matches!(reload_source, Source::Embedded);
    if let Some(a) = &cfg.access_log {
        ringgate::accesslog::start(a.clone())?;
    }
    let needs_demo = cfg.upstreams.iter().any(|u| u.targets.contains(&TargetSpec::Demo));
    let demo = if needs_demo {
        Some(ringgate::demo::start().map_err(|e| format!("cannot start the demo upstream: {e}"))?)
    } else {
        None
    };
    // The snapshot takes the route table (moved, not copied); start-up keeps the rest.
    let mut cfg = cfg;
    let table =
        Config { routes: std::mem::take(&mut cfg.routes), router: std::mem::take(&mut cfg.router), ..cfg.clone() };
    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(table, demo, 1)));
    let reloader = Reloader::new(shared.clone(), reload_source, &cfg, demo);

    // A takeover receives the running process's sockets first.
    let mut taken = match (takeover, &cfg.upgrade_socket) {
        (false, _) => None,
        (true, None) => return Err("--takeover needs [upgrade] socket in the config".into()),
        (true, Some(p)) => Some(upgrade::take(p).map_err(|e| format!("takeover: {e}"))?),
    };

    // Bind (or take over) everything before starting workers, so a busy port fails the start
    // cleanly. A duplicate of each socket is kept to hand over to a successor.
    let mut per_worker: Vec<Vec<_>> = (0..cfg.workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    let mut handover = Vec::new();
    for (index, l) in cfg.listeners.iter().enumerate() {
        let inherited: Vec<_> = match taken.as_mut() {
            Some(t) => {
                let (mine, rest) =
                    std::mem::take(&mut t.sockets.listeners).into_iter().partition(|(a, _)| *a == l.addr);
                t.sockets.listeners = rest;
                mine.into_iter().map(|(_, fd)| fd).collect()
            }
            None => Vec::new(),
        };
        let (addr, socks) = group_from(l, cfg.workers, inherited)?;
        bound.push(addr);
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                // The certificates validation loaded and checked.
                let store: tls::CertStore = Arc::new(ArcSwap::new(t.loaded.clone()));
                let sc = tls::server_config(t, store.clone()).map_err(|e| format!("listener {}: {e}", l.addr))?;
                reloader.add_cert_store(index, store);
                Some(TlsOpts { acceptor: sc.into(), handshake_timeout: t.handshake_timeout })
            }
        };
        let proxy = Arc::new(ListenerOpts { proxy: l.proxy.clone(), tls, index });
        for (j, s) in socks.into_iter().enumerate() {
            if cfg.upgrade_socket.is_some() {
                handover.push((
                    addr,
                    std::os::fd::AsFd::as_fd(&s).try_clone_to_owned().map_err(|e| format!("{addr}: {e}"))?,
                ));
            }
            per_worker[j % cfg.workers].push((s, proxy.clone()));
        }
    }
    if let Some(t) = &taken {
        for (a, _) in &t.sockets.listeners {
            tracing::warn!("taken-over socket for {a} is not in this config: closed here");
        }
    }

    if cfg.admin.is_some_and(|a| !a.ip().is_loopback()) {
        tracing::warn!("the admin listener is not on loopback: anyone who reaches it can reload the config");
    }
    let mut admin_handover = None;
    let admin = match cfg.admin {
        Some(a) => {
            let inherited = taken.as_mut().and_then(|t| t.sockets.admin.take_if(|(addr, _)| *addr == a));
            let sock = match inherited {
                Some((_, fd)) => std::net::TcpListener::from(fd),
                None => std::net::TcpListener::bind(a).map_err(|e| format!("cannot bind admin listener {a}: {e}"))?,
            };
            let bound = sock.local_addr().map_err(|e| format!("admin listener: {e}"))?;
            if cfg.upgrade_socket.is_some() {
                admin_handover = Some((
                    bound,
                    std::os::fd::AsFd::as_fd(&sock).try_clone_to_owned().map_err(|e| format!("admin listener: {e}"))?,
                ));
            }
            Some(admin::start_on(sock, reloader.clone()).map_err(|e| format!("admin listener {a}: {e}"))?)
        }
        None => None,
    };
    let watch_config = cfg.reload.watch.then_some(cfg.reload.debounce);
    reload::start_control(reloader.clone(), watch_config)
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    ringgate::core::set_drain_grace(cfg.grace_period);
    ringgate::core::EXPECTED_WORKERS.store(cfg.workers, std::sync::atomic::Ordering::SeqCst);
    install_signals(reloader)?;
    let mut handles = Vec::new();
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let core = if cfg.pin_cores.is_empty() { None } else { Some(cfg.pin_cores[id % cfg.pin_cores.len()]) };
        let spec = WorkerSpec {
            id,
            core,
            listeners,
            driver,
            shared: shared.clone(),
            max_connections: cfg.limits.max_connections_per_worker,
            drain_timeout: cfg.drain_timeout,
        };
        handles.push(runtime::spawn(spec).map_err(|e| format!("cannot start worker {id}: {e}"))?);
    }

    // The banner: tests and scripts read the "listening on" lines.
    println!("ringgate {}: config {source}, {} workers", env!("CARGO_PKG_VERSION"), cfg.workers);
    for (a, l) in bound.iter().zip(&cfg.listeners) {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{a}");
    }
    if let Some(d) = demo {
        println!("demo upstream on http://{d}");
    }
    if let Some(a) = admin {
        println!("admin on http://{a}");
    }
    if is_default {
        if let Some(a) = bound.first() {
            println!("try:\n  curl -i http://{a}/hello\n  curl -i -X POST --data 'hi there' http://{a}/echo\n  curl -i -H 'Host: example.test' http://{a}/anything?x=1");
            println!("stop with Ctrl-C; run with your own config: ringgate run --config FILE (see docs/config.md)");
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    // Workers up: tell a systemd-style supervisor this is the service's main process now (before
    // a predecessor is told to drain and exit, so the supervisor never sees the service's main
    // process die).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // (Not `ready()`: a drain may already have started, and then it never becomes true.)
    while !ringgate::core::workers_up() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The upgrade socket is bound before a predecessor drains: a failure here leaves it serving.
    let prepared = match &cfg.upgrade_socket {
        Some(p) => {
            let sockets = upgrade::Sockets { listeners: handover, admin: admin_handover };
            Some(
                upgrade::prepare(p, sockets)
                    .map_err(|e| format!("cannot open the upgrade socket {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    upgrade::sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    if let Some(t) = taken {
        // Serving on the taken sockets: now the old process may drain.
        match t.confirm() {
            Ok(()) => tracing::info!("took over the listening sockets; the previous process drains"),
            Err(e) => tracing::warn!("took over the listening sockets, but the previous process did not confirm: {e}"),
        }
    }
    if let Some(prep) = prepared {
        // After a confirmed takeover this process serves: an error here must not stop it.
        if let Err(e) = prep.serve() {
            tracing::error!("upgrade socket not available, no takeover from this process: {e}");
        }
    }

    for h in handles {
        let _ = h.join();
    }
    // The workers handed their last lines over as they stopped: write them before exiting.
    ringgate::accesslog::close(std::time::Duration::from_secs(2));
    tracing::info!("drained, exiting");
    Ok(())
}

/// SIGTERM/SIGINT: the first starts a graceful drain, the second exits at once. SIGHUP: reload.
/// SIGUSR1: reopen the access log (logrotate).
fn install_signals(reloader: Arc<Reloader>) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || {
            // Counted here, not by the drain flag: a drain started by POST /drain or a takeover
            // is not a first signal, so the SIGTERM that usually follows must not exit at once.
            let mut stops = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    let _ = reloader.reload("SIGHUP");
                    continue;
                }
                if sig == SIGUSR1 {
                    ringgate::accesslog::reopen();
                    tracing::info!("SIGUSR1: the access log is reopened");
                    continue;
                }
                stops += 1;
                if stops > 1 {
                    eprintln!("ringgate: second signal ({sig}), exiting now");
                    std::process::exit(1);
                }
                ringgate::core::start_drain();
                tracing::info!(signal = sig, "shutting down");
            }
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;
    Ok(())
}
