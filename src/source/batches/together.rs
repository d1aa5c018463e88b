//! Together AI's batches: `GET {api_base}/batches` (a bare array of every batch, no paging) and
//! `GET …/batches/{id}`. Bearer key. Statuses `VALIDATING`, `IN_PROGRESS`, `CANCELING`,
//! `COMPLETED`, `FAILED`, `EXPIRED`, `CANCELLED`; a `progress` of 0–100 and no request counts
//! (so no `batch.partially_failed`). Shapes follow the SDK's `BatchJob`.

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, errors, state_word, text, time, unknown};
use crate::config::{Secret, SourceConfig};
use crate::source::SourceError;
use crate::source::auth::Auth;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError, check_id};

/// A Together batch status in the common vocabulary.
pub fn state(word: &str) -> String {
    match word.trim().to_ascii_uppercase().as_str() {
        "VALIDATING" => "validating".into(),
        "IN_PROGRESS" => "in_progress".into(),
        "CANCELING" | "CANCELLING" => "cancelling".into(),
        "COMPLETED" => "completed".into(),
        "FAILED" => "failed".into(),
        "EXPIRED" => "expired".into(),
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
    let mut job = batch(raw, id, &word, &common, "together");
    job.model = job
        .raw
        .get("model_id")
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
        "together",
        Auth::Bearer(key.clone()),
        &[],
        Vec::new(),
    )?;
    let spec = Spec {
        provider: "together",
        list_path: "batches".into(),
        list_query: Vec::new(),
        paging: Paging::Whole,
        id_key: "id",
        read,
        item: |id| check_id(id).map(|()| format!("batches/{id}")),
        owns: |id| !id.starts_with("ft-"),
        newest_first: false,
    };
    Ok((core, spec))
}

/// A batch in OpenAI's batch fields, its progress as a share.
pub(super) fn view(raw: &Value) -> Value {
    let progress = raw
        .get("progress")
        .and_then(Value::as_f64)
        .filter(|p| p.is_finite())
        .map_or(Value::Null, |p| Value::from((p / 100.0).clamp(0.0, 1.0)));
    json!({
        "object": "batch",
        "id": text(raw, "/id"),
        "model": text(raw, "/model_id"),
        "endpoint": text(raw, "/endpoint"),
        "progress": progress,
        "created_at": time(raw, "/created_at"),
        "ended_at": time(raw, "/completed_at"),
        "expires_at": time(raw, "/job_deadline"),
        "input_file_id": text(raw, "/input_file_id"),
        "output_file_id": text(raw, "/output_file_id"),
        "error_file_id": text(raw, "/error_file_id"),
        "errors": errors(None, raw.get("error").and_then(Value::as_str).map(str::to_string)),
    })
}
