//! A generation: the pollers and notifiers built from one config, started under a cancellation
//! token, replaced as a whole on reload; and how the daemon reads the end of its loops.

use super::daemon::Error;
use crate::clock::Clock;
use crate::config::{self, Config, ConfigError};
use crate::http::intake::Intake;
use crate::notify::{Notifiers, SigningKey};
use crate::run::dispatcher::Dispatcher;
use crate::run::poller::SourcePoller;
use crate::store::{Store, StoreError, unix_now_ms};
use crate::telemetry::Telemetry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The parts built from one config: pollers, and the notifiers the dispatcher uses.
pub(super) struct Generation {
    pub(super) config: Arc<Config>,
    pub(super) pollers: Vec<Arc<SourcePoller>>,
    pub(super) notifiers: Arc<Notifiers>,
    /// The keys of the sources that take OpenAI's webhooks.
    pub(super) webhook_keys: HashMap<String, SigningKey>,
    /// The sources that evaluate new models, with their chat clients.
    pub(super) evaluating: HashMap<String, crate::run::evaluator::EvalSource>,
    /// Wakes the dispatcher when an evaluation raised its event.
    pub(super) wake: Arc<Notify>,
}

impl Generation {
    /// Reads the secrets and builds the clients and notifiers of `config`.
    pub(super) fn build(
        config: Config,
        store: &Store,
        wake: &Arc<Notify>,
        telemetry: &Arc<Telemetry>,
        clock: &Clock,
    ) -> Result<Generation, Error> {
        let config = Arc::new(config);
        let mut pollers = Vec::new();
        let mut webhook_keys = HashMap::new();
        let mut evaluating = HashMap::new();
        for s in &config.sources {
            if let Some(r) = &s.webhook_secret {
                let owner = || format!("source {:?} webhook secret", s.name);
                let secret = r
                    .read(config::SecretKind::WebhookSecret)
                    .map_err(|message| ConfigError::Secret {
                        owner: owner(),
                        message,
                    })?;
                let key = SigningKey::from_secret(&secret).map_err(|e| ConfigError::Secret {
                    owner: owner(),
                    message: e.to_string(),
                })?;
                webhook_keys.insert(s.name.clone(), key);
            }
            let secrets = s
                .auth
                .read_in(None)
                .map_err(|message| ConfigError::Secret {
                    owner: format!("source {:?} {}", s.name, s.auth.label()),
                    message,
                })?;
            if let Some(e) = &s.evaluate {
                let key = crate::source::key_of(s, &secrets)?;
                let client = crate::source::chat::ChatClient::new(s, e, key).map_err(|e| {
                    ConfigError::Secret {
                        owner: format!("source {:?} evaluate", s.name),
                        message: e.to_string(),
                    }
                })?;
                evaluating.insert(
                    s.name.clone(),
                    crate::run::evaluator::EvalSource {
                        source: s.clone(),
                        evaluate: e.clone(),
                        client,
                    },
                );
            }
            pollers.push(Arc::new(SourcePoller::new(
                s,
                (
                    crate::source::build_all(s, &secrets)?,
                    crate::run::models::ModelWatch::new(s, &secrets)?,
                ),
                store.clone(),
                config.clone(),
                wake.clone(),
                telemetry.clone(),
                clock.clone(),
            )));
        }
        let notifiers = Arc::new(Notifiers::from_config(&config)?);
        Ok(Generation {
            config,
            pollers,
            notifiers,
            webhook_keys,
            evaluating,
            wake: wake.clone(),
        })
    }

    pub(super) fn sources(&self) -> Vec<(String, Duration)> {
        self.pollers
            .iter()
            .map(|p| (p.name.clone(), p.interval))
            .collect()
    }

    /// Starts the pollers; they stop when their `stop` turns true. The dispatcher, which
    /// outlives generations, is given this generation's config and notifiers.
    pub(super) fn start(
        self,
        parent: &CancellationToken,
        telemetry: &Telemetry,
        dispatcher: &Dispatcher,
        intake: &Intake,
    ) -> Running {
        let stop = parent.child_token();
        let mut beats = vec![dispatcher.beat.clone()];
        let mut pollers = JoinSet::new();
        let mut by_name = HashMap::new();
        for poller in self.pollers {
            beats.push(poller.beat.clone());
            by_name.insert(poller.name.clone(), poller.clone());
            pollers.spawn(poller.run(stop.clone()));
        }
        // Refresh requests (from webhooks, or left by a daemon that died) are carried out by
        // this generation's pollers; the endpoint takes this generation's keys.
        intake.set_keys(self.webhook_keys);
        pollers.spawn(crate::run::refresher::refresher(
            by_name,
            dispatcher.store().clone(),
            intake.wake.clone(),
            dispatcher.clock().clone(),
            stop.clone(),
        ));
        pollers.spawn(crate::run::alerting::alerting(
            dispatcher.store().clone(),
            self.config.clone(),
            dispatcher.clock().clone(),
            self.wake.clone(),
            stop.clone(),
        ));
        if !self.evaluating.is_empty() {
            pollers.spawn(crate::run::evaluator::evaluator(
                self.evaluating,
                dispatcher.store().clone(),
                self.config.clone(),
                self.wake.clone(),
                dispatcher.clock().clone(),
                stop.clone(),
            ));
        }
        dispatcher.reconfigure(self.config.clone(), self.notifiers);
        telemetry.liveness.set(beats);
        Running {
            config: self.config,
            stop,
            pollers,
        }
    }
}

/// The pollers of one generation, running.
pub(super) struct Running {
    pub(super) config: Arc<Config>,
    /// Cancelled when this generation is replaced or the daemon stops.
    pub(super) stop: CancellationToken,
    pub(super) pollers: JoinSet<Result<(), StoreError>>,
}

/// Waits for `tasks` to end after their stop signal, up to `grace`, then aborts the rest.
/// Returns the first store failure among them, or a loop that panicked.
pub(super) async fn drain(
    mut tasks: JoinSet<Result<(), StoreError>>,
    grace: Duration,
) -> Option<Error> {
    let mut failure = None;
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Err(e)) => {
                    failure.get_or_insert(Error::Store(e));
                }
                Err(e) if e.is_panic() => {
                    failure.get_or_insert(Error::LoopEnded(format!("a loop panicked: {e}")));
                }
                _ => {}
            }
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        warn!("deliveries still in flight at shutdown; they stay in the outbox and are retried");
        tasks.abort_all();
    }
    failure
}

/// Moves every task of `from` into `into` (a JoinSet cannot be merged directly): each is
/// awaited by a small task that carries its result.
pub(super) fn retiring_adopt(
    into: &mut JoinSet<Result<(), StoreError>>,
    mut from: JoinSet<Result<(), StoreError>>,
) {
    if from.is_empty() {
        return;
    }
    into.spawn(async move {
        let mut first = Ok(());
        while let Some(joined) = from.join_next().await {
            match joined {
                Ok(Err(e)) if first.is_ok() => first = Err(e),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => {}
            }
        }
        first
    });
}

/// What a loop's unexpected end means: always a reason to stop with an error.
pub(super) fn loop_end(
    what: &str,
    joined: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Error {
    match joined {
        Ok(Err(e)) => Error::Store(e),
        Ok(Ok(())) => Error::LoopEnded(format!("{what} ended unexpectedly")),
        Err(e) => Error::LoopEnded(format!("{what} failed: {e}")),
    }
}

/// A retired poller's end: only a store failure or a panic matters.
pub(super) fn retired(
    joined: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Option<Error> {
    match joined {
        Ok(Err(e)) => Some(Error::Store(e)),
        Err(e) if e.is_panic() => Some(Error::LoopEnded(format!("a poll loop failed: {e}"))),
        _ => None,
    }
}

/// Reads the config file again and builds its generation; `None` (logged) when it is unusable,
/// and the running generation stays.
pub(super) fn reload(
    current: &Config,
    store: &Store,
    wake: &Arc<Notify>,
    telemetry: &Arc<Telemetry>,
    clock: &Clock,
) -> Option<Generation> {
    let path = current.path.clone();
    let loaded = Config::load(&path).map_err(Error::from).and_then(|c| {
        if c.daemon.state_db != current.daemon.state_db {
            return Err(Error::Config(ConfigError::Whole {
                path: path.clone(),
                message: "state_db cannot change on reload; restart tunewatch to move it".into(),
            }));
        }
        if c.daemon.listen != current.daemon.listen {
            warn!("daemon.listen changed; it takes effect at the next restart");
        }
        Generation::build(c, store, wake, telemetry, clock)
    });
    match loaded {
        Ok(next) => {
            telemetry.health.configure(&next.sources(), unix_now_ms());
            info!(
                config = %path.display(),
                sources = next.pollers.len(),
                notifiers = next.config.notifiers.len(),
                routes = next.config.routes.len(),
                "config reloaded"
            );
            Some(next)
        }
        Err(e) => {
            error!(error = %e, "config reload failed; keeping the running config");
            None
        }
    }
}
