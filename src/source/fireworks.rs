//! Fireworks AI's supervised fine-tuning jobs: `GET {api_base}/accounts/A/supervisedFineTuningJobs
//! ?pageSize&pageToken&orderBy=createTime desc` → `{supervisedFineTuningJobs, nextPageToken}`,
//! and `GET {api_base}/{name}` for one. A job's id is its resource name, kept whole; states are
//! `JOB_STATE_*` (normalised, the word kept). The job's `jobProgress.percent` gives progress
//! marks and an ETA, its `estimatedCost` the cost. Bearer key. Shapes follow Fireworks'
//! published OpenAPI (`gatewaySupervisedFineTuningJob`, `gatewayJobProgress`).

use reqwest::Url;
use serde_json::Value;

use super::auth::Auth;
use super::client::{ApiClient, TokenList, parse_json, parse_token_page};
use super::job::{Job, JobError, JobParseError, JobStatus, Kind, unix_time};
use super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Scope, SourceConfig, SourceSecrets};

/// Fireworks' largest `pageSize`.
const MAX_PAGE_SIZE: u32 = 200;

/// A Fireworks `JOB_STATE_*` in the common vocabulary; unknown ones lower-cased without the
/// prefix.
pub fn state(word: &str) -> JobStatus {
    let w = word.trim().to_ascii_uppercase();
    match w.trim_start_matches("JOB_STATE_") {
        "CREATING" | "VALIDATING" | "CREATING_INPUT_DATASET" => JobStatus::ValidatingFiles,
        "PENDING" | "RE_QUEUEING" | "IDLE" => JobStatus::Queued,
        "RUNNING" | "WRITING_RESULTS" => JobStatus::Running,
        "PAUSED" => JobStatus::Paused,
        "CANCELLING" | "CANCELING" => JobStatus::Cancelling,
        "COMPLETED" | "EARLY_STOPPED" => JobStatus::Succeeded,
        "FAILED" | "EXPIRED" => JobStatus::Failed,
        "CANCELLED" | "CANCELED" => JobStatus::Cancelled,
        other => JobStatus::parse(&other.to_lowercase()),
    }
}

/// Reads the name and `JOB_STATE_*` of a Fireworks object (a job of `collection`).
pub(super) fn name_and_state(
    raw: &Value,
    collection: &str,
) -> Result<(String, String), JobParseError> {
    let name = raw
        .get("name")
        .and_then(Value::as_str)
        .ok_or(JobParseError::Missing("name"))?
        .to_string();
    super::names::check_fireworks(&name, collection)?;
    let word = raw
        .get("state")
        .and_then(Value::as_str)
        .filter(|w| !w.trim().is_empty())
        .unwrap_or("JOB_STATE_UNSPECIFIED")
        .to_string();
    if word.len() > super::job::MAX_STATUS_CHARS || word.chars().any(char::is_control) {
        return Err(JobParseError::BadStatus);
    }
    Ok((name, word))
}

/// The error of a failed Fireworks object: its `status` (`{code, message}`) unless it is OK.
pub(super) fn error(raw: &Value) -> Option<JobError> {
    let status = raw.get("status")?;
    let code = status
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = status
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string);
    let ok = code.as_deref().is_none_or(|c| c == "OK");
    (!ok || message.as_deref().is_some_and(|m| !m.is_empty())).then_some(JobError {
        code: code.filter(|c| c != "OK"),
        message: message.filter(|m| !m.is_empty()),
        param: None,
    })
}

/// The cost Fireworks estimates for a job: a number, a string of one, or a `google.type.Money`
/// (`{currencyCode, units, nanos}`) in USD.
pub fn estimated_cost(raw: &Value) -> Option<f64> {
    let v = raw.get("estimatedCost")?;
    let usd = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(m) => {
            let currency = m
                .get("currencyCode")
                .and_then(Value::as_str)
                .unwrap_or("USD");
            if currency != "USD" {
                return None;
            }
            let units = m
                .get("units")
                .and_then(crate::inert::count)
                .map_or(0.0, |u| u as f64);
            let nanos = m.get("nanos").and_then(Value::as_f64).unwrap_or(0.0);
            Some(units + nanos / 1e9)
        }
        _ => None,
    }?;
    (usd.is_finite() && (0.0..1e9).contains(&usd)).then_some(usd)
}

/// A supervised fine-tuning job in OpenAI's field names, for alerts and insight (see
/// [`super::view`]), with its progress and estimated cost.
pub fn view(raw: &Value) -> Value {
    let s = |k: &str| raw.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let time = |k: &str| {
        raw.get(k)
            .and_then(unix_time)
            .map_or(Value::Null, Value::from)
    };
    let progress = raw
        .pointer("/jobProgress/percent")
        .and_then(Value::as_f64)
        .filter(|p| p.is_finite())
        .map(|p| (p / 100.0).clamp(0.0, 1.0));
    let hyper: serde_json::Map<String, Value> = ["epochs", "learningRate", "loraRank", "batchSize"]
        .iter()
        .filter_map(|k| Some((k.to_string(), raw.get(*k).filter(|v| !v.is_null())?.clone())))
        .collect();
    serde_json::json!({
        "id": s("name"),
        "model": s("baseModel"),
        "fine_tuned_model": s("outputModel"),
        "created_at": time("createTime"),
        "finished_at": time("completedTime"),
        "updated_at": time("updateTime"),
        "error": error(raw).map(|e| serde_json::json!({"code": e.code, "message": e.message})),
        "hyperparameters": (!hyper.is_empty()).then_some(Value::Object(hyper)),
        "training_file": s("dataset"),
        "validation_file": s("evaluationDataset"),
        "progress": progress,
        "cost_usd": estimated_cost(raw),
    })
}

/// A client for one configured `fireworks` source.
pub struct FireworksClient {
    core: ApiClient,
    list_url: Url,
    page_size: u32,
    max_pages: u32,
}

impl FireworksClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key cannot be a header or `api_base` cannot take a path.
    pub fn new(
        config: &SourceConfig,
        secrets: &SourceSecrets,
    ) -> Result<FireworksClient, SourceError> {
        let Scope::Fireworks { account } = &config.scope else {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: "a fireworks source needs an account".into(),
            });
        };
        let core = ApiClient::new(
            config,
            "fireworks",
            Auth::bearer(&config.name, secrets)?,
            &[],
            Vec::new(),
        )?;
        let list_url = core.url(&format!("accounts/{account}/supervisedFineTuningJobs"), &[])?;
        Ok(FireworksClient {
            core,
            list_url,
            page_size: config.page_size.min(MAX_PAGE_SIZE),
            max_pages: config.max_pages,
        })
    }

    /// Reads a supervised fine-tuning job.
    pub fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let (name, word) = name_and_state(&raw, "supervisedFineTuningJobs")?;
        let status = state(&word);
        let mut job = Job::from_parts(raw, name, &word, status, "fireworks", Kind::FineTuning);
        let raw = &job.raw;
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        job.model = s("baseModel");
        job.fine_tuned_model = s("outputModel").filter(|m| !m.is_empty());
        job.created_at = raw.get("createTime").and_then(unix_time);
        job.finished_at = raw.get("completedTime").and_then(unix_time);
        job.error = error(raw);
        Ok(job)
    }
}

impl Source for FireworksClient {
    fn provider(&self) -> &'static str {
        "fireworks"
    }

    fn owns(&self, id: &str) -> bool {
        id.contains("/supervisedFineTuningJobs/")
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let mut url = self.list_url.clone();
            url.query_pairs_mut()
                .append_pair("pageSize", &self.page_size.to_string())
                .append_pair("orderBy", "createTime desc");
            if let Some(token) = cursor.after() {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let (body, requests) = self.core.get(&url, observe).await?;
            let shape = TokenList {
                array: Some("supervisedFineTuningJobs"),
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
            super::names::check_fireworks(id, "supervisedFineTuningJobs").map_err(|e| {
                SourceError::Body {
                    url: self.core.shown(&self.list_url),
                    message: e.to_string(),
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_its_word() {
        for (word, normal) in [
            ("JOB_STATE_CREATING", "validating_files"),
            ("JOB_STATE_VALIDATING", "validating_files"),
            ("JOB_STATE_CREATING_INPUT_DATASET", "validating_files"),
            ("JOB_STATE_PENDING", "queued"),
            ("JOB_STATE_RE_QUEUEING", "queued"),
            ("JOB_STATE_IDLE", "queued"),
            ("JOB_STATE_RUNNING", "running"),
            ("JOB_STATE_WRITING_RESULTS", "running"),
            ("JOB_STATE_PAUSED", "paused"),
            ("JOB_STATE_CANCELLING", "cancelling"),
            ("JOB_STATE_COMPLETED", "succeeded"),
            ("JOB_STATE_EARLY_STOPPED", "succeeded"),
            ("JOB_STATE_FAILED", "failed"),
            ("JOB_STATE_EXPIRED", "failed"),
            ("JOB_STATE_CANCELLED", "cancelled"),
            ("JOB_STATE_DELETING", "deleting"),
        ] {
            assert_eq!(state(word).as_str(), normal, "{word}");
        }
    }
}
