//! Vertex AI's batch prediction jobs: `GET {api_base}/projects/P/locations/L/batchPredictionJobs
//! ?pageSize&pageToken` → `{batchPredictionJobs, nextPageToken}`; `GET {api_base}/{name}`.
//! Google OAuth2, as for tuning jobs. States `JOB_STATE_*`; counts in `completionStats`
//! (`successfulCount`, `failedCount`, `incompleteCount`, int64 strings); output under
//! `outputInfo` (`gs://` or BigQuery). Fields follow `batch_prediction_job.proto`.

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, errors, state_word, text, time, unknown};
use crate::config::{Scope, SourceConfig, SourceSecrets};
use crate::source::SourceError;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError};
use crate::source::names::check_google;

const COLLECTION: &str = "batchPredictionJobs";

/// A `JOB_STATE_*` of a batch prediction job in the common vocabulary.
pub fn state(word: &str) -> String {
    let w = word.trim().to_ascii_uppercase();
    match w.trim_start_matches("JOB_STATE_") {
        "QUEUED" | "PENDING" => "validating".into(),
        "RUNNING" | "UPDATING" | "PAUSED" => "in_progress".into(),
        "SUCCEEDED" | "PARTIALLY_SUCCEEDED" => "completed".into(),
        "FAILED" => "failed".into(),
        "CANCELLING" | "CANCELING" => "cancelling".into(),
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
    check_google(&name, COLLECTION)?;
    let word = state_word(&raw, "/state", "JOB_STATE_UNSPECIFIED")?;
    let common = state(&word);
    let mut job = batch(raw, name, &word, &common, "vertex_ai");
    job.model = job
        .raw
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    job.created_at = time(&job.raw, "/createTime").as_i64();
    job.finished_at = time(&job.raw, "/endTime").as_i64();
    Ok(job)
}

/// The client's shape and core.
///
/// # Errors
/// [`SourceError::Setup`] when the credential is not Google's.
pub(super) fn client(
    config: &SourceConfig,
    secrets: &SourceSecrets,
) -> Result<(ApiClient, Spec), SourceError> {
    let Scope::Vertex { project, location } = &config.scope else {
        return Err(SourceError::Setup {
            source_name: config.name.clone(),
            message: "a vertex_ai source needs project and location".into(),
        });
    };
    let auth = crate::source::vertex::google_auth(config, secrets)?;
    let core = ApiClient::new(config, "vertex_ai", auth, &[], Vec::new())?;
    let spec = Spec {
        provider: "vertex_ai",
        list_path: format!("projects/{project}/locations/{location}/{COLLECTION}"),
        list_query: Vec::new(),
        paging: Paging::Token {
            array: COLLECTION,
            token: "nextPageToken",
            size: "pageSize",
            page_token: "pageToken",
            max_size: 100,
        },
        id_key: "name",
        read,
        item: |name| check_google(name, COLLECTION).map(|()| name.to_string()),
        owns: |id| id.contains("/batchPredictionJobs/"),
        newest_first: true,
    };
    Ok((core, spec))
}

/// A batch prediction job in OpenAI's batch fields.
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/completionStats/{k}"));
    let total = match (n("successfulCount"), n("failedCount"), n("incompleteCount")) {
        (None, None, None) => None,
        (a, b, c) => Some(a.unwrap_or(0) + b.unwrap_or(0) + c.unwrap_or(0)),
    };
    let output = raw
        .pointer("/outputInfo/gcsOutputDirectory")
        .or_else(|| raw.pointer("/outputInfo/bigqueryOutputTable"))
        .or_else(|| raw.pointer("/outputConfig/gcsDestination/outputUriPrefix"))
        .cloned()
        .unwrap_or(Value::Null);
    let input = raw
        .pointer("/inputConfig/gcsSource/uris/0")
        .or_else(|| raw.pointer("/inputConfig/bigquerySource/inputUri"))
        .cloned()
        .unwrap_or(Value::Null);
    let error = raw.get("error");
    json!({
        "object": "batch",
        "id": text(raw, "/name"),
        "model": text(raw, "/model"),
        "endpoint": text(raw, "/outputConfig/predictionsFormat"),
        "request_counts": counts(n("successfulCount"), n("failedCount"), total),
        "created_at": time(raw, "/createTime"),
        "ended_at": time(raw, "/endTime"),
        "input_uri": input,
        "output_uri": output,
        "errors": errors(
            error.and_then(|e| e.get("code")).map(|c| c.to_string()),
            error.and_then(|e| e.get("message")).and_then(Value::as_str).map(str::to_string),
        ),
    })
}
