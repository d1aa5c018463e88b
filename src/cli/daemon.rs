//! `tunewatch run` and `tunewatch once`: the daemon under SIGTERM/SIGINT (stop) and SIGHUP
//! (reload), or one poll and one delivery round.

use crate::config::Config;
use crate::run::daemon::Daemon;

use super::{Failure, init_tracing, plural};

/// Logging for the daemon commands, from the config's `log_level` and `log_format`.
fn init_daemon_tracing(config: &Config) {
    init_tracing(
        config.daemon.log_level.as_deref().unwrap_or("info"),
        config.daemon.log_format,
    );
}

/// `run`: the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// [`Failure`] when it cannot start, or a loop ended.
pub async fn run(config: Config) -> Result<u8, Failure> {
    init_daemon_tracing(&config);
    // Signal handlers first: a SIGTERM or SIGHUP that arrives while the daemon starts must be
    // heard, not end the process with the default action.
    let term = listen(tokio::signal::unix::SignalKind::terminate());
    let hup = listen(tokio::signal::unix::SignalKind::hangup());
    let daemon = Daemon::new(config)?;
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
    tokio::spawn(forward_sighup(hup, reload_tx));
    daemon
        .run_with_reload(shutdown_signal(term), reloads)
        .await?;
    Ok(0)
}

/// `once`: one poll of every source and one delivery round; exit 1 when a source could not be
/// polled.
///
/// # Errors
/// [`Failure`] when the daemon cannot start or the database cannot be written.
pub async fn once(config: Config) -> Result<u8, Failure> {
    init_daemon_tracing(&config);
    let daemon = Daemon::new(config)?;
    let report = daemon.once().await?;
    let sources = daemon.config().sources.len();
    let summary = format!(
        "{} raised, {} attempted",
        plural(report.events, "event", "events"),
        plural(report.attempted, "delivery", "deliveries"),
    );
    if report.failed_sources.is_empty() {
        println!("polled {}: {summary}", plural(sources, "source", "sources"));
        return Ok(0);
    }
    for (source, why) in &report.failed_sources {
        eprintln!("error: source {source:?}: {why}");
    }
    eprintln!(
        "{} of {} could not be polled; {summary}",
        report.failed_sources.len(),
        plural(sources, "source", "sources")
    );
    Ok(1)
}

/// A handler for `kind`, installed now (not when first awaited).
fn listen(kind: tokio::signal::unix::SignalKind) -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
}

/// Completes on SIGTERM (through `term`, installed at start) or SIGINT.
async fn shutdown_signal(term: std::io::Result<tokio::signal::unix::Signal>) {
    let mut term = match term {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGINT or SIGKILL");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Turns every SIGHUP (through `hup`, installed at start) into a reload request.
async fn forward_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    reloads: tokio::sync::mpsc::Sender<()>,
) {
    match hup {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received; reloading the config");
                if reloads.send(()).await.is_err() {
                    return;
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP; reload by restarting"),
    }
}
