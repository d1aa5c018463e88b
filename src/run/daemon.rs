//! The running daemon: builds the pipeline from a config (pollers, dispatcher, HTTP server),
//! runs its loops until shutdown, reloads on request, and turns any loop's unexpected end into
//! an error so that the process exits non-zero.
//!
//! [`Daemon::run`] takes its shutdown signal (and [`Daemon::run_with_reload`] its reload
//! requests) as parameters: `main` passes SIGTERM/SIGINT and SIGHUP, tests pass channels.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::clock::Clock;
use crate::config::{self, Config, ConfigError};
use crate::http::intake::Intake;
use crate::run::dispatcher::Dispatcher;
use crate::run::poller::PollResult;
use crate::run::service::Systemd;
use crate::source::SourceError;
use crate::store::{InstanceLock, Store, StoreError, Table, unix_now_ms};
use crate::telemetry::Telemetry;

use super::generation::{Generation, Running, drain, loop_end, reload, retired, retiring_adopt};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A loop ended that should run until shutdown (a panic, or a return nobody asked for).
    #[error("stopping: {0}")]
    LoopEnded(String),
}

/// How long shutdown waits for deliveries in flight: SIGTERM ends the process within 10 s, the
/// rest of the budget being for the database and the HTTP server.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// How often the systemd status line is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Opens the configured store: on SQLite after taking the file's lock (one daemon per file); on
/// PostgreSQL with its password, naming this daemon among the others.
fn open_store(config: &Config) -> Result<(Option<InstanceLock>, Store), Error> {
    match &config.state_db {
        config::StateDb::Sqlite(path) => {
            let lock = InstanceLock::acquire(path)?;
            Ok((Some(lock), Store::open(path)?))
        }
        config::StateDb::Postgres(_) => {
            let password = config.state_db_password()?;
            let store = Store::open_at(config.state_db.location(), password.as_ref(), false)?;
            store.join(
                &config::instance_name(config.daemon.instance.as_deref()),
                config.daemon.claim_lease.0.as_millis() as i64,
            );
            Ok((None, store))
        }
    }
}

/// The assembled pipeline: sources, store, dispatcher.
pub struct Daemon {
    store: Store,
    generation: Generation,
    intake: Arc<Intake>,
    dispatcher: Dispatcher,
    clock: Clock,
    wake: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    /// Held for the daemon's life on SQLite: one daemon per database file.
    _lock: Option<InstanceLock>,
}

/// What `once` did.
#[derive(Debug, Default)]
pub struct OnceReport {
    /// Sources whose poll failed, with the reason.
    pub failed_sources: Vec<(String, String)>,
    /// Events raised by this poll.
    pub events: usize,
    /// Deliveries attempted.
    pub attempted: usize,
}

impl Daemon {
    /// Takes the database's lock, reads the secrets, builds the clients and notifiers, and opens
    /// the database.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing or malformed secret; [`Error::Store`] when another daemon
    /// holds the database or it cannot be opened or migrated; [`Error::Source`] when a client
    /// cannot be built.
    pub fn new(config: Config) -> Result<Daemon, Error> {
        Daemon::with_clock(config, Clock::system())
    }

    /// [`Daemon::new`] with the clock that stamps polls and events (tests move it to make jobs
    /// stall without waiting).
    ///
    /// # Errors
    /// As [`Daemon::new`].
    pub fn with_clock(config: Config, clock: Clock) -> Result<Daemon, Error> {
        // A config that cannot run is refused before anything is created on disk.
        if let Some(e) = config.check_secrets().into_iter().next() {
            return Err(e.into());
        }
        let (lock, store) = open_store(&config)?;
        let telemetry = Arc::new(Telemetry::default());
        let wake = Arc::new(Notify::new());
        let generation = Generation::build(config, &store, &wake, &telemetry, &clock)?;
        let dispatcher = Dispatcher::new(
            store.clone(),
            generation.config.clone(),
            generation.notifiers.clone(),
            telemetry.clone(),
            clock.clone(),
        );
        telemetry
            .health
            .configure(&generation.sources(), unix_now_ms());
        telemetry.metrics.build(env!("CARGO_PKG_VERSION"));
        if !store.is_shared() {
            // One daemon per file: it leads from the start.
            store.acquire_lease(0)?;
        }
        telemetry
            .metrics
            .leads(&store.cluster().instance(), store.leads());
        let intake = Arc::new(Intake::new(store.clone(), telemetry.clone(), clock.clone()));
        Ok(Daemon {
            store,
            generation,
            intake,
            dispatcher,
            clock,
            wake,
            telemetry,
            _lock: lock,
        })
    }

    /// The database this daemon writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.generation.config
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// One poll of every source, then one delivery round of what is due.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub async fn once(&self) -> Result<OnceReport, StoreError> {
        let took_lease = self.store.is_shared() && !self.store.leads();
        if took_lease {
            // `once` polls, so it must lead: never beside a running leader.
            let lease = self.generation.config.daemon.leader_lease.0.as_millis() as i64;
            let got = self.store.blocking(move |s| s.acquire_lease(lease)).await?;
            if got.is_none() {
                let leader = self.store.blocking(|s| s.leader()).await?;
                return Err(StoreError::Deposed {
                    path: self.store.path().to_path_buf(),
                    message: format!(
                        "another daemon ({}) leads this database and polls; `once` polls only \
                         when none does",
                        leader.map_or_else(|| "unknown".into(), |l| l.holder)
                    ),
                });
            }
        }
        let result = self.once_as_leader().await;
        if took_lease {
            self.store.blocking(|s| s.resign()).await?;
        }
        result
    }

    async fn once_as_leader(&self) -> Result<OnceReport, StoreError> {
        let mut report = OnceReport::default();
        for poller in &self.generation.pollers {
            match poller.poll().await? {
                PollResult::Stored(r) => report.events += r.events.len(),
                PollResult::Failed(why) => report.failed_sources.push((poller.name.clone(), why)),
            }
        }
        report.events += crate::run::alerting::round(
            &self.store,
            &self.generation.config,
            self.dispatcher.clock(),
        )
        .await?;
        // Deliver until nothing is due now; failed rows are rescheduled into the future.
        loop {
            let n = self.dispatcher.deliver_due().await?;
            report.attempted += n;
            if n == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// [`Daemon::run_with_reload`] without reloads.
    ///
    /// # Errors
    /// As [`Daemon::run_with_reload`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (_keep, reloads) = mpsc::channel(1);
        self.run_with_reload(shutdown, reloads).await
    }

    /// Polls every source on its interval and delivers continuously until `shutdown` completes.
    /// Each message on `reloads` re-reads the config file: a valid one replaces sources,
    /// notifiers and routes (pending deliveries stay in the outbox); an invalid one is logged and
    /// the running config kept. Deliveries in flight get up to 10 s to finish at shutdown.
    ///
    /// # Errors
    /// [`Error::Io`] when `daemon.listen` cannot be bound; [`Error::Store`] when the database can
    /// no longer be written.
    pub async fn run_with_reload(
        self,
        shutdown: impl Future<Output = ()>,
        mut reloads: mpsc::Receiver<()>,
    ) -> Result<(), Error> {
        // Borrowed in place: `self._lock` stays held until the daemon returns.
        let generation = self.generation;
        let parts = Parts {
            store: &self.store,
            wake: &self.wake,
            telemetry: &self.telemetry,
            clock: &self.clock,
            dispatcher: &self.dispatcher,
            intake: &self.intake,
        };
        let (store, telemetry) = (parts.store, parts.telemetry);
        let systemd = Systemd::from_env();
        let _http = serve_page(&generation.config, store, telemetry, &self.intake).await?;
        info!(
            sources = generation.pollers.len(),
            notifiers = generation.config.notifiers.len(),
            db = %store.path().display(),
            "tunewatch running"
        );
        let stop_all = CancellationToken::new();
        let mut running = generation.start(&stop_all, telemetry, parts.dispatcher, parts.intake);
        let mut delivery = start_delivery(parts, running.config.daemon.leader_lease.0, &stop_all);
        // Pollers of replaced generations, finishing (a poll is cancelled at its next await).
        let mut retiring: JoinSet<Result<(), StoreError>> = JoinSet::new();
        systemd.ready(&status_line(store, &running.config).await);
        let mut ticker = tokio::time::interval(systemd.status_every(STATUS_EVERY));
        let page = _http.as_ref().map(|(_, p)| p);
        let mut failure: Option<Error> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    info!("shutting down");
                    break;
                }
                Some(joined) = running.pollers.join_next() => {
                    failure = Some(loop_end("a poll loop", joined));
                    break;
                }
                Some(joined) = delivery.join_next() => {
                    failure = Some(loop_end("the delivery loop", joined));
                    break;
                }
                Some(joined) = retiring.join_next() => {
                    if let Some(e) = retired(joined) {
                        failure = Some(e);
                        break;
                    }
                }
                Some(()) = reloads.recv() => {
                    // A burst of SIGHUPs is one reload.
                    while reloads.try_recv().is_ok() {}
                    systemd.reloading();
                    failure = swap_generation(&mut running, &mut retiring, &stop_all, &parts, page);
                    systemd.ready(&status_line(store, &running.config).await);
                    if failure.is_some() {
                        break;
                    }
                }
                _ = ticker.tick() => {
                    watchdog(&systemd, telemetry);
                    systemd.status(&status_line(store, &running.config).await);
                }
            }
        }
        systemd.stopping();
        if let Some(e) = &failure {
            error!(error = %e, "stopping");
        }
        // Every loop's token is a child of this one.
        stop_all.cancel();
        wind_down(failure, running.pollers, [retiring, delivery]).await
    }
}

/// Waits for every loop to finish (up to [`SHUTDOWN_GRACE`]); the first failure is the answer.
async fn wind_down(
    mut failure: Option<Error>,
    mut everything: JoinSet<Result<(), StoreError>>,
    others: [JoinSet<Result<(), StoreError>>; 2],
) -> Result<(), Error> {
    for set in others {
        retiring_adopt(&mut everything, set);
    }
    if let Some(e) = drain(everything, SHUTDOWN_GRACE).await {
        failure.get_or_insert(e);
    }
    failure.map_or(Ok(()), Err)
}

/// The delivery loop, and on a shared database the leader's lease it delivers under. The
/// dispatcher outlives reloads: a reload swaps its notifiers between rounds and never interrupts
/// a delivery in flight.
fn start_delivery(
    parts: Parts<'_>,
    lease: std::time::Duration,
    stop_all: &CancellationToken,
) -> JoinSet<Result<(), StoreError>> {
    let stop = stop_all.child_token();
    let mut delivery = JoinSet::new();
    if parts.store.is_shared() {
        delivery.spawn(crate::run::leader::hold(
            parts.store.clone(),
            lease,
            parts.telemetry.clone(),
            stop.clone(),
        ));
    }
    delivery.spawn(parts.dispatcher.clone().run(parts.wake.clone(), stop));
    delivery
}

/// The parts of a running daemon a new generation is started with.
#[derive(Clone, Copy)]
struct Parts<'a> {
    store: &'a Store,
    wake: &'a Arc<Notify>,
    telemetry: &'a Arc<Telemetry>,
    clock: &'a Clock,
    dispatcher: &'a Dispatcher,
    intake: &'a Intake,
}

/// Reloads the config: a usable one replaces the running generation (its pollers finish in
/// `retiring`, not waited for: SIGTERM must not queue behind them); an unusable one is logged
/// and the running one kept. A poller of the old generation that failed is the error returned.
fn swap_generation(
    running: &mut Running,
    retiring: &mut JoinSet<Result<(), StoreError>>,
    stop_all: &CancellationToken,
    parts: &Parts<'_>,
    page: Option<&Arc<crate::http::web::Web>>,
) -> Option<Error> {
    let next = reload(
        &running.config,
        parts.store,
        parts.wake,
        parts.telemetry,
        parts.clock,
    )?;
    let started = next.start(stop_all, parts.telemetry, parts.dispatcher, parts.intake);
    rehold(parts.store, &started.config, parts.clock);
    let old = std::mem::replace(running, started);
    if let Some(page) = page {
        page.set_config(running.config.clone());
    }
    old.stop.cancel();
    let mut failure = None;
    let mut old_pollers = old.pollers;
    while let Some(task) = old_pollers.try_join_next() {
        if let Some(e) = retired(task) {
            failure.get_or_insert(e);
        }
    }
    retiring_adopt(retiring, old_pollers);
    parts.wake.notify_one();
    failure
}

/// Holds what quiet hours hold by the reloaded windows: a window moved or removed releases or
/// re-holds its rows and groups (in the background; a failure is logged).
fn rehold(store: &Store, config: &Arc<Config>, clock: &Clock) {
    let (store, config, now) = (store.clone(), config.clone(), clock.now_ms());
    tokio::spawn(async move {
        let moved = store
            .blocking(move |s| {
                let ends = |name: &str| {
                    config
                        .quiet_hours
                        .iter()
                        .find(|q| q.name == name)
                        .and_then(|q| q.window.held_until(now))
                };
                s.rehold(now, &ends)
            })
            .await;
        match moved {
            Ok(0) => {}
            Ok(n) => tracing::info!(moved = n, "held alerts follow the reloaded quiet hours"),
            Err(e) => {
                tracing::warn!(error = %e, "held alerts could not follow the reloaded quiet hours")
            }
        }
    });
}

/// Pings systemd's watchdog while every loop makes progress; withholds it when one is stuck,
/// so that systemd restarts tunewatch.
fn watchdog(systemd: &Systemd, telemetry: &Telemetry) {
    if let Some(limit) = systemd.watchdog() {
        match telemetry.liveness.stuck(limit) {
            None => systemd.watchdog_ping(),
            Some(name) => error!(
                task = %name,
                "a loop has made no progress for a whole watchdog interval; \
                 withholding the watchdog ping so that systemd restarts tunewatch"
            ),
        }
    }
}

/// Serves `/healthz`, `/metrics`, the webhook endpoint and the status page on `daemon.listen`,
/// when set: the server (stopped when dropped) and the page (given each reloaded config).
async fn serve_page(
    config: &Arc<Config>,
    store: &Store,
    telemetry: &Arc<Telemetry>,
    intake: &Arc<Intake>,
) -> Result<Option<(AbortOnDrop, Arc<crate::http::web::Web>)>, Error> {
    let Some(addr) = config.daemon.listen else {
        return Ok(None);
    };
    let token = match config.daemon.ui_token() {
        Some(r) => Some(
            r.read(config::SecretKind::ApiKey)
                .map_err(|message| ConfigError::Secret {
                    owner: "daemon ui_token".into(),
                    message,
                })?
                .expose()
                .to_string(),
        ),
        None => None,
    };
    let page = Arc::new(crate::http::web::Web {
        store: store.clone(),
        config: std::sync::RwLock::new(config.clone()),
        token,
    });
    let (local, task) = crate::http::listener::serve(
        addr,
        telemetry.clone(),
        store.clone(),
        Some(intake.clone()),
        Some(page.clone()),
    )
    .await
    .map_err(|source| Error::Io {
        what: format!("cannot listen on {addr} (daemon.listen)"),
        source,
    })?;
    info!(addr = %local, "serving the status page, /healthz and /metrics");
    Ok(Some((AbortOnDrop(task), page)))
}

/// "watching 12 jobs from 2 sources; 0 alerts pending" for `systemctl status`.
async fn status_line(store: &Store, config: &Config) -> String {
    let counts = store
        .blocking(|s| Ok((s.count(Table::Jobs)?, s.count(Table::PendingDeliveries)?)))
        .await;
    match counts {
        Ok((jobs, pending)) => format!(
            "watching {jobs} jobs from {} sources; {pending} alerts pending",
            config.sources.len()
        ),
        Err(e) => format!("database unreadable: {e}"),
    }
}

/// Aborts a background task when dropped (the HTTP server lives as long as `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_that_ends_or_panics_is_an_error_so_the_process_exits_non_zero() {
        let ended = tokio::spawn(async { Ok::<(), StoreError>(()) }).await;
        assert!(
            matches!(loop_end("a poll loop", ended), Error::LoopEnded(m) if m.contains("ended unexpectedly"))
        );
        let panicked = tokio::spawn(async {
            if true {
                panic!("boom");
            }
            Ok::<(), StoreError>(())
        })
        .await;
        assert!(
            matches!(loop_end("the delivery loop", panicked), Error::LoopEnded(m) if m.contains("failed"))
        );
        let retired_ok = tokio::spawn(async { Ok::<(), StoreError>(()) }).await;
        assert!(retired(retired_ok).is_none(), "a stopped poller may end");
        let mut set = JoinSet::new();
        set.spawn(async {
            if true {
                panic!("boom");
            }
            Ok::<(), StoreError>(())
        });
        let failure = drain(set, Duration::from_secs(5)).await;
        assert!(matches!(failure, Some(Error::LoopEnded(_))), "{failure:?}");
    }
}
