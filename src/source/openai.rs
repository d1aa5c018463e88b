//! The HTTP client for the OpenAI fine-tuning jobs API (and APIs shaped like it).
//!
//! Owns requests, paging and retries: the bearer key and optional organisation/project headers,
//! connect and request timeouts, and retries of 408/409/429/5xx, timeouts and connection errors that
//! honour `retry-after-ms`/`retry-after` up to 120 s, else `min(0.5·2ⁿ, 8) s` with jitter — as polite
//! as the official SDK. It returns parsed jobs; it does not store or decide anything.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::{debug, warn};

use super::SourceError;
use super::job::{Job, JobParseError};
use crate::config::{Secret, SourceConfig};

/// The longest server-requested delay honoured before retrying (as the official SDK does).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// A guard against a server whose `has_more` never ends.
const MAX_PAGES: usize = 100_000;

/// One page of `GET /fine_tuning/jobs`.
#[derive(Debug, Default)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Elements of `data` that were not jobs: their id (when any) and why.
    pub skipped: Vec<(Option<String>, JobParseError)>,
    pub has_more: bool,
    /// The id to pass as `after` for the next page.
    pub last_id: Option<String>,
}

/// The result of listing every page.
#[derive(Debug, Default)]
pub struct Listing {
    pub jobs: Vec<Job>,
    pub skipped: Vec<(Option<String>, JobParseError)>,
    /// API requests made, retries included.
    pub requests: u32,
}

/// Told about every request made: the HTTP status (none when no answer came) and its duration.
pub type RequestObserver<'a> = &'a (dyn Fn(Option<u16>, Duration) + Sync);

/// A client for one configured source. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    api_base: String,
    jobs_url: Url,
    page_size: u32,
    max_retries: u32,
}

impl OpenAiClient {
    /// Builds the client; the key goes into a header marked sensitive and is not kept elsewhere.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when a header value is not valid HTTP (e.g. a newline in the key).
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<OpenAiClient, SourceError> {
        let setup = |message: String| SourceError::Setup {
            source_name: config.name.clone(),
            message,
        };
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| setup("the API key contains characters not allowed in a header".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        for (name, value) in [
            ("openai-organization", &config.organization),
            ("openai-project", &config.project),
        ] {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v)
                    .map_err(|_| setup(format!("{name} {v:?} is not a valid header value")))?;
                headers.insert(name, v);
            }
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout.0)
            .timeout(config.request_timeout.0)
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        let base = config.api_base.as_str().trim_end_matches('/');
        let jobs_url = Url::parse(&format!("{base}/fine_tuning/jobs"))
            .map_err(|e| setup(format!("api_base {base} cannot take a path: {e}")))?;
        Ok(OpenAiClient {
            http,
            api_base: base.to_string(),
            jobs_url,
            page_size: config.page_size,
            max_retries: config.max_retries,
        })
    }

    /// Lists every job, following `has_more` page by page.
    ///
    /// # Errors
    /// The first [`SourceError`] of any page, after retries.
    pub async fn list_all(&self, observe: RequestObserver<'_>) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, requests) = self.list_page(after.as_deref(), observe).await?;
            listing.requests += requests;
            let next = self.next_after(&page, after.as_deref())?;
            listing.jobs.extend(page.jobs);
            listing.skipped.extend(page.skipped);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(listing),
            }
        }
        Err(SourceError::Body {
            url: self.jobs_url.to_string(),
            message: format!("more than {MAX_PAGES} pages; stopping"),
        })
    }

    /// The `after` for the page following `page`, or `None` when it was the last.
    ///
    /// # Errors
    /// [`SourceError::Body`] when `has_more` is set but the page gives no new id to go on from
    /// (a server that would otherwise be paged forever).
    pub fn next_after(
        &self,
        page: &Page,
        after: Option<&str>,
    ) -> Result<Option<String>, SourceError> {
        match (&page.has_more, &page.last_id) {
            (false, _) => Ok(None),
            (true, Some(last)) if after != Some(last.as_str()) => Ok(Some(last.clone())),
            (true, _) => Err(SourceError::Body {
                url: self.jobs_url.to_string(),
                message: "has_more is true but the page gives no new id to continue after".into(),
            }),
        }
    }

    /// Fetches one page of the job list; returns it with the number of requests it took.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a job list.
    pub async fn list_page(
        &self,
        after: Option<&str>,
        observe: RequestObserver<'_>,
    ) -> Result<(Page, u32), SourceError> {
        let mut url = self.jobs_url.clone();
        url.query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        if let Some(a) = after {
            url.query_pairs_mut().append_pair("after", a);
        }
        let (body, requests) = self.get(&url, observe).await?;
        Ok((parse_page(&url, &body)?, requests))
    }

    /// Fetches one job by id.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a job.
    pub async fn get_job(
        &self,
        id: &str,
        observe: RequestObserver<'_>,
    ) -> Result<Job, SourceError> {
        let mut url = self.jobs_url.clone();
        url.path_segments_mut()
            .map_err(|_| SourceError::Setup {
                source_name: String::new(),
                message: "api_base cannot take a path".into(),
            })?
            .push(id);
        let (body, _) = self.get(&url, observe).await?;
        let value = parse_json(&url, &body)?;
        Job::from_value(value).map_err(|e| SourceError::Body {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// GETs `url` with retries; returns the body of a 2xx answer and the number of requests made.
    async fn get(
        &self,
        url: &Url,
        observe: RequestObserver<'_>,
    ) -> Result<(String, u32), SourceError> {
        let mut attempt = 0u32;
        loop {
            let outcome = self.try_get(url, observe).await;
            attempt += 1;
            let (error, server_delay) = match outcome {
                Ok(body) => return Ok((body, attempt)),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(e, delay)) => (e, delay),
            };
            if attempt > self.max_retries {
                return Err(error);
            }
            let delay = server_delay
                .filter(|d| *d <= MAX_RETRY_AFTER)
                .unwrap_or_else(|| sdk_backoff(attempt - 1));
            warn!(url = %url, attempt, delay_ms = delay.as_millis() as u64, error = %error,
                  "API request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_get(&self, url: &Url, observe: RequestObserver<'_>) -> Result<String, Failure> {
        let started = std::time::Instant::now();
        let response = match self.http.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                observe(None, started.elapsed());
                return Err(Failure::Retryable(SourceError::transport(url, &e), None));
            }
        };
        let status = response.status();
        let delay = retry_after(response.headers());
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.text().await;
        observe(Some(status.as_u16()), started.elapsed());
        let body = body.map_err(|e| Failure::Retryable(SourceError::transport(url, &e), None))?;
        debug!(url = %url, status = status.as_u16(), ms = started.elapsed().as_millis() as u64,
               "API request");
        if status.is_success() {
            return Ok(body);
        }
        let message = api_error_message(status, &content_type, &body);
        let error = match status.as_u16() {
            401 | 403 => SourceError::KeyRejected {
                api_base: self.api_base.clone(),
                status: status.as_u16(),
                message,
            },
            code => SourceError::Status {
                url: url.to_string(),
                status: code,
                message,
            },
        };
        if is_retryable(status) {
            Err(Failure::Retryable(error, delay))
        } else {
            Err(Failure::Final(error))
        }
    }
}

enum Failure {
    Final(SourceError),
    Retryable(SourceError, Option<Duration>),
}

/// 408, 409, 429 and 5xx are worth another try; other statuses will not change by retrying.
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The official SDK's delay before retry `n` (0-based): `min(0.5·2ⁿ, 8) s`, minus up to 25 %.
fn sdk_backoff(n: u32) -> Duration {
    let base = (0.5 * 2f64.powi(n.min(10) as i32)).min(8.0);
    Duration::from_secs_f64(base * (1.0 - 0.25 * fastrand::f64()))
}

/// The server's requested delay: `retry-after-ms` (milliseconds) or `retry-after` (seconds).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if let Some(ms) = number(reqwest::header::HeaderName::from_static("retry-after-ms")) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    number(RETRY_AFTER).map(Duration::from_secs_f64)
}

/// The most useful one-line description of an error answer.
fn api_error_message(status: StatusCode, content_type: &str, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(message) = v.pointer("/error/message").and_then(Value::as_str)
    {
        return format!("{reason}: {message}");
    }
    let excerpt: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let excerpt: String = excerpt.chars().take(120).collect();
    if excerpt.is_empty() {
        reason.to_string()
    } else {
        let ct = if content_type.is_empty() {
            "no content type"
        } else {
            content_type
        };
        format!("{reason} ({ct}): {excerpt}")
    }
}

fn parse_json(url: &Url, body: &str) -> Result<Value, SourceError> {
    serde_json::from_str(body).map_err(|e| SourceError::Body {
        url: url.to_string(),
        // serde_json's message already ends with "at line L column C".
        message: format!("invalid JSON: {e}"),
    })
}

/// Reads a list page; elements that are not jobs are reported in `skipped`, not fatal.
fn parse_page(url: &Url, body: &str) -> Result<Page, SourceError> {
    let value = parse_json(url, body)?;
    let shape = |message: &str| SourceError::Body {
        url: url.to_string(),
        message: message.to_string(),
    };
    let data = match value.get("data") {
        Some(Value::Array(items)) => items,
        _ => return Err(shape("the answer is not a job list (no `data` array)")),
    };
    let has_more = match value.get("has_more") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => false,
        Some(_) => return Err(shape("`has_more` is not a boolean")),
    };
    let mut page = Page {
        has_more,
        ..Page::default()
    };
    for item in data {
        let id = item.get("id").and_then(Value::as_str).map(str::to_string);
        if id.is_some() {
            page.last_id.clone_from(&id);
        }
        match Job::from_value(item.clone()) {
            Ok(job) => page.jobs.push(job),
            Err(e) => page.skipped.push((id, e)),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_sdk_curve() {
        for (n, max) in [(0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (9, 8.0)] {
            let d = sdk_backoff(n).as_secs_f64();
            assert!(d <= max && d >= max * 0.75, "retry {n}: {d}");
        }
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn error_messages_use_the_api_message_or_an_excerpt() {
        let m = api_error_message(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}"#,
        );
        assert_eq!(m, "Unauthorized: Incorrect API key provided");
        let m = api_error_message(
            StatusCode::BAD_GATEWAY,
            "text/html",
            "<html>\n<body>502 Bad Gateway</body></html>",
        );
        assert_eq!(
            m,
            "Bad Gateway (text/html): <html> <body>502 Bad Gateway</body></html>"
        );
    }

    #[test]
    fn pages_keep_good_jobs_and_report_bad_ones() {
        let url = Url::parse("http://127.0.0.1/v1/fine_tuning/jobs").unwrap();
        let body = r#"{"object":"list","has_more":true,"data":[
            {"id":"a","status":"running"},{"id":"b"},{"id":"c","status":"paused"}]}"#;
        let page = parse_page(&url, body).unwrap();
        assert_eq!(page.jobs.len(), 2);
        assert_eq!(
            page.skipped,
            vec![(Some("b".into()), JobParseError::Missing("status"))]
        );
        assert_eq!(page.last_id.as_deref(), Some("c"));
        assert!(page.has_more);
        let e = parse_page(&url, r#"{"object":"list","data":{}}"#).unwrap_err();
        assert!(e.to_string().contains("not a job list"), "{e}");
        let e = parse_page(&url, r#"{"object":"list","data":[{"id":"a""#).unwrap_err();
        assert!(
            e.to_string().contains("invalid JSON: EOF while parsing")
                && e.to_string().contains("at line 1 column"),
            "{e}"
        );
    }

    #[test]
    fn the_list_fixture_parses_as_a_page() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openai/ft_list_jobs_mixed.derived.json"
        );
        let url = Url::parse("http://127.0.0.1/v1/fine_tuning/jobs").unwrap();
        let page = parse_page(&url, &std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(page.skipped.is_empty());
        assert!(page.jobs.len() >= 2);
    }
}
