//! tunewatch watches OpenAI fine-tuning jobs and delivers durable, signed alerts when they change.
//!
//! # Layout
//!
//! The modules follow the pipeline of DESIGN.md:
//!
//! ```text
//! scheduler ──tick──▶ source (HTTP API client) ──jobs──▶ store.observe_poll
//!                                                         │ one transaction: snapshots (only if
//!                                                         │ changed) + diff + events + outbox rows
//!                                                         ▼
//!                               dispatch ◀── due outbox rows ── store (outbox)
//!                                   └─▶ notify (webhook; e-mail later)
//! ```
//!
//! * [`config`]: the TOML file, validated, with secrets named but not printed.
//! * [`source`]: the job model and the OpenAI client (paging, retries).
//! * [`store`]: SQLite — migrations, snapshots, events, outbox; the only place with SQL.
//! * [`diff`]: pure field-level diff and event classification.
//! * [`event`]: the event envelope that receivers get.
//! * [`scheduler`]: one polling loop per source.
//! * [`dispatch`]: the outbox loop and its retry policy.
//! * [`notify`]: the notifiers (webhook, e-mail) and rendering.
//! * [`service`]: systemd notifications and the loops' liveness (watchdog).
//! * [`http`] and [`metrics`]: `/healthz` and `/metrics`.
//! * [`sim`] and [`demo`]: the simulated jobs API and the self-contained demo.
//! * [`commands`]: the text of the read-only commands (`status`, `history`, `outbox`, `check`).
//!
//! [`Daemon::run`] takes its shutdown signal (and [`Daemon::run_with_reload`] its reload requests)
//! as parameters: `main` passes SIGTERM/SIGINT and SIGHUP, tests pass channels.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod demo;
pub mod diff;
pub mod dispatch;
pub mod event;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod scheduler;
pub mod service;
pub mod sim;
pub mod source;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use config::{Config, ConfigError};
use dispatch::Dispatcher;
use notify::Notifiers;
use scheduler::{Clock, PollResult, SourcePoller};
use service::Systemd;
use source::{OpenAiClient, SourceError};
use store::{InstanceLock, Store, StoreError, Table, unix_now_ms};

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
}

/// How long shutdown (or a reload) waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the systemd status line is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What the daemon knows about itself, shared by its loops and the HTTP server.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub metrics: metrics::Metrics,
    pub health: http::Health,
    pub liveness: service::Liveness,
}

/// The parts built from one config: pollers and a dispatcher. A reload builds a new one.
struct Generation {
    config: Arc<Config>,
    pollers: Vec<SourcePoller>,
    dispatcher: Dispatcher,
}

impl Generation {
    /// Reads the secrets and builds the clients and notifiers of `config`.
    fn build(
        config: Config,
        store: &Store,
        wake: &Arc<Notify>,
        telemetry: &Arc<Telemetry>,
        clock: &Clock,
    ) -> Result<Generation, Error> {
        let config = Arc::new(config);
        let mut pollers = Vec::new();
        for s in &config.sources {
            let key = s
                .api_key()
                .map(|r| r.resolve())
                .transpose()
                .map_err(|message| ConfigError::Secret {
                    owner: format!("source {:?} api key", s.name),
                    message,
                })?
                .ok_or_else(|| ConfigError::Secret {
                    owner: format!("source {:?}", s.name),
                    message: "no api_key_env, api_key_file or api_key_credential".into(),
                })?;
            pollers.push(SourcePoller::new(
                s,
                OpenAiClient::new(s, &key)?,
                store.clone(),
                config.clone(),
                wake.clone(),
                telemetry.clone(),
                clock.clone(),
            ));
        }
        let notifiers = Arc::new(Notifiers::from_config(&config)?);
        let dispatcher =
            Dispatcher::new(store.clone(), config.clone(), notifiers, telemetry.clone());
        Ok(Generation {
            config,
            pollers,
            dispatcher,
        })
    }

    fn sources(&self) -> Vec<(String, Duration)> {
        self.pollers
            .iter()
            .map(|p| (p.name.clone(), p.interval))
            .collect()
    }

    /// Starts every loop; they stop when `stop` turns true.
    fn start(self, telemetry: &Telemetry, wake: &Arc<Notify>) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let mut beats = vec![self.dispatcher.beat.clone()];
        let mut tasks = JoinSet::new();
        for poller in self.pollers {
            beats.push(poller.beat.clone());
            tasks.spawn(poller.run(stop_rx.clone()));
        }
        tasks.spawn(self.dispatcher.run(wake.clone(), stop_rx));
        telemetry.liveness.set(beats);
        Running {
            config: self.config,
            stop,
            tasks,
        }
    }
}

/// The loops of one generation, running.
struct Running {
    config: Arc<Config>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), StoreError>>,
}

impl Running {
    /// Asks every loop to stop and waits (up to 10 s) for deliveries in flight.
    async fn stop(mut self) -> Option<StoreError> {
        let _ = self.stop.send(true);
        let mut failure = None;
        let drain = async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Ok(Err(e)) = joined {
                    failure.get_or_insert(e);
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!("deliveries still in flight after 10s; they stay in the outbox and are retried");
            self.tasks.abort_all();
        }
        failure
    }
}

/// The assembled pipeline: sources, store, dispatcher.
pub struct Daemon {
    store: Store,
    generation: Generation,
    clock: Clock,
    wake: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    /// Held for the daemon's life: one daemon per database.
    _lock: InstanceLock,
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
        Daemon::with_clock(config, scheduler::system_clock())
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
        let lock = InstanceLock::acquire(&config.daemon.state_db)?;
        let telemetry = Arc::new(Telemetry::default());
        let wake = Arc::new(Notify::new());
        let store = Store::open(&config.daemon.state_db)?;
        let generation = Generation::build(config, &store, &wake, &telemetry, &clock)?;
        telemetry
            .health
            .configure(&generation.sources(), unix_now_ms());
        telemetry.metrics.set(
            "tunewatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        Ok(Daemon {
            store,
            generation,
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
        let mut report = OnceReport::default();
        for poller in &self.generation.pollers {
            match poller.poll().await? {
                PollResult::Stored(r) => report.events += r.events.len(),
                PollResult::Failed(why) => report.failed_sources.push((poller.name.clone(), why)),
            }
        }
        // Deliver until nothing is due now; failed rows are rescheduled into the future.
        loop {
            let n = self.generation.dispatcher.deliver_due().await?;
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
        let Daemon {
            store,
            generation,
            clock,
            wake,
            telemetry,
            _lock,
        } = self;
        let systemd = Systemd::from_env();
        let _http = match generation.config.daemon.listen {
            Some(addr) => {
                let (local, task) = http::serve(addr, telemetry.clone(), store.clone())
                    .await
                    .map_err(|source| Error::Io {
                        what: format!("cannot listen on {addr} (daemon.listen)"),
                        source,
                    })?;
                info!(addr = %local, "serving /healthz and /metrics");
                Some(AbortOnDrop(task))
            }
            None => None,
        };
        info!(
            sources = generation.pollers.len(),
            notifiers = generation.config.notifiers.len(),
            db = %store.path().display(),
            "tunewatch running"
        );
        let mut running = generation.start(&telemetry, &wake);
        systemd.ready(&status_line(&store, &running.config).await);
        let mut ticker = tokio::time::interval(
            systemd
                .watchdog()
                .map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY)),
        );
        let mut failure: Option<StoreError> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    info!("shutting down");
                    break;
                }
                Some(()) = reloads.recv() => {
                    systemd.reloading();
                    running = reload(running, &store, &wake, &telemetry, &clock).await;
                    systemd.ready(&status_line(&store, &running.config).await);
                }
                Some(joined) = running.tasks.join_next() => {
                    match joined {
                        Ok(Err(e)) => {
                            error!(error = %e, "stopping: the database cannot be used");
                            failure = Some(e);
                        }
                        Ok(Ok(())) => error!("a loop ended unexpectedly; stopping"),
                        Err(e) => error!(error = %e, "a loop failed; stopping"),
                    }
                    break;
                }
                _ = ticker.tick() => {
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
                    systemd.status(&status_line(&store, &running.config).await);
                }
            }
        }
        systemd.stopping();
        if let Some(e) = running.stop().await {
            failure.get_or_insert(e);
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Applies the config file again: on success the old loops stop (deliveries in flight finish)
/// and new ones start; on failure the running generation is returned untouched.
async fn reload(
    running: Running,
    store: &Store,
    wake: &Arc<Notify>,
    telemetry: &Arc<Telemetry>,
    clock: &Clock,
) -> Running {
    let path = running.config.path.clone();
    let loaded = Config::load(&path).map_err(Error::from).and_then(|c| {
        if c.daemon.state_db != running.config.daemon.state_db {
            return Err(Error::Config(ConfigError::Whole {
                path: path.clone(),
                message: "state_db cannot change on reload; restart tunewatch to move it".into(),
            }));
        }
        if c.daemon.listen != running.config.daemon.listen {
            warn!("daemon.listen changed; it takes effect at the next restart");
        }
        Generation::build(c, store, wake, telemetry, clock)
    });
    match loaded {
        Ok(next) => {
            if let Some(e) = running.stop().await {
                error!(error = %e, "a loop failed while stopping for the reload");
            }
            telemetry.health.configure(&next.sources(), unix_now_ms());
            info!(
                config = %path.display(),
                sources = next.pollers.len(),
                notifiers = next.config.notifiers.len(),
                routes = next.config.routes.len(),
                "config reloaded"
            );
            let running = next.start(telemetry, wake);
            wake.notify_one();
            running
        }
        Err(e) => {
            error!(error = %e, "config reload failed; keeping the running config");
            running
        }
    }
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
