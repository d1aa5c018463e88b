//! Anthropic's Message Batches: `GET {api_base}/messages/batches?limit&after_id` → `{data,
//! has_more, first_id, last_id}`, newest first; `GET …/messages/batches/{id}`. `x-api-key` and
//! `anthropic-version: 2023-06-01`. `processing_status` is `in_progress`, `canceling` or `ended`;
//! an ended batch is cancelled when a cancellation was initiated, expired when every request
//! expired, else completed. `request_counts` move only when the batch ends: no progress mid-run.
//! Shapes follow the SDK's `MessageBatch` and `MessageBatchRequestCounts`.

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, state_word, text, time};
use crate::config::{Secret, SourceConfig};
use crate::source::SourceError;
use crate::source::auth::Auth;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError, check_id};

/// The API version every request names.
pub const VERSION: &str = "2023-06-01";

/// The common word for a batch: `ended` split by its counts and its cancellation.
pub fn state(word: &str, raw: &Value) -> String {
    match word.trim().to_ascii_lowercase().as_str() {
        "in_progress" => "in_progress".into(),
        "canceling" | "cancelling" => "cancelling".into(),
        "ended" => {
            let n = |k: &str| count_at(raw, &format!("/request_counts/{k}")).unwrap_or(0);
            let total: u128 = ["processing", "succeeded", "errored", "canceled", "expired"]
                .iter()
                .map(|k| n(k))
                .sum();
            if raw.get("cancel_initiated_at").is_some_and(|v| !v.is_null()) {
                "cancelled".into()
            } else if total > 0 && n("expired") == total {
                "expired".into()
            } else {
                "completed".into()
            }
        }
        other => other.to_string(),
    }
}

fn read(raw: Value) -> Result<Job, JobParseError> {
    let id = raw
        .get("id")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("id"))?
        .to_string();
    check_id(&id)?;
    let word = state_word(&raw, "/processing_status", "")?;
    if word.is_empty() {
        return Err(JobParseError::Missing("processing_status"));
    }
    let common = state(&word, &raw);
    let mut job = batch(raw, id, &word, &common, "anthropic");
    job.created_at = time(&job.raw, "/created_at").as_i64();
    job.finished_at = time(&job.raw, "/ended_at").as_i64();
    Ok(job)
}

/// The client's shape and core.
///
/// # Errors
/// [`SourceError::Setup`] when the key cannot be a header.
pub(super) fn client(
    config: &SourceConfig,
    key: &Secret,
) -> Result<(ApiClient, Spec), SourceError> {
    let core = ApiClient::new(
        config,
        "anthropic",
        Auth::Header("x-api-key", key.clone()),
        &[("anthropic-version", &Some(VERSION.to_string()))],
        Vec::new(),
    )?;
    let spec = Spec {
        provider: "anthropic",
        list_path: "messages/batches".into(),
        list_query: Vec::new(),
        paging: Paging::AfterId { max_size: 1000 },
        id_key: "id",
        read,
        item: |id| check_id(id).map(|()| format!("messages/batches/{id}")),
        owns: |_| true,
        newest_first: true,
    };
    Ok((core, spec))
}

/// A Message Batch in OpenAI's batch fields. Its counts are final only: they are shown once it
/// has ended (every request is `processing` before).
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/request_counts/{k}"));
    let ended = raw.get("processing_status").and_then(Value::as_str) == Some("ended");
    let request_counts = if ended {
        let total = ["processing", "succeeded", "errored", "canceled", "expired"]
            .iter()
            .map(|k| n(k).unwrap_or(0))
            .sum();
        let failed = n("errored").unwrap_or(0) + n("expired").unwrap_or(0);
        counts(n("succeeded"), Some(failed), Some(total))
    } else {
        Value::Null
    };
    json!({
        "object": "batch",
        "id": text(raw, "/id"),
        "endpoint": "/v1/messages",
        "request_counts": request_counts,
        "created_at": time(raw, "/created_at"),
        "ended_at": time(raw, "/ended_at"),
        "expires_at": time(raw, "/expires_at"),
        "output_uri": text(raw, "/results_url"),
    })
}
