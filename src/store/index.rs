//! The in-memory job index: what the store remembers of every job between polls (its content
//! hash and status), so that an unchanged job costs one hash comparison and no query.
//!
//! It mirrors the `jobs` table after each commit. Its lock is held only to read and to apply
//! committed changes, never across SQL: a poll waiting on the database cannot stall another
//! poll's triage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use crate::source::Job;
use crate::source::job::TERMINAL;

/// What the store remembers of a job between polls.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// SHA-256 of the job's canonical JSON (32 bytes, not 64 hex characters: the index is the
    /// daemon's largest structure).
    pub(super) hash: [u8; 32],
    pub(super) status: String,
    /// The API answered 404 for it: no longer followed.
    pub(super) gone: bool,
}

impl Known {
    pub(super) fn is_open(&self) -> bool {
        !self.gone && !TERMINAL.contains(&self.status.as_str())
    }
}

type Key = (String, String);

/// (source, job id) → what is known of the job.
#[derive(Debug, Default)]
pub(super) struct JobIndex {
    map: Mutex<HashMap<Key, Known>>,
}

impl JobIndex {
    /// Reads every job row.
    pub(super) fn load(conn: &Connection) -> Result<JobIndex, rusqlite::Error> {
        let mut stmt =
            conn.prepare("SELECT source, job_id, content_hash, status, gone_at FROM jobs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                Known {
                    // A malformed stored hash only means the job is written again at its next
                    // poll.
                    hash: crate::source::job::unhex(&r.get::<_, String>(2)?)
                        .and_then(|v| v.try_into().ok())
                        .unwrap_or([0; 32]),
                    status: r.get(3)?,
                    gone: r.get::<_, Option<i64>>(4)?.is_some(),
                },
            ))
        })?;
        Ok(JobIndex {
            map: Mutex::new(rows.collect::<Result<_, _>>()?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Known>> {
        // Plain values; a panic while it was held leaves a consistent (if older) map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of each of `jobs` (a copy, taken under a brief lock).
    pub(super) fn lookup<'j>(&self, source: &str, jobs: &'j [Job]) -> HashMap<&'j str, Known> {
        let map = self.lock();
        jobs.iter()
            .filter_map(|j| {
                map.get(&(source.to_string(), j.id.clone()))
                    .map(|k| (j.id.as_str(), k.clone()))
            })
            .collect()
    }

    /// Makes committed job rows visible.
    pub(super) fn apply(&self, source: &str, written: HashMap<&str, Known>) {
        let mut map = self.lock();
        for (id, known) in written {
            map.insert((source.to_string(), id.to_string()), known);
        }
    }

    /// Marks a job gone (the API answers 404 for it).
    pub(super) fn mark_gone(&self, source: &str, job_id: &str) {
        if let Some(k) = self
            .lock()
            .get_mut(&(source.to_string(), job_id.to_string()))
        {
            k.gone = true;
        }
    }

    /// Sorts one page: whether its oldest job (the last: pages are newest first) was already
    /// known, and the jobs that changed.
    ///
    /// New jobs appear on top, so once a page ends in a known job, the older pages hold only
    /// known jobs; the unfinished ones among them are followed by id, and the finished ones
    /// cannot change. So paging can stop there (a periodic full scan checks the ordering).
    pub(super) fn triage(&self, source: &str, jobs: Vec<Job>) -> (bool, Vec<Job>) {
        // Hash first, outside the lock: the lock is held for lookups only.
        let digests: Vec<[u8; 32]> = jobs.iter().map(Job::content_digest).collect();
        let (same, oldest_known): (Vec<bool>, bool) = {
            let map = self.lock();
            let known = |job: &Job| map.get(&(source.to_string(), job.id.clone()));
            let same = jobs
                .iter()
                .zip(&digests)
                .map(|(job, digest)| known(job).is_some_and(|k| k.hash == *digest))
                .collect();
            (same, jobs.last().is_some_and(|j| known(j).is_some()))
        };
        let changed = jobs
            .into_iter()
            .zip(same)
            .filter_map(|(job, same)| (!same).then_some(job))
            .collect();
        (oldest_known, changed)
    }

    /// How many of the source's jobs are unfinished and followed (not gone).
    pub(super) fn open_count(&self, source: &str) -> usize {
        self.lock()
            .iter()
            .filter(|((s, _), k)| s == source && k.is_open())
            .count()
    }

    /// Watched jobs by (source, status).
    pub(super) fn counts(&self) -> Vec<(String, String, u64)> {
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for ((source, _), known) in self.lock().iter() {
            *counts
                .entry((source.clone(), known.status.clone()))
                .or_default() += 1;
        }
        counts.into_iter().map(|((a, b), n)| (a, b, n)).collect()
    }
}
