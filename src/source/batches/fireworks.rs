//! Fireworks AI's batch inference jobs: `GET {api_base}/accounts/A/batchInferenceJobs
//! ?pageSize&pageToken&orderBy=createTime desc` → `{batchInferenceJobs, nextPageToken}`;
//! `GET {api_base}/{name}`. Bearer key. States `JOB_STATE_*` (pre-run ones are `validating`,
//! `WRITING_RESULTS` is `finalizing`); `jobProgress` gives the percent and the request counts
//! (`totalInputRequests`, `successfullyProcessedRequests`, `failedRequests`). Shapes follow
//! Fireworks' published OpenAPI (`gatewayBatchInferenceJob`, `gatewayJobProgress`).

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, errors, state_word, text, time, unknown};
use crate::config::{Scope, Secret, SourceConfig};
use crate::source::SourceError;
use crate::source::auth::Auth;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError};
use crate::source::names::check_fireworks;

const COLLECTION: &str = "batchInferenceJobs";

/// A Fireworks `JOB_STATE_*` of a batch job in the common vocabulary.
pub fn state(word: &str) -> String {
    let w = word.trim().to_ascii_uppercase();
    match w.trim_start_matches("JOB_STATE_") {
        "CREATING"
        | "VALIDATING"
        | "CREATING_INPUT_DATASET"
        | "PENDING"
        | "RE_QUEUEING"
        | "IDLE" => "validating".into(),
        "RUNNING" | "PAUSED" => "in_progress".into(),
        "WRITING_RESULTS" => "finalizing".into(),
        "CANCELLING" | "CANCELING" => "cancelling".into(),
        "COMPLETED" => "completed".into(),
        "FAILED" => "failed".into(),
        "CANCELLED" | "CANCELED" => "cancelled".into(),
        "EXPIRED" => "expired".into(),
        _ => unknown(word, "JOB_STATE_"),
    }
}

fn read(raw: Value) -> Result<Job, JobParseError> {
    let name = raw
        .get("name")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("name"))?
        .to_string();
    check_fireworks(&name, COLLECTION)?;
    let word = state_word(&raw, "/state", "JOB_STATE_UNSPECIFIED")?;
    let common = state(&word);
    let mut job = batch(raw, name, &word, &common, "fireworks");
    job.model = job
        .raw
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    job.created_at = time(&job.raw, "/createTime").as_i64();
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
    let Scope::Fireworks { account } = &config.scope else {
        return Err(SourceError::Setup {
            source_name: config.name.clone(),
            message: "a fireworks source needs an account".into(),
        });
    };
    let core = ApiClient::new(
        config,
        "fireworks",
        Auth::Bearer(key.clone()),
        &[],
        Vec::new(),
    )?;
    let spec = Spec {
        provider: "fireworks",
        list_path: format!("accounts/{account}/{COLLECTION}"),
        list_query: vec![("orderBy", "createTime desc".into())],
        paging: Paging::Token {
            array: COLLECTION,
            token: "nextPageToken",
            size: "pageSize",
            page_token: "pageToken",
            max_size: 200,
        },
        id_key: "name",
        read,
        item: |name| check_fireworks(name, COLLECTION).map(|()| name.to_string()),
        owns: |id| id.contains("/batchInferenceJobs/"),
        newest_first: true,
    };
    Ok((core, spec))
}

/// A batch inference job in OpenAI's batch fields, with its progress.
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/jobProgress/{k}"));
    let progress = raw
        .pointer("/jobProgress/percent")
        .and_then(Value::as_f64)
        .filter(|p| p.is_finite())
        .map_or(Value::Null, |p| Value::from((p / 100.0).clamp(0.0, 1.0)));
    let failed = raw.get("status").filter(|s| {
        s.get("code")
            .and_then(Value::as_str)
            .is_some_and(|c| c != "OK")
    });
    json!({
        "object": "batch",
        "id": text(raw, "/name"),
        "model": text(raw, "/model"),
        "request_counts": counts(n("successfullyProcessedRequests"), n("failedRequests"), n("totalInputRequests")),
        "progress": progress,
        "created_at": time(raw, "/createTime"),
        "input_file_id": text(raw, "/inputDatasetId"),
        "output_file_id": text(raw, "/outputDatasetId"),
        "errors": errors(
            failed.and_then(|s| s.get("code")).and_then(Value::as_str).map(str::to_string),
            failed.and_then(|s| s.get("message")).and_then(Value::as_str).map(str::to_string),
        ),
    })
}
