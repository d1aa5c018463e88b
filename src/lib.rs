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
//! * [`notify`]: the notifiers and rendering.
//! * [`sim`] and [`demo`]: the simulated jobs API and the self-contained demo.
//! * [`commands`]: the text of the read-only commands (`status`, `history`, `outbox`, `check`).
//!
//! [`Daemon::run`] takes its shutdown signal as a parameter: `main` passes SIGTERM/SIGINT, tests
//! pass a channel.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod demo;
pub mod diff;
pub mod dispatch;
pub mod event;
pub mod notify;
pub mod scheduler;
pub mod sim;
pub mod source;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::{error, info};

use config::{Config, ConfigError};
use dispatch::Dispatcher;
use notify::Notifiers;
use scheduler::{PollResult, SourcePoller};
use source::{OpenAiClient, SourceError};
use store::{Store, StoreError};

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

/// How long shutdown waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The assembled pipeline: sources, store, dispatcher.
pub struct Daemon {
    config: Arc<Config>,
    store: Store,
    pollers: Vec<SourcePoller>,
    dispatcher: Dispatcher,
    wake: Arc<Notify>,
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
    /// Reads the secrets, builds the clients and notifiers, and opens the database.
    ///
    /// # Errors
    /// [`Error::Config`] for a missing or malformed secret; [`Error::Store`] when the database
    /// cannot be opened or migrated; [`Error::Source`] when a client cannot be built.
    pub fn new(config: Config) -> Result<Daemon, Error> {
        let config = Arc::new(config);
        let mut clients = Vec::new();
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
            clients.push((s, OpenAiClient::new(s, &key)?));
        }
        let notifiers = Arc::new(Notifiers::from_config(&config)?);
        let store = Store::open(&config.daemon.state_db)?;
        let wake = Arc::new(Notify::new());
        let pollers = clients
            .into_iter()
            .map(|(s, client)| {
                SourcePoller::new(
                    s.name.clone(),
                    s.poll_interval.0,
                    client,
                    store.clone(),
                    config.clone(),
                    wake.clone(),
                )
            })
            .collect();
        let dispatcher = Dispatcher::new(store.clone(), config.clone(), notifiers);
        Ok(Daemon {
            config,
            store,
            pollers,
            dispatcher,
            wake,
        })
    }

    /// The database this daemon writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One poll of every source, then one delivery round of what is due.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub async fn once(&self) -> Result<OnceReport, StoreError> {
        let mut report = OnceReport::default();
        for poller in &self.pollers {
            match poller.poll().await? {
                PollResult::Stored(r) => report.events += r.events.len(),
                PollResult::Failed(why) => report.failed_sources.push((poller.name.clone(), why)),
            }
        }
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

    /// Polls every source on its interval and delivers continuously until `shutdown` completes.
    /// Deliveries in flight then get up to 10 s to finish.
    ///
    /// # Errors
    /// [`StoreError`] when the database can no longer be written.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        info!(
            sources = self.pollers.len(),
            notifiers = self.config.notifiers.len(),
            db = %self.store.path().display(),
            "tunewatch running"
        );
        for poller in self.pollers {
            tasks.spawn(poller.run(stop_rx.clone()));
        }
        tasks.spawn(self.dispatcher.run(self.wake.clone(), stop_rx.clone()));
        let mut failure: Option<StoreError> = None;
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => info!("shutting down"),
            Some(joined) = tasks.join_next() => {
                match joined {
                    Ok(Err(e)) => {
                        error!(error = %e, "stopping: the database cannot be used");
                        failure = Some(e);
                    }
                    Ok(Ok(())) => {}
                    Err(e) => error!(error = %e, "a task ended unexpectedly"),
                }
            }
        }
        let _ = stop_tx.send(true);
        let drain = async {
            while let Some(joined) = tasks.join_next().await {
                if let Ok(Err(e)) = joined {
                    failure.get_or_insert(e);
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            error!("deliveries still in flight after 10s; they will be retried after restart");
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}
