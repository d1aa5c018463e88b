//! The Gemini API's batches: `GET {api_base}/batches?pageSize&pageToken` → `{operations,
//! nextPageToken}`, each a long-running operation `{name: "batches/ID", metadata: {…}, done}`
//! whose `metadata` is the `GenerateContentBatch` (`model`, `displayName`, `state`, `createTime`,
//! `endTime`, `batchStats`, `output.responsesFile`); `GET {api_base}/batches/ID`. Key in
//! `x-goog-api-key`. The list promises no order: every poll reads it whole. Shapes follow the
//! Gemini API reference (`batches.list`, `GenerateContentBatch`, `BatchStats`).

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, errors, state_word, text, time, unknown};
use crate::config::{Secret, SourceConfig};
use crate::source::SourceError;
use crate::source::auth::Auth;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError, check_id};

/// A `BATCH_STATE_*` in the common vocabulary; unknown ones lower-cased without the prefix.
pub fn state(word: &str) -> String {
    let w = word.trim().to_ascii_uppercase();
    match w
        .trim_start_matches("BATCH_STATE_")
        .trim_start_matches("JOB_STATE_")
    {
        "PENDING" | "QUEUED" => "validating".into(),
        "RUNNING" => "in_progress".into(),
        "SUCCEEDED" => "completed".into(),
        "FAILED" => "failed".into(),
        "CANCELLING" | "CANCELING" => "cancelling".into(),
        "CANCELLED" | "CANCELED" => "cancelled".into(),
        "EXPIRED" => "expired".into(),
        _ => unknown(word, "BATCH_STATE_"),
    }
}

/// `batches/ID`, with an ID that is one path segment.
fn check(name: &str) -> Result<(), JobParseError> {
    match name.strip_prefix("batches/") {
        Some(id) if check_id(id).is_ok() => Ok(()),
        _ => Err(JobParseError::BadId(format!(
            "id \"{}\" is not a batch name like batches/ID",
            crate::inert::Inert(name)
        ))),
    }
}

fn read(raw: Value) -> Result<Job, JobParseError> {
    let name = raw
        .get("name")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("name"))?
        .to_string();
    check(&name)?;
    let word = state_word(&raw, "/metadata/state", "BATCH_STATE_UNSPECIFIED")?;
    let common = state(&word);
    let mut job = batch(raw, name, &word, &common, "gemini");
    job.model = job
        .raw
        .pointer("/metadata/model")
        .and_then(Value::as_str)
        .map(str::to_string);
    job.created_at = time(&job.raw, "/metadata/createTime").as_i64();
    job.finished_at = time(&job.raw, "/metadata/endTime").as_i64();
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
        "gemini",
        Auth::Header("x-goog-api-key", key.clone()),
        &[],
        Vec::new(),
    )?;
    let spec = Spec {
        provider: "gemini",
        list_path: "batches".into(),
        list_query: Vec::new(),
        paging: Paging::Token {
            array: "operations",
            token: "nextPageToken",
            size: "pageSize",
            page_token: "pageToken",
            max_size: 100,
        },
        id_key: "name",
        read,
        item: |name| check(name).map(|()| name.to_string()),
        owns: |_| true,
        newest_first: false,
    };
    Ok((core, spec))
}

/// A batch operation in OpenAI's batch fields.
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/metadata/batchStats/{k}"));
    let error = raw.get("error");
    json!({
        "object": "batch",
        "id": text(raw, "/name"),
        "model": text(raw, "/metadata/model"),
        "endpoint": "generateContent",
        "request_counts": counts(n("successfulRequestCount"), n("failedRequestCount"), n("requestCount")),
        "created_at": time(raw, "/metadata/createTime"),
        "ended_at": time(raw, "/metadata/endTime"),
        "input_file_id": text(raw, "/metadata/inputConfig/fileName"),
        "output_file_id": text(raw, "/metadata/output/responsesFile"),
        "errors": errors(
            error.and_then(|e| e.get("code")).map(|c| c.to_string()),
            error.and_then(|e| e.get("message")).and_then(Value::as_str).map(str::to_string),
        ),
    })
}
