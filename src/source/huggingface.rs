//! Hugging Face Jobs of one namespace (a user or an organisation): `GET
//! {api_base}/jobs/{namespace}[?label=k=v…]` answers a bare array, the next page linked by a
//! `Link: <…>; rel="next"` header; `GET {api_base}/jobs/{namespace}/{id}` one job. The list
//! promises no order, so every poll reads it whole. A job's state is `status.stage`, and a
//! failed one says why in `status.message`. Bearer key (an `hf_` token). Shapes follow
//! `huggingface_hub`'s `JobInfo` (`_jobs_api.py`).

use reqwest::Url;
use serde_json::Value;

use super::auth::Auth;
use super::client::{ApiClient, TokenList, parse_json, parse_token_page};
use super::job::{Job, JobError, JobParseError, JobStatus, Kind, unix_time};
use super::{BoxFuture, Cursor, Page, RequestObserver, Source, SourceError};
use crate::config::{Scope, SourceConfig, SourceSecrets};

/// A Job's `status.stage` in the common vocabulary; unknown ones lower-cased.
pub fn stage(word: &str) -> JobStatus {
    match word.trim().to_ascii_uppercase().as_str() {
        "SCHEDULING" | "QUEUED" | "PENDING" => JobStatus::Queued,
        "RUNNING" => JobStatus::Running,
        "COMPLETED" => JobStatus::Succeeded,
        "ERROR" => JobStatus::Failed,
        "CANCELED" | "CANCELLED" | "DELETED" => JobStatus::Cancelled,
        other => JobStatus::parse(&other.to_lowercase()),
    }
}

/// A Job in OpenAI's field names, for alerts (see [`super::view`]).
pub fn view(raw: &Value) -> Value {
    let s = |p: &str| raw.pointer(p).and_then(Value::as_str);
    let failed = s("/status/stage").is_some_and(|st| st.eq_ignore_ascii_case("ERROR"));
    serde_json::json!({
        "id": s("/id"),
        "model": s("/dockerImage").or_else(|| s("/spaceId")),
        "created_at": raw.get("createdAt").and_then(unix_time),
        "error": failed.then(|| serde_json::json!({"message": s("/status/message")})),
        "hyperparameters": raw.get("flavor").and_then(Value::as_str).map(|f| serde_json::json!({"flavor": f})),
    })
}

/// A client for one configured `huggingface` source.
pub struct HuggingFaceClient {
    core: ApiClient,
    list_url: Url,
    namespace: String,
    max_pages: u32,
}

impl HuggingFaceClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key cannot be a header or `api_base` cannot take a path.
    pub fn new(
        config: &SourceConfig,
        secrets: &SourceSecrets,
    ) -> Result<HuggingFaceClient, SourceError> {
        let Scope::Huggingface { namespace, labels } = &config.scope else {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: "a huggingface source needs a namespace".into(),
            });
        };
        let core = ApiClient::new(
            config,
            "huggingface",
            Auth::bearer(&config.name, secrets)?,
            &[],
            Vec::new(),
        )?;
        let mut list_url = core.url("jobs", &[namespace])?;
        for (k, v) in labels {
            list_url
                .query_pairs_mut()
                .append_pair("label", &format!("{k}={v}"));
        }
        Ok(HuggingFaceClient {
            core,
            list_url,
            namespace: namespace.clone(),
            max_pages: config.max_pages,
        })
    }

    /// Reads a Job.
    pub fn to_job(raw: Value) -> Result<Job, JobParseError> {
        let id = raw
            .get("id")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("id"))?
            .to_string();
        super::job::check_id(&id)?;
        let word = raw
            .pointer("/status/stage")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("status.stage"))?
            .to_string();
        if word.trim().is_empty() {
            return Err(JobParseError::EmptyStatus);
        }
        if word.len() > super::job::MAX_STATUS_CHARS || word.chars().any(char::is_control) {
            return Err(JobParseError::BadStatus);
        }
        let status = stage(&word);
        let mut job = Job::from_parts(raw, id, &word, status, "huggingface", Kind::FineTuning);
        let raw = &job.raw;
        let s = |p: &str| raw.pointer(p).and_then(Value::as_str).map(str::to_string);
        job.model = s("/dockerImage").or_else(|| s("/spaceId"));
        job.created_at = raw
            .get("createdAt")
            .or_else(|| raw.get("created_at"))
            .and_then(unix_time);
        job.error = (job.status == JobStatus::Failed)
            .then(|| s("/status/message"))
            .flatten()
            .map(|m| JobError {
                code: None,
                message: Some(m),
                param: None,
            });
        Ok(job)
    }

    /// The next page's address, when it is this namespace's list on the API's own origin (a
    /// link elsewhere would take the token with it).
    fn next_page(&self, next: &str) -> Result<Url, SourceError> {
        let shown = self.core.shown(&self.list_url);
        let url = Url::parse(next)
            .or_else(|_| self.list_url.join(next))
            .map_err(|_| SourceError::Body {
                url: shown.clone(),
                message: "the next page's link is not a URL".into(),
            })?;
        if url.origin() != self.list_url.origin() || url.path() != self.list_url.path() {
            return Err(SourceError::Body {
                url: shown,
                message: format!(
                    "the next page's link leaves this namespace's jobs ({}); not followed",
                    crate::inert::redact_url(&url, false)
                ),
            });
        }
        Ok(url)
    }
}

impl Source for HuggingFaceClient {
    fn provider(&self) -> &'static str {
        "huggingface"
    }

    fn newest_first(&self) -> bool {
        false
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(async move {
            let url = match cursor.after() {
                Some(next) => self.next_page(next)?,
                None => self.list_url.clone(),
            };
            let (answer, requests) = self.core.get_answer(&url, observe).await?;
            let shape = TokenList {
                array: None,
                token: "",
                id: "id",
            };
            let mut page =
                parse_token_page(&self.core.shown(&url), &answer.body, &shape, &Self::to_job)?;
            // The cursor is the linked next page.
            page.has_more = answer.next.is_some();
            page.last_id = answer.next;
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
            super::job::check_id(id).map_err(|e| SourceError::Body {
                url: self.core.shown(&self.list_url),
                message: e.to_string(),
            })?;
            let url = self.core.url("jobs", &[&self.namespace, id])?;
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
    fn every_stage_has_its_word() {
        for (word, normal) in [
            ("SCHEDULING", "queued"),
            ("RUNNING", "running"),
            ("COMPLETED", "succeeded"),
            ("ERROR", "failed"),
            ("CANCELED", "cancelled"),
            ("DELETED", "cancelled"),
            ("Running", "running"),
            ("SLEEPING", "sleeping"),
        ] {
            assert_eq!(stage(word).as_str(), normal, "{word}");
        }
    }
}
