//! Google Vertex AI's tuning jobs (Gemini supervised tuning): `GET
//! {api_base}/projects/P/locations/L/tuningJobs?pageSize&pageToken` → `{tuningJobs,
//! nextPageToken}`, and `GET {api_base}/{name}` for one. A job's id is its resource name, kept
//! whole. States (`JOB_STATE_*`) are normalised, the word kept as `provider_status`; times are
//! RFC 3339; `int64`s come as strings. The job's own numbers — billable tokens for the cost,
//! and the checkpoints of the tuned model — are read from the job itself.
//!
//! Authentication is Google's OAuth2 ([`super::auth::google`]): a service account's key, or
//! the metadata server. Fields follow `google/cloud/aiplatform/v1/tuning_job.proto`.

use std::sync::Arc;

use reqwest::Url;
use serde_json::{Value, json};

use super::auth::{Auth, GoogleTokens};
use super::client::{ApiClient, TokenList, parse_json, parse_token_page};
use super::job::{Job, JobError, JobParseError, JobStatus, Kind, unix_time};
use super::{BoxFuture, Cursor, ItemsPage, JobList, Page, RequestObserver, Source, SourceError};
use crate::config::{Scope, SourceConfig, SourceSecrets};

/// Vertex AI's largest `pageSize` for tuning jobs.
const MAX_PAGE_SIZE: u32 = 100;

/// A `JOB_STATE_*` word in the common vocabulary; unknown ones lower-cased without the prefix.
pub fn state(word: &str) -> JobStatus {
    let w = word.trim().to_ascii_uppercase();
    match w.trim_start_matches("JOB_STATE_") {
        "QUEUED" | "PENDING" => JobStatus::Queued,
        "RUNNING" | "UPDATING" => JobStatus::Running,
        "PAUSED" => JobStatus::Paused,
        "CANCELLING" | "CANCELING" => JobStatus::Cancelling,
        "SUCCEEDED" | "PARTIALLY_SUCCEEDED" => JobStatus::Succeeded,
        "FAILED" | "EXPIRED" => JobStatus::Failed,
        "CANCELLED" | "CANCELED" => JobStatus::Cancelled,
        other => JobStatus::parse(&other.to_lowercase()),
    }
}

/// Google's credential for a source: the key's tokens or the metadata server's.
///
/// # Errors
/// [`SourceError::Setup`] when the source's credential is not a Google one.
pub fn google_auth(config: &SourceConfig, secrets: &SourceSecrets) -> Result<Auth, SourceError> {
    let http = ApiClient::plain_http(config)?;
    let tokens = match secrets {
        SourceSecrets::GoogleKey(key) => GoogleTokens::service_account(key.clone(), http),
        SourceSecrets::GoogleMetadata => GoogleTokens::metadata(http),
        _ => {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: "a vertex_ai source authenticates with Google credentials".into(),
            });
        }
    };
    Ok(Auth::Google(Arc::new(tokens)))
}

/// A client for one configured `vertex_ai` source.
pub struct VertexClient {
    core: ApiClient,
    list_url: Url,
    page_size: u32,
    max_pages: u32,
}

impl VertexClient {
    /// # Errors
    /// [`SourceError::Setup`] when the credential is not Google's or `api_base` cannot take a
    /// path.
    pub fn new(
        config: &SourceConfig,
        secrets: &SourceSecrets,
    ) -> Result<VertexClient, SourceError> {
        let Scope::Vertex { project, location } = &config.scope else {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: "a vertex_ai source needs project and location".into(),
            });
        };
        let core = ApiClient::new(
            config,
            "vertex_ai",
            google_auth(config, secrets)?,
            &[],
            Vec::new(),
        )?;
        let list_url = core.url(
            &format!("projects/{project}/locations/{location}/tuningJobs"),
            &[],
        )?;
        Ok(VertexClient {
            core,
            list_url,
            page_size: config.page_size.min(MAX_PAGE_SIZE),
            max_pages: config.max_pages,
        })
    }

    /// Reads a tuning job.
    pub fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("name"))?
            .to_string();
        super::names::check_google(&name, "tuningJobs")?;
        let word = raw
            .get("state")
            .and_then(Value::as_str)
            .filter(|w| !w.trim().is_empty())
            .unwrap_or("JOB_STATE_UNSPECIFIED")
            .to_string();
        if word.len() > super::job::MAX_STATUS_CHARS || word.chars().any(char::is_control) {
            return Err(JobParseError::BadStatus);
        }
        let status = state(&word);
        let mut job = Job::from_parts(raw, name, &word, status, "vertex_ai", Kind::FineTuning);
        let raw = &job.raw;
        let s = |p: &str| raw.pointer(p).and_then(Value::as_str).map(str::to_string);
        job.model = s("/baseModel");
        // What people call: the endpoint the tuned model is deployed to, else the model.
        job.fine_tuned_model = s("/tunedModel/endpoint").or_else(|| s("/tunedModel/model"));
        job.created_at = raw.get("createTime").and_then(unix_time);
        job.finished_at = raw.get("endTime").and_then(unix_time);
        job.trained_tokens = trained_tokens(raw);
        job.error = raw.get("error").and_then(|e| {
            let message = e.get("message").and_then(Value::as_str).map(str::to_string);
            let code = e.get("code").and_then(|c| match c {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) => Some(s.clone()),
                _ => None,
            });
            (code.is_some() || message.is_some()).then_some(JobError {
                code,
                message,
                param: None,
            })
        });
        Ok(job)
    }
}

/// A tuning job in OpenAI's field names, for alerts and insight (see [`super::view`]).
pub fn view(raw: &Value) -> Value {
    let s = |p: &str| raw.pointer(p).cloned().unwrap_or(Value::Null);
    let time = |k: &str| {
        raw.get(k)
            .and_then(unix_time)
            .map_or(Value::Null, Value::from)
    };
    let spec = |k: &str| s(&format!("/supervisedTuningSpec/{k}"));
    json!({
        "id": s("/name"),
        "model": s("/baseModel"),
        "fine_tuned_model": raw.pointer("/tunedModel/endpoint").or_else(|| raw.pointer("/tunedModel/model")).cloned().unwrap_or(Value::Null),
        "created_at": time("createTime"),
        "finished_at": time("endTime"),
        "trained_tokens": trained_tokens(raw),
        "error": raw.get("error").map(|e| json!({"code": e.get("code").map(|c| match c {
            Value::Number(n) => Value::from(n.to_string()),
            other => other.clone(),
        }), "message": e.get("message")})),
        "hyperparameters": spec("hyperParameters"),
        "training_file": spec("trainingDatasetUri"),
        "validation_file": spec("validationDatasetUri"),
    })
}

/// The tokens a tuning job bills: the dataset's billable tokens times the epochs (Vertex
/// charges per token per epoch); the dataset's tokens alone when no epoch count is given.
pub fn trained_tokens(raw: &Value) -> Option<i64> {
    let count = |p: &str| raw.pointer(p).and_then(crate::inert::count);
    let tokens = count("/tuningDataStats/supervisedTuningDataStats/totalBillableTokenCount")?;
    let epochs = count("/supervisedTuningSpec/hyperParameters/epochCount")
        .unwrap_or(1)
        .max(1);
    i64::try_from(tokens.saturating_mul(epochs)).ok()
}

/// The checkpoints of a tuned model, in the shape insight reads (`step_number`,
/// `fine_tuned_model_checkpoint`), each with Vertex's own object under `vertex`.
pub fn checkpoints(raw: &Value) -> Vec<Value> {
    raw.pointer("/tunedModel/checkpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(1000)
        .filter_map(|c| {
            let id = c.get("checkpointId").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })?;
            super::job::check_id(&id).ok()?;
            let step = c.get("step").and_then(crate::inert::count)?;
            let endpoint = c.get("endpoint").and_then(Value::as_str).unwrap_or("");
            Some(json!({"id": format!("vertex-checkpoint-{id}"), "object": "fine_tuning.job.checkpoint",
                        "step_number": u64::try_from(step).unwrap_or(u64::MAX),
                        "fine_tuned_model_checkpoint": endpoint, "metrics": {}, "vertex": c}))
        })
        .collect()
}

impl Source for VertexClient {
    fn provider(&self) -> &'static str {
        "vertex_ai"
    }

    fn owns(&self, id: &str) -> bool {
        id.contains("/tuningJobs/")
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let mut url = self.list_url.clone();
            url.query_pairs_mut()
                .append_pair("pageSize", &self.page_size.to_string());
            if let Some(token) = cursor.after() {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let (body, requests) = self.core.get(&url, observe).await?;
            let shape = TokenList {
                array: Some("tuningJobs"),
                token: "nextPageToken",
                id: "name",
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
        Box::pin(async move {
            let shown = self.core.shown(&self.list_url);
            super::names::check_google(id, "tuningJobs").map_err(|e| SourceError::Body {
                url: shown.clone(),
                message: e.to_string(),
            })?;
            let segments: Vec<&str> = id.split('/').collect();
            let url = self.core.url("", &segments)?;
            let (body, _) = self.core.get(&url, observe).await?;
            let shown = self.core.shown(&url);
            Self::to_job(parse_json(&shown, &body)?).map_err(|e| SourceError::Body {
                url: shown,
                message: e.to_string(),
            })
        })
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        Self::to_job(raw)
    }

    /// Checkpoints are part of the tuned model: read from the job itself (one request).
    fn list_job_items<'a>(
        &'a self,
        job_id: &'a str,
        list: JobList,
        _after: Option<&'a str>,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<(ItemsPage, u32)>, SourceError>> {
        Box::pin(async move {
            if list != JobList::Checkpoints {
                return Ok(None);
            }
            let job = self.get_job(job_id, observe).await?;
            let items = checkpoints(&job.raw);
            Ok(Some((
                ItemsPage {
                    last_id: None,
                    has_more: false,
                    skipped: 0,
                    items,
                },
                1,
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_its_word_and_unknown_ones_are_kept() {
        for (word, normal) in [
            ("JOB_STATE_QUEUED", "queued"),
            ("JOB_STATE_PENDING", "queued"),
            ("JOB_STATE_RUNNING", "running"),
            ("JOB_STATE_UPDATING", "running"),
            ("JOB_STATE_PAUSED", "paused"),
            ("JOB_STATE_CANCELLING", "cancelling"),
            ("JOB_STATE_SUCCEEDED", "succeeded"),
            ("JOB_STATE_PARTIALLY_SUCCEEDED", "succeeded"),
            ("JOB_STATE_FAILED", "failed"),
            ("JOB_STATE_EXPIRED", "failed"),
            ("JOB_STATE_CANCELLED", "cancelled"),
            ("job_state_running", "running"),
            ("JOB_STATE_WARMING", "warming"),
        ] {
            assert_eq!(state(word).as_str(), normal, "{word}");
        }
    }
}
