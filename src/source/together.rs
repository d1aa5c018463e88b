//! Together AI's fine-tunes API: `GET /fine-tunes` answers every job at once (`{"data": [...]}`,
//! no paging), `GET /fine-tunes/{id}` one. Times are ISO-8601 strings and the fine-tuned model is
//! `model_output_name`; statuses are normalised here (the word is kept as `provider_status`). No
//! separate metrics list: no training insight.

use reqwest::Url;
use serde_json::Value;

use super::client::{ApiClient, Auth, parse_page};
use super::job::{Job, JobParseError, JobStatus, unix_time};
use super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Secret, SourceConfig};

/// A client for one configured `together` source.
#[derive(Clone)]
pub struct TogetherClient {
    core: ApiClient,
    list_url: Url,
}

/// Together's status word, normalised (DESIGN.md, Sources); unknown words lower-cased.
pub fn status(word: &str) -> JobStatus {
    let word = word.trim();
    match word.to_ascii_lowercase().as_str() {
        "pending" | "queued" => JobStatus::Queued,
        "running" | "compressing" | "uploading" => JobStatus::Running,
        "completed" => JobStatus::Succeeded,
        "error" => JobStatus::Failed,
        "cancel_requested" => JobStatus::Cancelling,
        "cancelled" => JobStatus::Cancelled,
        other => JobStatus::parse(&other.to_lowercase()),
    }
}

impl TogetherClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key is not a valid header value or `api_base` cannot
    /// take a path.
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<TogetherClient, SourceError> {
        let core = ApiClient::new(
            config,
            "together",
            Auth::Bearer(key.clone()),
            &[],
            Vec::new(),
        )?;
        let list_url = core.url("fine-tunes", &[])?;
        Ok(TogetherClient { core, list_url })
    }

    fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let mut job = Job::from_value(raw)?;
        job.status = status(&job.provider_status);
        job.provider = "together";
        let time = |k: &str| job.raw.get(k).and_then(unix_time);
        job.created_at = time("created_at");
        if job.status.is_terminal() {
            job.finished_at = time("updated_at");
        }
        // The wire name is `model_output_name` (the SDK's `output_name` is an alias of it).
        job.fine_tuned_model = ["model_output_name", "output_name"]
            .iter()
            .find_map(|k| job.raw.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        job.trained_tokens = job.raw.get("token_count").and_then(Value::as_i64);
        Ok(job)
    }
}

impl Source for TogetherClient {
    fn provider(&self) -> &'static str {
        "together"
    }

    fn newest_first(&self) -> bool {
        false
    }

    fn list_page<'a>(
        &'a self,
        _cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let (body, requests) = self.core.get(&self.list_url, observe).await?;
            let mut page = parse_page(&self.core.shown(&self.list_url), &body, &Self::to_job)?;
            // One answer holds every job.
            page.has_more = false;
            Ok((page, requests))
        })
    }

    fn advance(&self, _cursor: &mut Cursor, _page: &Page) -> Result<bool, SourceError> {
        Ok(false)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(self.core.get_one("fine-tunes", id, observe, &Self::to_job))
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        Self::to_job(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_to_the_normalised_words_and_times_become_unix_seconds() {
        for (word, normal) in [
            ("pending", "queued"),
            ("queued", "queued"),
            ("running", "running"),
            ("compressing", "running"),
            ("uploading", "running"),
            ("completed", "succeeded"),
            ("error", "failed"),
            ("cancel_requested", "cancelling"),
            ("cancelled", "cancelled"),
            ("Preparing", "preparing"),
        ] {
            assert_eq!(status(word).as_str(), normal, "{word}");
        }
        let job = TogetherClient::to_job(json!({"id": "ft-1", "status": "completed",
            "created_at": "2024-12-01T10:00:00.123Z", "updated_at": "2024-12-01T11:00:00Z",
            "model_output_name": "acme/Meta-Llama-3.1-8B-ft-1", "token_count": 5000}))
        .unwrap();
        assert_eq!(job.created_at, Some(1_733_047_200));
        assert_eq!(job.finished_at, Some(1_733_050_800));
        assert_eq!(job.provider_status, "completed");
        assert_eq!(
            job.fine_tuned_model.as_deref(),
            Some("acme/Meta-Llama-3.1-8B-ft-1")
        );
        assert_eq!(job.trained_tokens, Some(5000));
    }
}
