//! Batches on every provider (DESIGN.md, "Batches on every provider"): OpenAI's and Azure's own
//! client ([`openai`]), and one shared client ([`listed`]) that each other provider describes in
//! its own file — where its list is, how it pages, its states in the common batch vocabulary
//! (`validating, in_progress, finalizing, cancelling, completed, failed, expired, cancelled`, the
//! provider's word kept), and its batch read in OpenAI's field names ([`view`]) for the alerts,
//! the status page and `batch.partially_failed`.

mod anthropic;
mod bedrock;
mod fireworks;
mod gemini;
mod listed;
mod mistral;
mod openai;
mod together;
mod vertex;

use std::sync::Arc;

use serde_json::Value;

use super::job::{Job, JobParseError, JobStatus, Kind, MAX_STATUS_CHARS};
use super::{Source, SourceError};
use crate::config::{SourceConfig, SourceKind, SourceSecrets};

pub use listed::Listed;
pub use openai::BatchesClient;

/// The batch client of `config`'s kind.
///
/// # Errors
/// [`SourceError::Setup`] when the credential is not the kind's, or `api_base` cannot take the
/// list's path; for a kind without a batch API (which `check` refuses first).
pub fn build(
    config: &SourceConfig,
    secrets: &SourceSecrets,
) -> Result<Arc<dyn Source>, SourceError> {
    let key = || super::key_of(config, secrets);
    let (core, spec) = match config.kind {
        SourceKind::Openai | SourceKind::AzureOpenai => {
            return Ok(Arc::new(BatchesClient::new(config, key()?)?));
        }
        SourceKind::Anthropic => anthropic::client(config, key()?)?,
        SourceKind::Gemini => gemini::client(config, key()?)?,
        SourceKind::Mistral => mistral::client(config, key()?)?,
        SourceKind::Together => together::client(config, key()?)?,
        SourceKind::VertexAi => vertex::client(config, secrets)?,
        SourceKind::Bedrock => bedrock::client(config, secrets)?,
        SourceKind::Fireworks => fireworks::client(config, key()?)?,
        SourceKind::Huggingface => {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: "huggingface has no batch API".into(),
            });
        }
    };
    Ok(Arc::new(Listed::new(config, core, spec)?))
}

/// A batch of another provider in OpenAI's batch fields (`request_counts {total, completed,
/// failed}`, `progress` 0–1, `model`, `endpoint`, times in unix seconds, the output and error
/// files or `gs://` / `s3://` locations, `errors`), recognised by its shape; `None` for anything
/// else. Pure.
pub fn view(raw: &Value) -> Option<Value> {
    let s = |k: &str| raw.get(k).and_then(Value::as_str);
    if s("type") == Some("message_batch") {
        return Some(anthropic::view(raw));
    }
    if let Some(name) = s("name") {
        if name.starts_with("batches/") {
            return Some(gemini::view(raw));
        }
        if name.starts_with("projects/") && name.contains("/batchPredictionJobs/") {
            return Some(vertex::view(raw));
        }
        if name.starts_with("accounts/") && name.contains("/batchInferenceJobs/") {
            return Some(fireworks::view(raw));
        }
    }
    if s("jobArn").is_some_and(|a| a.contains(":model-invocation-job/")) {
        return Some(bedrock::view(raw));
    }
    if s("object") == Some("batch") && raw.get("total_requests").is_some() {
        return Some(mistral::view(raw));
    }
    if raw.get("job_deadline").is_some() && raw.get("user_id").is_some() {
        return Some(together::view(raw));
    }
    None
}

/// A batch's progress (0–1), read in OpenAI's fields ([`view`]): its requests done of all, else the share its provider gives.
pub fn progress(batch: &Value) -> Option<f64> {
    let n = |k: &str| {
        batch
            .pointer(&format!("/request_counts/{k}"))
            .and_then(crate::inert::count)
            .map(|c| c as f64)
    };
    match n("total") {
        Some(total) if total > 0.0 => Some(
            ((n("completed").unwrap_or(0.0) + n("failed").unwrap_or(0.0)) / total).clamp(0.0, 1.0),
        ),
        _ => batch
            .get("progress")
            .and_then(Value::as_f64)
            .filter(|p| p.is_finite())
            .map(|p| p.clamp(0.0, 1.0)),
    }
}

/// The provider's state word at `pointer`, checked (bounded, no control characters); `absent`
/// when there is none.
fn state_word(raw: &Value, pointer: &str, absent: &str) -> Result<String, JobParseError> {
    let word = raw
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|w| !w.trim().is_empty())
        .unwrap_or(absent)
        .to_string();
    if word.len() > MAX_STATUS_CHARS || word.chars().any(char::is_control) {
        return Err(JobParseError::BadStatus);
    }
    Ok(word)
}

/// A batch from its parts: the provider's word kept, the common one (`in_progress`) as status.
fn batch(raw: Value, id: String, word: &str, common: &str, provider: &'static str) -> Job {
    Job::from_parts(
        raw,
        id,
        word,
        JobStatus::parse(common),
        provider,
        Kind::Batch,
    )
}

/// A provider's word without `prefix`, lower-cased: how an unknown state is kept.
fn unknown(word: &str, prefix: &str) -> String {
    let w = word.trim().to_ascii_uppercase();
    w.trim_start_matches(prefix).to_ascii_lowercase()
}

/// A count as JSON: a number when it fits, else its digits (which [`crate::inert::count`]
/// reads back).
fn num(n: u128) -> Value {
    u64::try_from(n).map_or_else(|_| Value::from(n.to_string()), Value::from)
}

/// `request_counts` from succeeded, failed and total, each read whole; `None` without a total.
fn counts(completed: Option<u128>, failed: Option<u128>, total: Option<u128>) -> Value {
    match total {
        Some(t) => serde_json::json!({
            "total": num(t),
            "completed": num(completed.unwrap_or(0)),
            "failed": num(failed.unwrap_or(0)),
        }),
        None => Value::Null,
    }
}

/// A time field as unix seconds, or null.
fn time(raw: &Value, pointer: &str) -> Value {
    raw.pointer(pointer)
        .and_then(super::job::unix_time)
        .map_or(Value::Null, Value::from)
}

/// A count at `pointer` (a number or a string of digits).
fn count_at(raw: &Value, pointer: &str) -> Option<u128> {
    raw.pointer(pointer).and_then(crate::inert::count)
}

/// A string at `pointer`, or null.
fn text(raw: &Value, pointer: &str) -> Value {
    raw.pointer(pointer)
        .and_then(Value::as_str)
        .map_or(Value::Null, Value::from)
}

/// `errors` in OpenAI's shape from one message (and code).
fn errors(code: Option<String>, message: Option<String>) -> Value {
    match (code, message) {
        (None, None) => Value::Null,
        (code, message) => serde_json::json!({"data": [{"code": code, "message": message}]}),
    }
}

#[cfg(test)]
mod tests;
