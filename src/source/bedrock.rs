//! AWS Bedrock's model customization jobs: `GET {api_base}/model-customization-jobs?maxResults
//! &nextToken&sortBy=CreationTime&sortOrder=Descending` → `{modelCustomizationJobSummaries,
//! nextToken}`, and `GET /model-customization-jobs/{jobArn}` (the ARN percent-encoded as one
//! segment) for one, with `failureMessage` and the final losses a summary lacks. A job's id is
//! its ARN, kept whole. Shapes follow botocore's `bedrock/2023-04-20/service-2.json`.
//!
//! A summary and a full job compare by the fields both carry, so reading a job by id never
//! makes it look changed; a job that finishes is read by id once, before its alert, so the alert
//! has the failure message and the losses. Authentication: a Bedrock API key (Bearer), or an
//! AWS access key signing each request with SigV4 (service `bedrock`).

use std::sync::Arc;

use reqwest::Url;
use serde_json::{Map, Value};

use super::auth::{Auth, SigV4};
use super::client::{ApiClient, TokenList, parse_json, parse_token_page};
use super::job::{Job, JobError, JobParseError, JobStatus, Kind, unix_time};
use super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Scope, SourceConfig, SourceSecrets};

/// Bedrock's largest `maxResults`.
const MAX_PAGE_SIZE: u32 = 1000;

/// The fields a `ModelCustomizationJobSummary` has, which a full job has too: what two reads of
/// one job are compared by.
const SUMMARY_FIELDS: &[&str] = &[
    "jobArn",
    "baseModelArn",
    "jobName",
    "status",
    "statusDetails",
    "lastModifiedTime",
    "creationTime",
    "endTime",
    "customModelArn",
    "customModelName",
    "customizationType",
];

/// A job's status in the common vocabulary: `InProgress` is `validating_files` while its
/// validation runs, then `running`.
pub fn status(word: &str, raw: &Value) -> JobStatus {
    let validating = raw
        .pointer("/statusDetails/validationDetails/status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("InProgress"));
    match word.trim().to_ascii_lowercase().as_str() {
        "inprogress" if validating => JobStatus::ValidatingFiles,
        "inprogress" => JobStatus::Running,
        "stopping" => JobStatus::Cancelling,
        "completed" => JobStatus::Succeeded,
        "failed" => JobStatus::Failed,
        "stopped" => JobStatus::Cancelled,
        other => JobStatus::parse(other),
    }
}

/// The credential of a `bedrock` source: its API key as a Bearer token, or SigV4.
///
/// # Errors
/// [`SourceError::Setup`] when the credential is neither.
pub fn bedrock_auth(config: &SourceConfig, secrets: &SourceSecrets) -> Result<Auth, SourceError> {
    let Scope::Bedrock { region } = &config.scope else {
        return Err(SourceError::Setup {
            source_name: config.name.clone(),
            message: "a bedrock source needs a region".into(),
        });
    };
    match secrets {
        SourceSecrets::Key(k) => Ok(Auth::Bearer(k.clone())),
        SourceSecrets::Aws(key) => Ok(Auth::SigV4(Arc::new(SigV4::new(
            &config.name,
            key,
            region,
            "bedrock",
        )))),
        _ => Err(SourceError::Setup {
            source_name: config.name.clone(),
            message: "a bedrock source takes a Bedrock API key or an AWS access key".into(),
        }),
    }
}

/// A customization job in OpenAI's field names, for alerts and insight (see [`super::view`]),
/// with its final losses.
pub fn view(raw: &Value) -> Value {
    let s = |k: &str| raw.get(k).and_then(Value::as_str);
    let time = |k: &str| {
        raw.get(k)
            .and_then(unix_time)
            .map_or(Value::Null, Value::from)
    };
    let loss = |v: Option<&Value>| v.and_then(Value::as_f64).filter(|l| l.is_finite());
    let valid = raw
        .get("validationMetrics")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find_map(|m| loss(m.get("validationLoss"))));
    serde_json::json!({
        "id": s("jobArn"),
        "model": s("baseModelArn").map(|a| a.rsplit('/').next().unwrap_or(a)),
        "fine_tuned_model": s("customModelArn").or_else(|| s("outputModelArn")),
        "created_at": time("creationTime"),
        "finished_at": time("endTime"),
        "error": s("failureMessage").map(|m| serde_json::json!({"message": m})),
        "hyperparameters": raw.get("hyperParameters"),
        "training_file": raw.pointer("/trainingDataConfig/s3Uri"),
        "validation_file": raw.pointer("/validationDataConfig/validators/0/s3Uri"),
        "method": s("customizationType").map(|t| serde_json::json!({"type": t.to_lowercase()})),
        "train_loss": loss(raw.pointer("/trainingMetrics/trainingLoss")),
        "valid_loss": valid,
    })
}

/// A client for one configured `bedrock` source.
pub struct BedrockClient {
    core: ApiClient,
    list_url: Url,
    page_size: u32,
    max_pages: u32,
}

impl BedrockClient {
    /// # Errors
    /// [`SourceError::Setup`] when the credential does not fit or `api_base` cannot take a path.
    pub fn new(
        config: &SourceConfig,
        secrets: &SourceSecrets,
    ) -> Result<BedrockClient, SourceError> {
        let core = ApiClient::new(
            config,
            "bedrock",
            bedrock_auth(config, secrets)?,
            &[],
            Vec::new(),
        )?;
        let list_url = core.url("model-customization-jobs", &[])?;
        Ok(BedrockClient {
            core,
            list_url,
            page_size: config.page_size.min(MAX_PAGE_SIZE),
            max_pages: config.max_pages,
        })
    }

    /// Reads a job summary or a full job.
    pub fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let arn = raw
            .get("jobArn")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("jobArn"))?
            .to_string();
        super::names::check_arn(&arn, "model-customization-job")?;
        let word = raw
            .get("status")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("status"))?
            .to_string();
        if word.trim().is_empty() {
            return Err(JobParseError::EmptyStatus);
        }
        if word.len() > super::job::MAX_STATUS_CHARS || word.chars().any(char::is_control) {
            return Err(JobParseError::BadStatus);
        }
        let status = status(&word, &raw);
        let mut job = Job::from_parts(raw, arn, &word, status, "bedrock", Kind::FineTuning);
        let summary: Map<String, Value> = SUMMARY_FIELDS
            .iter()
            .filter_map(|k| Some((k.to_string(), job.raw.get(*k)?.clone())))
            .collect();
        job.compare_by(&Value::Object(summary));
        let raw = &job.raw;
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        // The base model's id, the last part of its ARN (what `[prices]` names).
        job.model = s("baseModelArn").map(|a| a.rsplit('/').next().unwrap_or(&a).to_string());
        job.fine_tuned_model = s("customModelArn").or_else(|| s("outputModelArn"));
        job.created_at = raw.get("creationTime").and_then(unix_time);
        job.finished_at = raw.get("endTime").and_then(unix_time);
        job.error = s("failureMessage").map(|m| JobError {
            code: None,
            message: Some(m),
            param: None,
        });
        Ok(job)
    }

    async fn get_one(&self, id: &str, observe: RequestObserver<'_>) -> Result<Job, SourceError> {
        let shown = self.core.shown(&self.list_url);
        super::names::check_arn(id, "model-customization-job").map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })?;
        // The ARN is one segment: its `/` and `:` are percent-encoded, as AWS's SDKs send it.
        let path = format!(
            "model-customization-jobs/{}",
            super::names::encode_segment(id)
        );
        let url = self.core.url(&path, &[])?;
        let (body, _) = self.core.get(&url, observe).await?;
        let shown = self.core.shown(&url);
        Self::to_job(parse_json(&shown, &body)?).map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })
    }
}

impl Source for BedrockClient {
    fn provider(&self) -> &'static str {
        "bedrock"
    }

    fn owns(&self, id: &str) -> bool {
        id.contains(":model-customization-job/")
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let mut url = self.list_url.clone();
            url.query_pairs_mut()
                .append_pair("maxResults", &self.page_size.to_string())
                .append_pair("sortBy", "CreationTime")
                .append_pair("sortOrder", "Descending");
            if let Some(token) = cursor.after() {
                url.query_pairs_mut().append_pair("nextToken", token);
            }
            let (body, requests) = self.core.get(&url, observe).await?;
            let shape = TokenList {
                array: Some("modelCustomizationJobSummaries"),
                token: "nextToken",
                id: "jobArn",
            };
            let page = parse_token_page(&self.core.shown(&url), &body, &shape, &Self::to_job)?;
            Ok((page, requests))
        })
    }

    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        self.core
            .advance(cursor, page, self.max_pages, &self.list_url)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(self.get_one(id, observe))
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        Self::to_job(raw)
    }

    /// A finishing job is read in full, for its failure message and final losses.
    fn details<'a>(
        &'a self,
        job: &'a Job,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<Job>, SourceError>> {
        Box::pin(async move {
            if job.raw.get("failureMessage").is_some() || job.raw.get("trainingMetrics").is_some() {
                return Ok(None);
            }
            self.get_one(&job.id, observe).await.map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_and_validation_is_validating_files() {
        let none = json!({});
        for (word, normal) in [
            ("InProgress", "running"),
            ("Stopping", "cancelling"),
            ("Completed", "succeeded"),
            ("Failed", "failed"),
            ("Stopped", "cancelled"),
            ("COMPLETED", "succeeded"),
            ("Throttled", "throttled"),
        ] {
            assert_eq!(status(word, &none).as_str(), normal, "{word}");
        }
        let validating = json!({"statusDetails": {"validationDetails": {"status": "InProgress"}}});
        assert_eq!(
            status("InProgress", &validating).as_str(),
            "validating_files"
        );
    }
}
