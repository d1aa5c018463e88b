//! AWS Bedrock's batch inference (model invocation) jobs: `GET {api_base}/model-invocation-jobs
//! ?maxResults&nextToken&sortBy=CreationTime&sortOrder=Descending` → `{invocationJobSummaries,
//! nextToken}`; `GET {api_base}/model-invocation-job/{ARN}` (singular). A Bedrock API key or
//! SigV4, as for customization jobs. Counts: `totalRecordCount`, `processedRecordCount`,
//! `successRecordCount`, `errorRecordCount`; input and output are `s3://` locations. Shapes
//! follow botocore's `bedrock` service model (`ModelInvocationJobSummary`).

use serde_json::{Value, json};

use super::listed::{Paging, Spec};
use super::{batch, count_at, counts, errors, state_word, text, time, unknown};
use crate::config::{SourceConfig, SourceSecrets};
use crate::source::SourceError;
use crate::source::client::ApiClient;
use crate::source::job::{Job, JobParseError};
use crate::source::names::{check_arn, encode_segment};

const RESOURCE: &str = "model-invocation-job";

/// A `ModelInvocationJobStatus` in the common vocabulary.
pub fn state(word: &str) -> String {
    match word.trim().to_ascii_lowercase().as_str() {
        "submitted" | "validating" | "scheduled" => "validating".into(),
        "inprogress" => "in_progress".into(),
        "stopping" => "cancelling".into(),
        "completed" | "partiallycompleted" => "completed".into(),
        "failed" => "failed".into(),
        "stopped" => "cancelled".into(),
        "expired" => "expired".into(),
        _ => unknown(word, ""),
    }
}

fn read(raw: Value) -> Result<Job, JobParseError> {
    let arn = raw
        .get("jobArn")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("jobArn"))?
        .to_string();
    check_arn(&arn, RESOURCE)?;
    let word = state_word(&raw, "/status", "")?;
    if word.is_empty() {
        return Err(JobParseError::Missing("status"));
    }
    let common = state(&word);
    let mut job = batch(raw, arn, &word, &common, "bedrock");
    job.model = job
        .raw
        .get("modelId")
        .and_then(Value::as_str)
        .map(str::to_string);
    job.created_at = time(&job.raw, "/submitTime").as_i64();
    job.finished_at = time(&job.raw, "/endTime").as_i64();
    Ok(job)
}

/// The client's shape and core.
///
/// # Errors
/// [`SourceError::Setup`] when the credential is neither a Bedrock API key nor an AWS key.
pub(super) fn client(
    config: &SourceConfig,
    secrets: &SourceSecrets,
) -> Result<(ApiClient, Spec), SourceError> {
    let auth = crate::source::bedrock::bedrock_auth(config, secrets)?;
    let core = ApiClient::new(config, "bedrock", auth, &[], Vec::new())?;
    let spec = Spec {
        provider: "bedrock",
        list_path: "model-invocation-jobs".into(),
        list_query: vec![
            ("sortBy", "CreationTime".into()),
            ("sortOrder", "Descending".into()),
        ],
        paging: Paging::Token {
            array: "invocationJobSummaries",
            token: "nextToken",
            size: "maxResults",
            page_token: "nextToken",
            max_size: 1000,
        },
        id_key: "jobArn",
        read,
        // The ARN is one segment, its `/` and `:` percent-encoded, as AWS's SDKs send it.
        item: |arn| {
            check_arn(arn, RESOURCE).map(|()| format!("{RESOURCE}/{}", encode_segment(arn)))
        },
        owns: |id| id.contains(":model-invocation-job/"),
        newest_first: true,
    };
    Ok((core, spec))
}

/// An invocation job in OpenAI's batch fields.
pub(super) fn view(raw: &Value) -> Value {
    let n = |k: &str| count_at(raw, &format!("/{k}"));
    json!({
        "object": "batch",
        "id": text(raw, "/jobArn"),
        "model": text(raw, "/modelId"),
        "endpoint": text(raw, "/modelInvocationType"),
        "request_counts": counts(n("successRecordCount"), n("errorRecordCount"), n("totalRecordCount")),
        "processed": raw.get("processedRecordCount").cloned().unwrap_or(Value::Null),
        "created_at": time(raw, "/submitTime"),
        "ended_at": time(raw, "/endTime"),
        "expires_at": time(raw, "/jobExpirationTime"),
        "input_uri": text(raw, "/inputDataConfig/s3InputDataConfig/s3Uri"),
        "output_uri": text(raw, "/outputDataConfig/s3OutputDataConfig/s3Uri"),
        "errors": errors(None, raw.get("message").and_then(Value::as_str).map(str::to_string)),
    })
}
