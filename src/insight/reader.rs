//! Reading a job's events and checkpoints incrementally: newest first, page by page, stopping at
//! the first page that reaches an item already stored, so a read costs one request when little
//! is new. The edge between a provider and the store; it decides nothing about the training.

use crate::source::{JobList, RequestObserver, Source, SourceError};
use crate::store::{Store, StoreError};

/// Pages read at most in one read of one list (a job has a few thousand events at most).
const MAX_PAGES: u32 = 100;

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

/// Reads and stores the items of `job_id`'s `list` that are not stored yet. `None` when the
/// provider has no such list.
///
/// # Errors
/// [`ReadError`]: the API or the database failed; what was stored before stays stored, and the
/// next read goes on from there.
pub async fn read_new(
    api: &dyn Source,
    store: &Store,
    source: &str,
    job_id: &str,
    list: JobList,
    observe: RequestObserver<'_>,
) -> Result<Option<Read>, ReadError> {
    let mut read = Read::default();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let Some((page, requests)) = api
            .list_job_items(job_id, list, after.as_deref(), observe)
            .await?
        else {
            return Ok(None);
        };
        read.requests += requests;
        // Newest first: once an item of this page is known, the rest (and older pages) are too.
        let (s, j) = (source.to_string(), job_id.to_string());
        let ids: Vec<String> = page
            .items
            .iter()
            .filter_map(|i| i.get("id").and_then(|v| v.as_str()).map(str::to_string))
            .collect();
        let items = page.items;
        let (new, reached_known) = store
            .blocking(move |st| {
                let mut known = false;
                for id in &ids {
                    known |= st.has_job_item(&s, &j, list, id)?;
                }
                Ok((st.store_job_items(&s, &j, list, &items)?, known))
            })
            .await?;
        read.new += new;
        if reached_known || !page.has_more || page.last_id.is_none() || page.last_id == after {
            return Ok(Some(read));
        }
        after = page.last_id;
    }
    Ok(Some(read))
}
