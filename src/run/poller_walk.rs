//! One poll's walk down a source's job list: page by page, newest first, dropping unchanged jobs
//! as it goes and storing the changed ones in batches.

use tracing::warn;

use super::poller::{BATCH, SeenIds, SourcePoller};
use crate::inert::Inert;
use crate::source::{Job, RequestObserver, Source};
use crate::store::{ObserveReport, StoreError};

/// What a poll has gathered from the list so far.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) seen: SeenIds,
    /// Changed jobs not stored yet.
    pub(super) changed: Vec<Job>,
    pub(super) report: ObserveReport,
    pub(super) requests: u32,
    /// Copies of jobs already listed in this poll (said once per poll).
    listed_twice: usize,
    /// Whether a page of nothing but copies stopped the paging.
    repeated_page: bool,
    /// Running jobs whose own numbers moved (a progress percent): their insight is looked at.
    pub(super) moving: Vec<String>,
}

impl Walk {
    /// Says once per poll, however many pages or copies there were, that copies were ignored.
    pub(super) fn say_copies(&self) {
        if self.listed_twice == 0 {
            return;
        }
        warn!(
            copies = self.listed_twice,
            repeated_page = self.repeated_page,
            "the API listed {} job(s) twice in one poll; the later copies are ignored{}",
            self.listed_twice,
            if self.repeated_page {
                ", and a page of nothing but copies stopped the paging"
            } else {
                ""
            }
        );
    }
}

impl SourcePoller {
    /// Walks one client's list. An incremental poll stops at the first page that ends in a job
    /// already known: older pages hold only known jobs, whose unfinished ones are fetched by id
    /// afterwards (the periodic full scan checks the ordering). Unchanged jobs are dropped page
    /// by page, so memory follows what changed, not how many jobs the organisation has.
    ///
    /// `Ok(Some(message))` when the API failed: the poll failed, saying why.
    pub(super) async fn walk(
        &self,
        client: &dyn Source,
        full: bool,
        walk: &mut Walk,
        observe: RequestObserver<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut cursor = crate::source::Cursor::default();
        loop {
            let (mut page, n) = match client.list_page(&cursor, observe).await {
                Ok(p) => p,
                Err(e) => return Ok(Some(e.to_string())),
            };
            walk.requests += n;
            for (id, why) in &page.skipped {
                warn!(job = %Inert(id.as_deref().unwrap_or("?")), error = %why,
                  "skipped an entry that is not a job");
            }
            let more = match client.advance(&mut cursor, &page) {
                Ok(more) => more,
                Err(e) => return Ok(Some(e.to_string())),
            };
            // A job listed twice in one poll is taken as first listed (the newest answer); a
            // later copy could otherwise flip its status back and forth on every poll. A page of
            // nothing but such copies repeats an earlier one: paging stops there (a server that
            // answers the same page for every page number, with an inflated total, would
            // otherwise be asked up to `max_pages` times, every poll).
            let listed = page.jobs.len();
            page.jobs.retain(|j| walk.seen.insert(&j.id));
            let copies = listed - page.jobs.len();
            walk.listed_twice += copies;
            if listed > 0 && copies == listed {
                walk.repeated_page = true;
                return Ok(None);
            }
            let (reached_known, fresh) = self.store.triage(&self.name, page.jobs);
            walk.changed.extend(fresh);
            if walk.changed.len() >= BATCH {
                walk.requests += self.final_reads(&mut walk.changed, observe).await?;
                walk.moving.extend(self.moving(&walk.changed));
                let batch = std::mem::take(&mut walk.changed);
                self.store_batch(batch, false, &mut walk.report).await?;
            }
            if !more || (!full && reached_known && client.newest_first()) {
                return Ok(None);
            }
        }
    }
}
