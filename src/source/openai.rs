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

use super::job::{Job, JobParseError};
use super::{
    BoxFuture, Cursor, ItemsPage, JobList, Listing, Page, RequestObserver, Source, SourceError,
};
use crate::config::{Secret, SourceConfig};
use crate::inert::{self, API_BODY_LIMIT, ERROR_BODY_LIMIT, EXCERPT_CHARS};

/// The longest server-requested delay honoured before retrying (as the official SDK does).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The shortest: a server asking for `retry-after: 0` still gets a second.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Redirects followed within the API's own origin (never to another: the organisation and
/// project headers would go with them).
const MAX_REDIRECTS: usize = 5;

/// A client for one configured source. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    /// `api_base` as it may be shown (no credentials).
    api_base: String,
    jobs_url: Url,
    page_size: u32,
    max_retries: u32,
    max_pages: u32,
    /// The key, kept only to redact it from error answers that echo it.
    key: Secret,
    /// Whether `api_base` has a query of its own (which may hold a credential).
    base_has_query: bool,
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
        let origin = config.api_base.origin();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS || attempt.url().origin() != origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(redirects)
            .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout.0)
            .timeout(config.request_timeout.0)
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        let shown = inert::redact_url(&config.api_base, false);
        let base = config.api_base.as_str().trim_end_matches('/');
        let jobs_url = Url::parse(&format!("{base}/fine_tuning/jobs"))
            .map_err(|e| setup(format!("api_base {shown} cannot take a path: {e}")))?;
        Ok(OpenAiClient {
            http,
            api_base: shown.trim_end_matches('/').to_string(),
            jobs_url,
            page_size: config.page_size,
            max_retries: config.max_retries,
            max_pages: config.max_pages,
            key: key.clone(),
            base_has_query: config.api_base.query().is_some(),
        })
    }

    /// `url` as it may be shown: without `user:pass@`; its query (`limit`, `after`) is ours
    /// unless `api_base` brought one, which is then hidden.
    fn shown(&self, url: &Url) -> String {
        if self.base_has_query {
            return inert::redact_url(url, false);
        }
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let text = shown.to_string();
        if url.username().is_empty() && url.password().is_none() {
            text
        } else {
            text.replacen("://", "://***@", 1)
        }
    }

    /// Lists every job, following `has_more` page by page.
    ///
    /// # Errors
    /// The first [`SourceError`] of any page, after retries, and paging errors ([`Self::advance`]).
    pub async fn list_all(&self, observe: RequestObserver<'_>) -> Result<Listing, SourceError> {
        let mut listing = Listing::default();
        let mut cursor = Cursor::default();
        loop {
            let (page, requests) = self.list_page(cursor.after(), observe).await?;
            listing.requests += requests;
            let more = self.advance(&mut cursor, &page)?;
            listing.jobs.extend(page.jobs);
            listing.skipped.extend(page.skipped);
            if !more {
                return Ok(listing);
            }
        }
    }

    /// Moves `cursor` past `page`; false when it was the last page.
    ///
    /// # Errors
    /// [`SourceError::Body`] as [`Cursor::advance`] explains.
    pub fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        cursor
            .advance(page, self.max_pages)
            .map_err(|message| SourceError::Body {
                url: self.shown(&self.jobs_url),
                message,
            })
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
        Ok((parse_page(&self.shown(&url), &body)?, requests))
    }

    /// `…/fine_tuning/jobs/{id}` (and `/{tail}`), for an id that can be a job's.
    ///
    /// # Errors
    /// [`SourceError::Body`] when `id` is not a job id (it would change the URL's meaning).
    fn job_url(&self, id: &str, tail: Option<&str>) -> Result<Url, SourceError> {
        super::job::check_id(id).map_err(|e| SourceError::Body {
            url: self.shown(&self.jobs_url),
            message: e.to_string(),
        })?;
        let mut url = self.jobs_url.clone();
        url.path_segments_mut()
            .map_err(|_| SourceError::Setup {
                source_name: String::new(),
                message: "api_base cannot take a path".into(),
            })?
            .push(id)
            .extend(tail);
        Ok(url)
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
        let url = self.job_url(id, None)?;
        let (body, _) = self.get(&url, observe).await?;
        let shown = self.shown(&url);
        let value = parse_json(&shown, &body)?;
        Job::from_value(value).map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })
    }

    /// One page of a job's events or checkpoints, newest first.
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not a list.
    pub async fn list_job_items(
        &self,
        job_id: &str,
        list: JobList,
        after: Option<&str>,
        observe: RequestObserver<'_>,
    ) -> Result<(ItemsPage, u32), SourceError> {
        let mut url = self.job_url(job_id, Some(list.segment()))?;
        url.query_pairs_mut()
            .append_pair("limit", &self.page_size.to_string());
        if let Some(a) = after {
            url.query_pairs_mut().append_pair("after", a);
        }
        let (body, requests) = self.get(&url, observe).await?;
        Ok((parse_items(&self.shown(&url), &body)?, requests))
    }

    /// GETs `url` with retries; returns the body of a 2xx answer and the number of requests made.
    async fn get(
        &self,
        url: &Url,
        observe: RequestObserver<'_>,
    ) -> Result<(Vec<u8>, u32), SourceError> {
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
                .and_then(|s| inert::clamp_delay(s, MIN_RETRY_AFTER, MAX_RETRY_AFTER))
                .unwrap_or_else(|| sdk_backoff(attempt - 1));
            warn!(url = %self.shown(url), attempt, delay_ms = delay.as_millis() as u64, error = %error,
                  "API request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn try_get(&self, url: &Url, observe: RequestObserver<'_>) -> Result<Vec<u8>, Failure> {
        let started = std::time::Instant::now();
        let shown = self.shown(url);
        let response = match self.http.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                observe(None, started.elapsed());
                return Err(Failure::Retryable(SourceError::transport(&shown, &e), None));
            }
        };
        let status = response.status();
        let delay = retry_after(response.headers());
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(|s| inert::excerpt(s, EXCERPT_CHARS))
                .unwrap_or_default()
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let location = header(reqwest::header::LOCATION);
        if status.is_success() {
            let body = inert::read_body(response, API_BODY_LIMIT).await;
            observe(Some(status.as_u16()), started.elapsed());
            debug!(url = %shown, status = status.as_u16(), ms = started.elapsed().as_millis() as u64,
                   "API request");
            return match body {
                Ok(body) => Ok(body),
                Err(inert::BodyError::Transport(e)) => {
                    Err(Failure::Retryable(SourceError::transport(&shown, &e), None))
                }
                Err(inert::BodyError::TooLarge { limit }) => {
                    Err(Failure::Final(SourceError::Body {
                        url: shown,
                        message: format!(
                            "the answer is larger than {}; stopped reading it",
                            inert::size(limit)
                        ),
                    }))
                }
            };
        }
        let body = inert::read_excerpt(response, ERROR_BODY_LIMIT).await;
        observe(Some(status.as_u16()), started.elapsed());
        let message = if status.is_redirection() {
            format!(
                "redirect to {} not followed (tunewatch follows redirects only within the API's \
                 own origin); set api_base to where the API is",
                inert::redact_urls_in(&location)
            )
        } else {
            // The key, and any URL the server quotes (with its user:pass@), never get further.
            inert::redact(
                &inert::redact_urls_in(&api_error_message(status, &content_type, &body)),
                &[self.key.expose()],
            )
        };
        let error = match status.as_u16() {
            401 | 403 => SourceError::KeyRejected {
                api_base: self.api_base.clone(),
                status: status.as_u16(),
                message,
            },
            code => SourceError::Status {
                url: shown,
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

impl Source for OpenAiClient {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>> {
        Box::pin(OpenAiClient::list_page(self, cursor.after(), observe))
    }

    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError> {
        OpenAiClient::advance(self, cursor, page)
    }

    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>> {
        Box::pin(OpenAiClient::get_job(self, id, observe))
    }

    fn normalise(&self, raw: Value) -> Result<Job, JobParseError> {
        Job::from_value(raw)
    }

    fn list_job_items<'a>(
        &'a self,
        job_id: &'a str,
        list: JobList,
        after: Option<&'a str>,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<(ItemsPage, u32)>, SourceError>> {
        Box::pin(async move {
            OpenAiClient::list_job_items(self, job_id, list, after, observe)
                .await
                .map(Some)
        })
    }
}

enum Failure {
    Final(SourceError),
    /// With the delay the server asked for, in seconds (not yet clamped).
    Retryable(SourceError, Option<f64>),
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

/// The server's requested delay in seconds, as sent: `retry-after-ms` (milliseconds) or
/// `retry-after` (seconds). Callers clamp it ([`inert::clamp_delay`]); it may be absurd.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<f64> {
    let number = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if let Some(ms) = number(reqwest::header::HeaderName::from_static("retry-after-ms")) {
        return Some(ms / 1000.0);
    }
    number(RETRY_AFTER)
}

/// The most useful one-line description of an error answer, bounded to an excerpt.
fn api_error_message(status: StatusCode, content_type: &str, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(message) = v.pointer("/error/message").and_then(Value::as_str)
    {
        return format!("{reason}: {}", inert::excerpt(message, EXCERPT_CHARS));
    }
    let excerpt = inert::excerpt(body, 120);
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

fn parse_json(url: &str, body: &[u8]) -> Result<Value, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Body {
        url: url.to_string(),
        // serde_json's message already ends with "at line L column C".
        message: format!("invalid JSON: {e}"),
    })
}

/// The top level of a list page; each element of `data` is read on its own, so that one
/// malformed or absurdly nested job is skipped instead of failing the page.
#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    data: Option<Vec<&'a serde_json::value::RawValue>>,
    has_more: Option<Value>,
}

/// The `data` elements (each still unparsed) and `has_more` of a list answer; `what` names the
/// list in errors.
fn list_data<'b>(
    url: &str,
    body: &'b [u8],
    what: &str,
) -> Result<(Vec<&'b serde_json::value::RawValue>, bool), SourceError> {
    let shape = |message: &str| SourceError::Body {
        url: url.to_string(),
        message: message.to_string(),
    };
    let not_a_list = || shape(&format!("the answer is not a {what} (no `data` array)"));
    let raw: RawPage<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) if e.is_data() => return Err(not_a_list()),
        Err(e) => return Err(shape(&format!("invalid JSON: {e}"))),
    };
    let data = raw.data.ok_or_else(not_a_list)?;
    let has_more = match raw.has_more {
        Some(Value::Bool(b)) => b,
        None | Some(Value::Null) => false,
        Some(_) => return Err(shape("`has_more` is not a boolean")),
    };
    Ok((data, has_more))
}

/// Reads a page of a job's events or checkpoints: each element kept whole when it is an object
/// with a usable id (the cursor), skipped otherwise.
fn parse_items(url: &str, body: &[u8]) -> Result<ItemsPage, SourceError> {
    let (data, has_more) = list_data(url, body, "list")?;
    let mut page = ItemsPage {
        has_more,
        ..ItemsPage::default()
    };
    for item in data {
        let value: Option<Value> = serde_json::from_str(item.get()).ok();
        let id = value
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .filter(|id| super::job::check_id(id).is_ok())
            .map(str::to_string);
        match (value, id) {
            (Some(v), Some(id)) if v.is_object() => {
                page.last_id = Some(id);
                page.items.push(v);
            }
            _ => page.skipped += 1,
        }
    }
    Ok(page)
}

/// Reads a list page; elements that are not jobs are reported in `skipped`, not fatal.
fn parse_page(url: &str, body: &[u8]) -> Result<Page, SourceError> {
    let (data, has_more) = list_data(url, body, "job list")?;
    let mut page = Page {
        has_more,
        ..Page::default()
    };
    for item in data {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<Value>,
        }
        // The id alone, even when the rest of the element is unreadable: it is the cursor.
        let id = serde_json::from_str::<Id>(item.get())
            .ok()
            .and_then(|i| i.id)
            .and_then(|v| v.as_str().map(str::to_string));
        if id.is_some() {
            page.last_id.clone_from(&id);
        }
        let parsed = serde_json::from_str::<Value>(item.get())
            .map_err(|e| JobParseError::Unreadable(inert::excerpt(&e.to_string(), 120)))
            .and_then(Job::from_value);
        match parsed {
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
        assert_eq!(retry_after(&h), Some(3.0));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(0.25));
        h.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), Some(3.0));
        h.insert("retry-after", HeaderValue::from_static("1e20"));
        h.remove("retry-after-ms");
        assert_eq!(
            retry_after(&h),
            Some(1e20),
            "read as sent; clamped by the caller"
        );
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
        let url = "http://127.0.0.1/v1/fine_tuning/jobs";
        let body = r#"{"object":"list","has_more":true,"data":[
            {"id":"a","status":"running"},{"id":"b"},{"id":"c","status":"paused"}]}"#;
        let page = parse_page(url, body.as_bytes()).unwrap();
        assert_eq!(page.jobs.len(), 2);
        assert_eq!(
            page.skipped,
            vec![(Some("b".into()), JobParseError::Missing("status"))]
        );
        assert_eq!(page.last_id.as_deref(), Some("c"));
        assert!(page.has_more);
        let e = parse_page(url, br#"{"object":"list","data":{}}"#).unwrap_err();
        assert!(e.to_string().contains("not a job list"), "{e}");
        let e = parse_page(url, br#"{"object":"list","data":[{"id":"a""#).unwrap_err();
        assert!(
            e.to_string().contains("invalid JSON: EOF while parsing")
                && e.to_string().contains("at line 1 column"),
            "{e}"
        );
    }

    #[test]
    fn event_and_checkpoint_lists_keep_each_item_whole() {
        let url = "http://127.0.0.1/v1/fine_tuning/jobs/ftjob-1/events";
        for (file, n) in [
            ("ft_list_events.json", 2),
            ("ft_list_events_observed.derived.json", 4),
            ("ft_list_checkpoints.json", 2),
        ] {
            let path = format!(
                "{}/tests/fixtures/openai/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let page = parse_items(url, &std::fs::read(path).unwrap()).unwrap();
            assert_eq!((page.items.len(), page.skipped), (n, 0), "{file}");
            assert_eq!(
                page.last_id.as_deref(),
                page.items.last().and_then(|i| i["id"].as_str())
            );
        }
        let page = parse_items(
            url,
            br#"{"data": [{"id": "a b"}, 3, {"id": "ok", "type": "metrics"}], "has_more": true}"#,
        )
        .unwrap();
        assert_eq!(
            (page.items.len(), page.skipped, page.has_more),
            (1, 2, true)
        );
        assert!(parse_items(url, br#"{"data": {}}"#).is_err());
    }

    #[test]
    fn the_list_fixture_parses_as_a_page() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openai/ft_list_jobs_mixed.derived.json"
        );
        let url = "http://127.0.0.1/v1/fine_tuning/jobs";
        let page = parse_page(url, &std::fs::read(path).unwrap()).unwrap();
        assert!(page.skipped.is_empty());
        assert!(page.jobs.len() >= 2);
    }
}
