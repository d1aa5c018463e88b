//! Mistral's batch jobs: `GET {api_base}/batch/jobs?page&page_size&order_by=-created` →
//! `{data, object, total}`; `GET …/batch/jobs/{id}`. Bearer key. The list is read whole each
//! poll (its order is not promised). Counts: `total_requests`, `succeeded_requests`,
//! `failed_requests`, `completed_requests`. Shapes follow the SDK's `BatchJobOut`.

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, state_word, text, time, unknown};
use crate::config::{Secret, SourceConfig};
use crate::source::SourceError;
use crate::source::auth::Auth;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError, check_id};

/// A Mistral batch status in the common vocabulary.
pub fn state(word: &str) -> String {
    match word.trim().to_ascii_uppercase().as_str() {
        "QUEUED" => "validating".into(),
        "RUNNING" => "in_progress".into(),
        "SUCCESS" => "completed".into(),
        "FAILED" => "failed".into(),
        "TIMEOUT_EXCEEDED" => "expired".into(),
        "CANCELLATION_REQUESTED" => "cancelling".into(),
        "CANCELLED" | "CANCELED" => "cancelled".into(),
        _ => unknown(word, ""),
    }
}

fn read(raw: Value) -> Result<Job, JobParseError> {
    let id = raw
        .get("id")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("id"))?
        .to_string();
    check_id(&id)?;
    let word = state_word(&raw, "/status", "")?;
    if word.is_empty() {
        return Err(JobParseError::Missing("status"));
    }
    let common = state(&word);
    let mut job = batch(raw, id, &word, &common, "mistral");
    job.model = job
        .raw
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    job.created_at = time(&job.raw, "/created_at").as_i64();
    job.finished_at = time(&job.raw, "/completed_at").as_i64();
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
        "mistral",
        Auth::Bearer(key.clone()),
        &[],
        Vec::new(),
    )?;
    let spec = Spec {
        provider: "mistral",
        list_path: "batch/jobs".into(),
        list_query: vec![("order_by", "-created".into())],
        paging: Paging::Numbered { max_size: 100 },
        id_key: "id",
        read,
        item: |id| check_id(id).map(|()| format!("batch/jobs/{id}")),
        owns: |_| true,
        newest_first: false,
    };
    Ok((core, spec))
}

/// A batch job in OpenAI's batch fields.
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/{k}"));
    let errors: Vec<Value> = raw
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(1)
        .map(|e| json!({"code": Value::Null, "message": e.get("message")}))
        .collect();
    json!({
        "object": "batch",
        "id": text(raw, "/id"),
        "model": text(raw, "/model"),
        "endpoint": text(raw, "/endpoint"),
        "request_counts": counts(n("succeeded_requests"), n("failed_requests"), n("total_requests")),
        "created_at": time(raw, "/created_at"),
        "ended_at": time(raw, "/completed_at"),
        "input_file_id": raw.pointer("/input_files/0").cloned().unwrap_or(Value::Null),
        "output_file_id": text(raw, "/output_file"),
        "error_file_id": text(raw, "/error_file"),
        "errors": if errors.is_empty() { Value::Null } else { json!({"data": errors}) },
    })
}
