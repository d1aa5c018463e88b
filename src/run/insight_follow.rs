//! When a source's jobs are read for insight: each running job at most once per
//! `metrics_interval`, and every finishing job once more (events and checkpoints) before its
//! terminal alert is built. A read that fails is logged and tried again at the next one; only
//! the database failing is an error, because then the poll cannot be stored either.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::warn;

use super::insight_reader::{ReadError, read_new};
use crate::config::InsightConfig;
use crate::inert::Inert;
use crate::source::{JobList, RequestObserver, Source};
use crate::store::{Store, StoreError};

/// The insight reads of one source.
pub struct Follower {
    pub config: InsightConfig,
    /// When each running job was last read, in unix milliseconds of the daemon's clock (a
    /// restart reads each once more: one request).
    last_read: Mutex<HashMap<String, i64>>,
}

/// What a round of reads did.
#[derive(Debug, Default)]
pub struct Reads {
    /// Jobs whose reads stored something new.
    pub updated: Vec<String>,
    pub requests: u32,
}

impl Follower {
    pub fn new(config: InsightConfig) -> Follower {
        Follower {
            config,
            last_read: Mutex::new(HashMap::new()),
        }
    }

    fn last_read(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // Plain timestamps; a poisoned lock still holds valid ones.
        self.last_read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `list` of `job_id`; a provider failure is logged and counted as nothing new.
    async fn read(
        &self,
        api: &dyn Source,
        store: &Store,
        (source, job_id): (&str, &str),
        list: JobList,
        observe: RequestObserver<'_>,
        reads: &mut Reads,
    ) -> Result<bool, StoreError> {
        match read_new(api, store, source, job_id, list, observe).await {
            Ok(Some(read)) => {
                reads.requests += read.requests;
                Ok(read.new > 0)
            }
            Ok(None) => Ok(false),
            Err(ReadError::Store(e)) => Err(e),
            Err(ReadError::Source(e)) => {
                warn!(job = %Inert(job_id), list = list.segment(), error = %e,
                      "could not read the job's {}; the alert carries what was read before",
                      list.segment());
                Ok(false)
            }
        }
    }

    /// The final read of jobs about to be stored as finished: new events and the checkpoints.
    ///
    /// # Errors
    /// [`StoreError`] when what was read cannot be stored.
    pub async fn final_reads(
        &self,
        api: &dyn Source,
        store: &Store,
        source: &str,
        job_ids: &[String],
        observe: RequestObserver<'_>,
    ) -> Result<Reads, StoreError> {
        let mut reads = Reads::default();
        if !self.config.enabled {
            return Ok(reads);
        }
        for id in job_ids {
            let key = (source, id.as_str());
            let mut new = self
                .read(api, store, key, JobList::Events, observe, &mut reads)
                .await?;
            new |= self
                .read(api, store, key, JobList::Checkpoints, observe, &mut reads)
                .await?;
            self.last_read().remove(id);
            if new {
                reads.updated.push(id.clone());
            }
        }
        Ok(reads)
    }

    /// Reads the running jobs of `source` that are due (not read for `metrics_interval`) at
    /// `now_ms` (the daemon's clock).
    ///
    /// # Errors
    /// [`StoreError`] when what was read cannot be stored.
    pub async fn read_running(
        &self,
        api: &dyn Source,
        store: &Store,
        source: &str,
        now_ms: i64,
        observe: RequestObserver<'_>,
    ) -> Result<Reads, StoreError> {
        let mut reads = Reads::default();
        if !self.config.enabled {
            return Ok(reads);
        }
        let running = store.running_jobs(source);
        let interval_ms =
            i64::try_from(self.config.metrics_interval.0.as_millis()).unwrap_or(i64::MAX);
        let due: Vec<String> = {
            let mut last = self.last_read();
            last.retain(|id, _| running.contains(id));
            running
                .into_iter()
                .filter(|id| {
                    last.get(id)
                        .is_none_or(|at| now_ms.saturating_sub(*at) >= interval_ms)
                })
                .collect()
        };
        for id in due {
            let key = (source, id.as_str());
            let mut new = self
                .read(api, store, key, JobList::Events, observe, &mut reads)
                .await?;
            if self.config.checkpoints {
                new |= self
                    .read(api, store, key, JobList::Checkpoints, observe, &mut reads)
                    .await?;
            }
            // The round's start, not the read's end: reads stay on the poll's rhythm.
            self.last_read().insert(id.clone(), now_ms);
            if new {
                reads.updated.push(id);
            }
        }
        Ok(reads)
    }
}
