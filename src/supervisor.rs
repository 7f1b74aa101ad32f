//! `auralis up`: starts composer, synthd and streamd as separate processes, restarts any that dies,
//! forwards SIGINT/SIGTERM (streamd first, so it drains its listeners), and on a clean stop leaves
//! no shared-memory segment behind.
//!
//! Settings reach the roles three ways: each child inherits the launcher's environment; the
//! configuration file (`--config`) is handed on as `AURALIS_CONFIG`, so each role reads its own
//! table; and what `up` itself was told (namespace, streamd's address if given, logging) is set
//! in the child's environment, which beats the file.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use auralis_ops::CommonArgs;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shm_proto::Namespace;

/// Flags of `auralis up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Address streamd listens on [default: streamd's, 0.0.0.0].
    #[arg(long, env = "AURALIS_HOST")]
    host: Option<String>,
    /// Port streamd listens on [default: streamd's, 8000].
    #[arg(long, env = "AURALIS_PORT")]
    port: Option<u16>,
    /// Shared-memory namespace; lets several deployments (or tests) share a host.
    #[arg(long, env = "AURALIS_SHM_NAMESPACE", default_value = "default")]
    namespace: String,
    /// How long streamd may take to drain on shutdown before it is killed.
    #[arg(long, env = "AURALIS_STOP_TIMEOUT_SECS", default_value_t = 15)]
    stop_timeout_secs: u64,
}

/// One of the three roles, and how to start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Composer,
    Synthd,
    Streamd,
}

impl Role {
    /// Start order: composer creates the control block the other two attach to.
    const ALL: [Role; 3] = [Role::Composer, Role::Synthd, Role::Streamd];

    fn name(self) -> &'static str {
        match self {
            Role::Composer => "composer",
            Role::Synthd => "synthd",
            Role::Streamd => "streamd",
        }
    }
}

/// A supervised child and its restart bookkeeping.
#[derive(Debug)]
struct Supervised {
    role: Role,
    child: Option<Child>,
    /// When the current child started, to tell a crash loop from a rare crash.
    started: Instant,
    /// Consecutive quick failures; sets the restart delay.
    failures: u32,
    /// Do not restart before this instant.
    restart_at: Option<Instant>,
}

/// Runs the system until SIGINT or SIGTERM.
pub fn up(args: UpArgs, common: &CommonArgs) -> anyhow::Result<()> {
    // Each role reads its own table of the same file; an absolute path survives any cwd.
    let config = match &common.config {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .with_context(|| format!("config file {}", path.display()))?,
        ),
        None => None,
    };
    let ns = Namespace::new(&args.namespace).context("invalid --namespace")?;
    let removed = ns
        .remove_stale()
        .context("checking for stale shared-memory segments")?;
    for name in &removed {
        tracing::warn!(segment = %name, "removed a stale shared-memory segment left by a crashed run");
    }
    let live = ns.existing_segments();
    if !live.is_empty() {
        anyhow::bail!(
            "another Auralis is running in shared-memory namespace {:?} (segments {:?} have live owners); \
             stop it or pick another --namespace",
            ns.as_str(),
            live
        );
    }

    let stop = auralis_ops::signals::shutdown_flag()?;

    let exe = crate::cli::current_exe()?;
    let spawn = |role: Role| -> anyhow::Result<Child> {
        let mut cmd = Command::new(&exe);
        // Own process group: a terminal's Ctrl-C reaches only the launcher, which then stops the
        // roles in order (streamd drains while synthd still renders).
        cmd.process_group(0)
            .arg(role.name())
            .env("AURALIS_SHM_NAMESPACE", ns.as_str())
            .env(
                "AURALIS_LOG_FORMAT",
                match common.log_format {
                    auralis_ops::logging::LogFormat::Json => "json",
                    auralis_ops::logging::LogFormat::Text => "text",
                },
            );
        if let Some(level) = &common.log_level {
            cmd.env("AURALIS_LOG_LEVEL", level);
        }
        if let Some(path) = &config {
            cmd.env("AURALIS_CONFIG", path);
        }
        if let Some(host) = &args.host {
            cmd.env("AURALIS_HOST", host);
        }
        if let Some(port) = args.port {
            cmd.env("AURALIS_PORT", port.to_string());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", role.name()))?;
        tracing::info!(role = role.name(), pid = child.id(), "started");
        Ok(child)
    };

    let mut procs = Vec::new();
    for role in Role::ALL {
        procs.push(Supervised {
            role,
            child: Some(spawn(role)?),
            started: Instant::now(),
            failures: 0,
            restart_at: None,
        });
        // Composer creates the control block the others attach to; give it a head start so the
        // first seconds are not spent in retry loops (they retry anyway).
        thread::sleep(Duration::from_millis(150));
    }
    // streamd's address: as given to `up`, else from the file's [streamd] table, else its default.
    let from_file = |key: &str| {
        config
            .as_deref()
            .and_then(|f| auralis_ops::config::lookup(f, "streamd", key))
    };
    let host = args
        .host
        .clone()
        .or_else(|| from_file("host"))
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let port = args
        .port
        .map(|p| p.to_string())
        .or_else(|| from_file("port"))
        .unwrap_or_else(|| "8000".to_owned());
    let shown_host = if host == "0.0.0.0" {
        "localhost"
    } else {
        &host
    };
    println!("Auralis is playing at http://{shown_host}:{port}/");

    while !stop.load(Ordering::Relaxed) {
        for p in &mut procs {
            supervise_one(p, &spawn);
        }
        thread::sleep(Duration::from_millis(100));
    }

    tracing::info!("stopping: streamd drains first");
    let timeout = Duration::from_secs(args.stop_timeout_secs);
    for role in [Role::Streamd, Role::Composer, Role::Synthd] {
        if let Some(p) = procs.iter_mut().find(|p| p.role == role) {
            stop_child(p, timeout);
        }
    }
    let n = ns.remove_all().context("removing shared-memory segments")?;
    tracing::info!(segments = n, "stopped; shared memory removed");
    Ok(())
}

/// Reaps a dead child and restarts it with a backoff that grows while it keeps failing fast.
fn supervise_one(p: &mut Supervised, spawn: &dyn Fn(Role) -> anyhow::Result<Child>) {
    if let Some(child) = &mut p.child {
        match child.try_wait() {
            Ok(None) => return,
            Ok(Some(status)) => {
                let ran = p.started.elapsed();
                p.failures = if ran > Duration::from_secs(30) {
                    1
                } else {
                    p.failures + 1
                };
                let delay =
                    Duration::from_millis(250 << p.failures.min(6)).min(Duration::from_secs(10));
                tracing::error!(role = p.role.name(), %status, ran_ms = ran.as_millis() as u64, restart_in_ms = delay.as_millis() as u64, "process exited; restarting");
                p.child = None;
                p.restart_at = Some(Instant::now() + delay);
            }
            Err(err) => {
                tracing::error!(role = p.role.name(), "waiting for child: {err}");
                return;
            }
        }
    }
    if p.restart_at.is_some_and(|t| Instant::now() >= t) {
        match spawn(p.role) {
            Ok(child) => {
                p.child = Some(child);
                p.started = Instant::now();
                p.restart_at = None;
            }
            Err(err) => {
                tracing::error!(role = p.role.name(), "restart failed: {err:#}");
                p.restart_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
fn stop_child(p: &mut Supervised, timeout: Duration) {
    let Some(child) = &mut p.child else { return };
    let pid = Pid::from_raw(child.id() as i32);
    if let Err(err) = kill(pid, Signal::SIGTERM) {
        tracing::warn!(role = p.role.name(), "SIGTERM failed: {err}");
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                tracing::info!(role = p.role.name(), %status, "stopped");
                return;
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => break,
        }
    }
    tracing::warn!(role = p.role.name(), "did not stop in time; killing");
    let _ = child.kill();
    let _ = child.wait();
}
