//! Watching the fine-tuned models a source's account has (DESIGN.md, "Model lifecycle"): the
//! model list read every `models_interval` (one request), at once when a job of the source has
//! just made a model tunewatch does not know yet, and every poll a check of the dates stored —
//! a lead crossed or a date passed needs no request.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Config, SourceConfig, SourceSecrets, Watch};
use crate::event::Event;
use crate::inert::Inert;
use crate::source::models::ModelsClient;
use crate::source::{RequestObserver, SourceError};
use crate::store::{ModelPoll, Store, StoreError};

/// One source's model watch.
pub struct ModelWatch {
    client: ModelsClient,
    interval: i64,
    leads: Vec<u64>,
}

impl ModelWatch {
    /// The watch of `source`, when it watches `"models"`.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when its key cannot be a header.
    pub fn new(
        source: &SourceConfig,
        secrets: &SourceSecrets,
    ) -> Result<Option<ModelWatch>, SourceError> {
        if !source.watch.contains(&Watch::Models) {
            return Ok(None);
        }
        let key = crate::source::key_of(source, secrets)?;
        Ok(Some(ModelWatch {
            client: ModelsClient::new(source, key)?,
            interval: source.models_interval.0.as_secs() as i64,
            leads: source.retire_warn.clone(),
        }))
    }

    /// Reads the list when it is due (or `now_too`), then checks the dates stored; the events
    /// raised, already stored with their outbox rows. A read that fails is logged and recorded,
    /// and the dates are still checked.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub async fn round(
        &self,
        source: &str,
        store: &Store,
        config: &Arc<Config>,
        clock: &Clock,
        now_too: bool,
        observe: RequestObserver<'_>,
    ) -> Result<Vec<Event>, StoreError> {
        let now = clock.now();
        let due = now_too || {
            let (name, interval) = (source.to_string(), self.interval);
            store
                .blocking(move |s| s.models_due(&name, now, interval))
                .await?
        };
        let mut events = Vec::new();
        if due {
            match self.client.list(observe).await {
                Ok(models) => {
                    let job_of = made_by(store, source).await?;
                    let n = models.len();
                    let (store2, name, leads) =
                        (store.clone(), source.to_string(), self.leads.clone());
                    let config = config.clone();
                    events = store2
                        .blocking(move |s| {
                            let route = |e: &crate::event::Event| {
                                crate::pipeline::routing::plan(&config, e, now.saturating_mul(1000))
                            };
                            let poll = ModelPoll {
                                source: &name,
                                now,
                                leads: &leads,
                                route: &route,
                            };
                            s.observe_models(&poll, models, &job_of)
                        })
                        .await?;
                    info!(source = %source, models = n, events = events.len(), "read the model list");
                }
                Err(e) => {
                    warn!(source = %source, error = %e, "could not read the model list");
                    let (name, msg) = (source.to_string(), e.to_string());
                    store
                        .blocking(move |s| s.models_failed(&name, &msg))
                        .await?;
                }
            }
        }
        let (name, leads, config) = (source.to_string(), self.leads.clone(), config.clone());
        let later = store
            .blocking(move |s| {
                let route = |e: &crate::event::Event| {
                    crate::pipeline::routing::plan(&config, e, now.saturating_mul(1000))
                };
                s.model_deadlines(&ModelPoll {
                    source: &name,
                    now,
                    leads: &leads,
                    route: &route,
                })
            })
            .await?;
        events.extend(later);
        for e in &events {
            info!(source = %source, event = %e.event_type, model = %Inert(e.subject()), id = %e.id, "event");
        }
        Ok(events)
    }
}

/// The job that made each model of `source`, by the model's id: every job whose
/// `fine_tuned_model` names one.
async fn made_by(store: &Store, source: &str) -> Result<HashMap<String, String>, StoreError> {
    let name = source.to_string();
    let jobs = store.blocking(|s| s.jobs()).await?;
    Ok(jobs
        .into_iter()
        .filter(|j| j.source == name)
        .filter_map(|j| Some((j.fine_tuned_model?, j.job_id)))
        .collect())
}
