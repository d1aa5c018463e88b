//! Mistral's fine-tuning jobs API: `GET /fine_tuning/jobs?page=N&page_size=M` answers
//! `{"data": [...], "total": T}`, `GET /fine_tuning/jobs/{id}` one job. Statuses are upper-case
//! words, normalised here (the word itself is kept as `provider_status`). Mistral does not promise
//! an order, so every poll reads every page (they are few: 100 jobs each). No separate events or
//! checkpoints lists: no training insight.

use reqwest::Url;
use serde_json::Value;

use super::client::{ApiClient, Auth, parse_page};
use super::job::{Job, JobParseError, JobStatus};
use super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Secret, SourceConfig};

/// Mistral's largest `page_size`.
const MAX_PAGE_SIZE: u32 = 100;

/// A client for one configured `mistral` source.
#[derive(Clone)]
pub struct MistralClient {
    core: ApiClient,
    jobs_url: Url,
    page_size: u32,
    max_pages: u32,
}

/// Mistral's status word, normalised (DESIGN.md, Sources); unknown words lower-cased.
pub fn status(word: &str) -> JobStatus {
    let word = word.trim();
    match word.to_ascii_uppercase().as_str() {
        "QUEUED" => JobStatus::Queued,
        "STARTED" | "VALIDATING" | "VALIDATED" => JobStatus::ValidatingFiles,
        "RUNNING" => JobStatus::Running,
        "SUCCESS" => JobStatus::Succeeded,
        "FAILED" | "FAILED_VALIDATION" => JobStatus::Failed,
        "CANCELLED" => JobStatus::Cancelled,
        "CANCELLATION_REQUESTED" => JobStatus::Cancelling,
        other => JobStatus::parse(&other.to_lowercase()),
    }
}

impl MistralClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key is not a valid header value or `api_base` cannot
    /// take a path.
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<MistralClient, SourceError> {
        let core = ApiClient::new(
            config,
            "mistral",
            Auth::Bearer(key.clone()),
            &[],
            Vec::new(),
        )?;
        let jobs_url = core.url("fine_tuning/jobs", &[])?;
        Ok(MistralClient {
            core,
            jobs_url,
            page_size: config.page_size.min(MAX_PAGE_SIZE),
            max_pages: config.max_pages,
        })
    }

    fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let mut job = Job::from_value(raw)?;
        job.status = status(&job.provider_status);
        job.provider = "mistral";
        Ok(job)
    }

    async fn list_page(
        &self,
        cursor: &Cursor,
        observe: RequestObserver<'_>,
    ) -> Result<(Page, u32), SourceError> {
        // The cursor holds the next page number ("1", "2", …); none for the first.
        let number: u64 = cursor.after().and_then(|a| a.parse().ok()).unwrap_or(0);
        let mut url = self.jobs_url.clone();
        url.query_pairs_mut()
            .append_pair("page", &number.to_string())
            .append_pair("page_size", &self.page_size.to_string());
        let (body, requests) = self.core.get(&url, observe).await?;
        let shown = self.core.shown(&url);
        let mut page = parse_page(&shown, &body, &Self::to_job)?;
        // The pages are the truth, `total` a hint: a short page is the last; a full one is
        // followed by another unless `total` agrees that everything was read. A `total` smaller
        // than what the pages already returned is wrong, and is not trusted to end paging (a
        // page that only repeats earlier ones is stopped by the scheduler).
        let total = serde_json::from_slice::<TotalOnly>(&body)
            .ok()
            .and_then(|t| t.total)
            .and_then(|t| t.as_u64());
        let returned = (page.jobs.len() + page.skipped.len()) as u64;
        let read = number * u64::from(self.page_size) + returned;
        let full = returned >= u64::from(self.page_size);
        page.has_more = full && total.is_none_or(|t| t != read);
        page.last_id = Some((number + 1).to_string());
        Ok((page, requests))
    }
}

#[derive(serde::Deserialize)]
struct TotalOnly {
    total: Option<Value>,
}

impl Source for MistralClient {
    fn provider(&self) -> &'static str {
        "mistral"
    }

    fn newest_first(&self) -> bool {
        false
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(MistralClient::list_page(self, cursor, observe))
    }

    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        self.core
            .advance(cursor, page, self.max_pages, &self.jobs_url)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(
            self.core
                .get_one("fine_tuning/jobs", id, observe, &Self::to_job),
        )
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        Self::to_job(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_normalised_words_and_unknown_ones_are_lower_cased() {
        for (word, normal) in [
            ("QUEUED", "queued"),
            ("STARTED", "validating_files"),
            ("VALIDATING", "validating_files"),
            ("VALIDATED", "validating_files"),
            ("RUNNING", "running"),
            ("SUCCESS", "succeeded"),
            ("FAILED", "failed"),
            ("FAILED_VALIDATION", "failed"),
            ("CANCELLED", "cancelled"),
            ("CANCELLATION_REQUESTED", "cancelling"),
            ("WARMING_UP", "warming_up"),
        ] {
            assert_eq!(status(word).as_str(), normal, "{word}");
        }
    }
}
