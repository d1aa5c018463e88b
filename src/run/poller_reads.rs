//! A poller's reads beside the job list: the full read of a finishing job and its final
//! training insight (before its alert), the insight of running jobs whose numbers moved, and the
//! model list when it is due.

use crate::inert::Inert;
use crate::model::EventKind;
use crate::source::Job;
use crate::store::{ObserveReport, PollContext, StoreError};
use std::time::Duration;
use tracing::warn;

use super::poller::{PollResult, SourcePoller};

impl SourcePoller {
    /// The model list when it is due — or at once when this poll saw a job make a model
    /// tunewatch does not know yet — and the retirement dates stored.
    pub(super) async fn models_round(
        &self,
        models: &crate::run::models::ModelWatch,
        result: PollResult,
    ) -> Result<PollResult, StoreError> {
        let observe = |status: Option<u16>, took: Duration| {
            self.beat.busy();
            self.count_request(status, took);
        };
        let made: Vec<String> = match &result {
            PollResult::Stored(report) => report
                .events
                .iter()
                .filter(|e| {
                    e.is(&EventKind::Status(
                        crate::model::job::Kind::FineTuning,
                        crate::model::job::JobStatus::Succeeded,
                    ))
                })
                .filter_map(|e| {
                    e.job
                        .as_ref()?
                        .get("fine_tuned_model")?
                        .as_str()
                        .map(str::to_string)
                })
                .collect(),
            PollResult::Failed(_) => Vec::new(),
        };
        let new_model = if made.is_empty() {
            false
        } else {
            let name = self.name.clone();
            let known = self.store.blocking(move |s| s.model_ids(&name)).await?;
            made.iter().any(|m| !known.contains(m))
        };
        let events = models
            .round(
                &self.name,
                &self.store,
                &self.config,
                &self.clock,
                new_model,
                &observe,
            )
            .await?;
        if !events.is_empty() {
            self.wake.notify_one();
        }
        Ok(result)
    }

    /// Running jobs among `jobs` that carry their own progress (Fireworks' percent): a change of
    /// it may cross a progress mark, as a new metric point would.
    pub(super) fn moving(&self, jobs: &[Job]) -> Vec<String> {
        if !self.insight.config.enabled {
            return Vec::new();
        }
        jobs.iter()
            .filter(|j| j.status == crate::source::JobStatus::Running)
            .filter(|j| {
                crate::source::view::openai_shape(&j.raw)
                    .get("progress")
                    .is_some_and(serde_json::Value::is_number)
            })
            .map(|j| j.id.clone())
            .collect()
    }

    /// The jobs among `jobs` that are finishing, before they are stored: read in full where the
    /// list gives less (Bedrock's failure message and losses), and their final insight read, so
    /// that their terminal alert carries the final numbers and the best checkpoint.
    pub(super) async fn final_reads(
        &self,
        jobs: &mut [Job],
        observe: crate::source::RequestObserver<'_>,
    ) -> Result<u32, StoreError> {
        let mut finishing = self.store.finishing(&self.name, jobs);
        let mut ids = std::mem::take(&mut finishing.known);
        if !finishing.unknown.is_empty() {
            let name = self.name.clone();
            if self.store.blocking(move |s| s.baseline_done(&name)).await? {
                ids.append(&mut finishing.unknown);
            }
        }
        let mut requests = 0;
        for job in jobs.iter_mut().filter(|j| ids.contains(&j.id)) {
            let Some(client) = self
                .clients
                .iter()
                .find(|c| c.kind() == job.kind && c.owns(&job.id))
            else {
                continue;
            };
            match client.details(job, observe).await {
                Ok(Some(full)) => {
                    requests += 1;
                    *job = full;
                }
                Ok(None) => {}
                Err(e) => {
                    requests += 1;
                    warn!(job = %Inert(&job.id), error = %e,
                          "could not read the finished job in full; its alert says what the list said");
                }
            }
        }
        if !self.insight.config.enabled {
            return Ok(requests);
        }
        let Some(client) = &self.insight_client else {
            return Ok(requests);
        };
        let reads = self
            .insight
            .final_reads(client.as_ref(), &self.store, &self.name, &ids, observe)
            .await?;
        Ok(requests + reads.requests)
    }

    /// Reads the running jobs that are due and raises the insight events their series call for.
    pub(super) async fn read_running(
        &self,
        observe: crate::source::RequestObserver<'_>,
        report: &mut ObserveReport,
        moving: Vec<String>,
    ) -> Result<u32, StoreError> {
        let Some(client) = &self.insight_client else {
            return Ok(0);
        };
        let reads = self
            .insight
            .read_running(
                client.as_ref(),
                &self.store,
                &self.name,
                self.clock.now_ms(),
                observe,
            )
            .await?;
        let silent = report.baseline;
        let mut updated = reads.updated;
        for id in moving {
            if !updated.contains(&id) {
                updated.push(id);
            }
        }
        for job_id in updated {
            let config = self.config.clone();
            let now_ms = self.clock.now_ms();
            let route =
                move |e: &crate::event::Event| crate::pipeline::routing::plan(&config, e, now_ms);
            let (name, now) = (self.name.clone(), self.clock.now());
            // Insight events are raised whether or not alerts carry insight.
            let policy =
                crate::pipeline::Policy::viewing(&self.config.prices, self.insight.config.clone());
            let raised = self
                .store
                .blocking(move |s| {
                    let poll = PollContext {
                        source: &name,
                        now,
                        stall_after: i64::MAX,
                        failing_after: u32::MAX,
                        route: &route,
                        last_batch: false,
                        decide: &policy,
                    };
                    s.raise_insight_events(&poll, &job_id, silent)
                })
                .await?;
            report.outbox_rows += raised.outbox_rows;
            report.events.extend(raised.events);
        }
        Ok(reads.requests)
    }
}
