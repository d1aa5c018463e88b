//! Reading a job's events and checkpoints incrementally: newest first, page by page, stopping at
//! the first page that reaches an item already stored, so a read costs one request when little
//! is new. The edge between a provider and the store; it decides nothing about the training.
//!
//! Every read is bounded and atomic. It takes at most [`MAX_PAGES`] pages and
//! [`MAX_ITEMS_PER_READ`] items, stops at a page that only repeats what it already read, and
//! stores what it read in one transaction — so a crash mid-read stores nothing and the next read
//! starts again from the top: no hole. A read that stops at its bound (more new items than one
//! read takes) stores, in that same transaction, where it stopped; the next read fills in below
//! it. A job keeps at most [`MAX_ITEMS_PER_JOB`] items per list: a list that never ends cannot
//! fill the disk.

use std::collections::HashSet;

use serde_json::Value;
use tracing::warn;

use crate::inert::Inert;
use crate::source::{JobList, RequestObserver, Source, SourceError};
use crate::store::{ResumeAt, Store, StoreError};

/// Pages read at most in one read of one list.
pub const MAX_PAGES: u32 = 50;
/// Items one read holds (and stores) at most.
pub const MAX_ITEMS_PER_READ: usize = 5_000;
/// Items kept per job and list (a real job has a few thousand events at most).
pub const MAX_ITEMS_PER_JOB: usize = 20_000;

/// Why a read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Items stored by this read.
    pub new: usize,
    /// API requests made, retries included.
    pub requests: u32,
}

/// Where a walk down the list ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// At an item already stored, or at the end of the list: nothing below is missing.
    Complete,
    /// At the read's bound, with more below: the id to go on after next time.
    Bounded(String),
}

/// One walk down a list, from `after` (the top when `None`), collecting unknown items into
/// `items` until a known one, the end, a repeated page or the read's bound.
struct Walk<'a> {
    api: &'a dyn Source,
    store: &'a Store,
    key: (&'a str, &'a str),
    list: JobList,
    observe: RequestObserver<'a>,
    /// Ids read in this read (both walks): a page of nothing but these repeats itself.
    seen: HashSet<String>,
    pages: u32,
    room: usize,
    read: Read,
}

impl Walk<'_> {
    /// `Ok(None)` when the provider has no such list.
    async fn down(
        &mut self,
        mut after: Option<String>,
        items: &mut Vec<Value>,
    ) -> Result<Option<Ended>, ReadError> {
        loop {
            if self.pages >= MAX_PAGES {
                // The bound: go on below the last page taken, next read.
                return Ok(Some(match after {
                    Some(a) => Ended::Bounded(a),
                    None => Ended::Complete,
                }));
            }
            let Some((page, requests)) = self
                .api
                .list_job_items(self.key.1, self.list, after.as_deref(), self.observe)
                .await?
            else {
                return Ok(None);
            };
            self.pages += 1;
            self.read.requests += requests;
            let ids: Vec<String> = page
                .items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_string))
                .collect();
            if !ids.is_empty() && ids.iter().all(|id| self.seen.contains(id)) {
                warn!(job = %Inert(self.key.1), list = self.list.segment(), pages = self.pages,
                      "the API sent a page of the job's {} a second time in one read; \
                       stopped reading there", self.list.segment());
                return Ok(Some(Ended::Complete));
            }
            let (s, j, list) = (self.key.0.to_string(), self.key.1.to_string(), self.list);
            let lookup = ids.clone();
            let known: HashSet<String> = self
                .store
                .blocking(move |st| {
                    let mut known = HashSet::new();
                    for id in lookup {
                        if st.has_job_item(&s, &j, list, &id)? {
                            known.insert(id);
                        }
                    }
                    Ok(known)
                })
                .await?;
            let reached_known = !known.is_empty();
            for item in page.items {
                let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                if known.contains(&id) || !self.seen.insert(id.clone()) {
                    continue;
                }
                items.push(item);
                if items.len() >= self.room {
                    // Full: the rest of this page and below are read next time.
                    return Ok(Some(Ended::Bounded(id)));
                }
            }
            // Newest first: once an item of this page is known, the rest (and older pages) are.
            if reached_known || !page.has_more || page.last_id.is_none() || page.last_id == after {
                return Ok(Some(Ended::Complete));
            }
            after = page.last_id;
        }
    }
}

/// Reads and stores the items of `job_id`'s `list` that are not stored yet: from the top down to
/// the first known item, then on below an earlier read that stopped at its bound. `None` when the
/// provider has no such list.
///
/// # Errors
/// [`ReadError`]: the API or the database failed; nothing of this read is stored then, and the
/// next read starts again where the last stored one left things.
pub async fn read_new(
    api: &dyn Source,
    store: &Store,
    source: &str,
    job_id: &str,
    list: JobList,
    observe: RequestObserver<'_>,
) -> Result<Option<Read>, ReadError> {
    let (s, j) = (source.to_string(), job_id.to_string());
    let (stored, resume) = store
        .blocking(move |st| st.job_items_state(&s, &j, list))
        .await?;
    if stored >= MAX_ITEMS_PER_JOB {
        tracing::debug!(job = %Inert(job_id), list = list.segment(),
                        "the job keeps the most items it may; not read");
        return Ok(Some(Read::default()));
    }
    let mut walk = Walk {
        api,
        store,
        key: (source, job_id),
        list,
        observe,
        seen: HashSet::new(),
        pages: 0,
        room: (MAX_ITEMS_PER_JOB - stored).min(MAX_ITEMS_PER_READ),
        read: Read::default(),
    };
    let mut items = Vec::new();
    let Some(top) = walk.down(None, &mut items).await? else {
        return Ok(None);
    };
    // The top walk's own bound makes a new gap (newer than the old one, which is then given
    // up); else an earlier read's gap is filled from where it stopped.
    let next = match (top, resume) {
        (Ended::Bounded(at), old) => {
            if old.is_some() {
                warn!(job = %Inert(job_id), list = list.segment(),
                      "more new items arrived than reads can take; an older gap is given up");
            }
            ResumeAt::Set(at)
        }
        (Ended::Complete, Some(at)) => match walk.down(Some(at), &mut items).await? {
            Some(Ended::Bounded(at)) => ResumeAt::Set(at),
            _ => ResumeAt::Clear,
        },
        (Ended::Complete, None) => ResumeAt::Keep,
    };
    let mut read = walk.read;
    if let ResumeAt::Set(_) = next {
        warn!(job = %Inert(job_id), list = list.segment(), items = items.len(),
              "the job's {} has more new items than one read takes; the rest are read next time",
              list.segment());
    }
    let capped = stored + items.len() >= MAX_ITEMS_PER_JOB;
    let (s, j) = (source.to_string(), job_id.to_string());
    read.new = store
        .blocking(move |st| st.store_job_items(&s, &j, list, &items, next))
        .await?;
    if capped {
        warn!(job = %Inert(job_id), list = list.segment(), kept = MAX_ITEMS_PER_JOB,
              "the job has reached the most {} tunewatch keeps per job; no more are read",
              list.segment());
    }
    Ok(Some(read))
}
