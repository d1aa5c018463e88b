//! The in-memory job index: what the store remembers of every job between polls (its content
//! hash and status), so that an unchanged job costs one hash comparison and no query.
//!
//! It mirrors the `jobs` table after each commit. Its lock is held only to read and to apply
//! committed changes, never across SQL: a poll waiting on the database cannot stall another
//! poll's triage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::db::{Db, DbError};

use crate::source::Job;
use crate::source::job::{KNOWN_STATUSES, TERMINAL};

/// What the store remembers of a job between polls, compactly: the index is the daemon's
/// largest structure (one entry per job the organisation ever ran).
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// The first 16 bytes of the SHA-256 of the job's canonical JSON: enough to tell a change
    /// (a false "unchanged" needs a 2⁻¹²⁸ coincidence), half the memory of the whole hash.
    digest: [u8; 16],
    status: Status,
    /// The API answered 404 for it: no longer followed.
    gone: bool,
}

/// A status: one byte for the ones tunewatch knows, the string for any other.
#[derive(Debug, Clone)]
enum Status {
    Known(u8),
    Other(Box<str>),
}

impl Known {
    pub(super) fn new(hash: &[u8; 32], status: &str, gone: bool) -> Known {
        let mut digest = [0; 16];
        digest.copy_from_slice(&hash[..16]);
        let status = match KNOWN_STATUSES.iter().position(|k| *k == status) {
            Some(i) => Status::Known(i as u8),
            None => Status::Other(status.into()),
        };
        Known {
            digest,
            status,
            gone,
        }
    }

    /// Whether `hash` is the content this entry remembers.
    pub(super) fn same(&self, hash: &[u8; 32]) -> bool {
        self.digest[..] == hash[..16]
    }

    pub(super) fn status(&self) -> &str {
        match &self.status {
            Status::Known(i) => KNOWN_STATUSES.get(usize::from(*i)).copied().unwrap_or(""),
            Status::Other(s) => s,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        !self.gone && !TERMINAL.contains(&self.status())
    }
}

fn read_all(db: &Db) -> Result<HashMap<Box<str>, SourceJobs>, DbError> {
    let mut map: HashMap<Box<str>, SourceJobs> = HashMap::new();
    db.query_map(
        "SELECT source, job_id, content_hash, status, gone_at FROM jobs",
        (),
        |r| {
            let (source, id): (String, String) = (r.get(0)?, r.get(1)?);
            // A malformed stored hash only means the job is written again at its next poll.
            let hash: [u8; 32] = crate::source::job::unhex(&r.get::<String>(2)?)
                .and_then(|v| v.try_into().ok())
                .unwrap_or([0; 32]);
            let status: String = r.get(3)?;
            let gone = r.get::<Option<i64>>(4)?.is_some();
            map.entry(source.into())
                .or_default()
                .insert(id.into(), Known::new(&hash, &status, gone));
            Ok(())
        },
    )?;
    for jobs in map.values_mut() {
        jobs.shrink_to_fit();
    }
    Ok(map)
}

/// job id → what is known of the job, for one source.
type SourceJobs = HashMap<Box<str>, Known>;

/// source → its jobs.
#[derive(Debug, Default)]
pub(super) struct JobIndex {
    map: Mutex<HashMap<Box<str>, SourceJobs>>,
}

impl JobIndex {
    /// Reads every job row.
    pub(super) fn load(db: &Db) -> Result<JobIndex, DbError> {
        Ok(JobIndex {
            map: Mutex::new(read_all(db)?),
        })
    }

    /// Reads every job row again: another daemon led, and wrote jobs this one has not seen.
    pub(super) fn reload(&self, db: &Db) -> Result<(), DbError> {
        let map = read_all(db)?;
        *self.lock() = map;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, SourceJobs>> {
        // Plain values; a panic while it was held leaves a consistent (if older) map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of each of `jobs` (a copy, taken under a brief lock).
    pub(super) fn lookup<'j>(&self, source: &str, jobs: &'j [Job]) -> HashMap<&'j str, Known> {
        let map = self.lock();
        let Some(known) = map.get(source) else {
            return HashMap::new();
        };
        jobs.iter()
            .filter_map(|j| known.get(j.id.as_str()).map(|k| (j.id.as_str(), k.clone())))
            .collect()
    }

    /// Makes committed job rows visible.
    pub(super) fn apply(&self, source: &str, written: HashMap<&str, Known>) {
        let mut map = self.lock();
        let jobs = map.entry(source.into()).or_default();
        for (id, known) in written {
            jobs.insert(id.into(), known);
        }
    }

    /// Marks a job gone (the API answers 404 for it).
    pub(super) fn mark_gone(&self, source: &str, job_id: &str) {
        if let Some(k) = self
            .lock()
            .get_mut(source)
            .and_then(|jobs| jobs.get_mut(job_id))
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
            let known = |job: &Job| map.get(source).and_then(|jobs| jobs.get(job.id.as_str()));
            let same = jobs
                .iter()
                .zip(&digests)
                .map(|(job, digest)| known(job).is_some_and(|k| k.same(digest)))
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

    /// The source's jobs (not gone) in `status`.
    pub(super) fn ids_in(&self, source: &str, status: &str) -> Vec<String> {
        self.lock().get(source).map_or_else(Vec::new, |jobs| {
            jobs.iter()
                .filter(|(_, k)| !k.gone && k.status() == status)
                .map(|(id, _)| id.to_string())
                .collect()
        })
    }

    /// How many of the source's jobs are unfinished and followed (not gone).
    pub(super) fn open_count(&self, source: &str) -> usize {
        self.lock()
            .get(source)
            .map_or(0, |jobs| jobs.values().filter(|k| k.is_open()).count())
    }

    /// Watched jobs by (source, status).
    pub(super) fn counts(&self) -> Vec<(String, String, u64)> {
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (source, jobs) in self.lock().iter() {
            for known in jobs.values() {
                *counts
                    .entry((source.to_string(), known.status().to_string()))
                    .or_default() += 1;
            }
        }
        counts.into_iter().map(|((a, b), n)| (a, b, n)).collect()
    }
}
