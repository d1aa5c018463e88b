//! The HTTP core every provider shares: one reqwest client per source with the key in a
//! sensitive header, connect and request timeouts, redirects only within `api_base`'s origin,
//! bounded bodies, and retries of 408/409/429/5xx, timeouts and connection errors that honour
//! `retry-after-ms`/`retry-after` up to 120 s, else `min(0.5·2ⁿ, 8) s` with jitter — as polite as
//! the official SDKs. Every failure becomes one [`SourceError`] sentence naming the URL (redacted)
//! and, for a rejected key, the provider. Providers build URLs and read bodies; this sends them.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::{debug, warn};

use super::job::{Job, JobParseError};
use super::{ItemsPage, Page, RequestObserver, SourceError};
use crate::config::{Secret, SourceConfig};
use crate::inert::{self, API_BODY_LIMIT, ERROR_BODY_LIMIT, EXCERPT_CHARS};

/// The longest server-requested delay honoured before retrying (as the official SDK does).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The shortest: a server asking for `retry-after: 0` still gets a second.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Redirects followed within the API's own origin (never to another: the key and the
/// organisation headers would go with them).
const MAX_REDIRECTS: usize = 5;

/// How a provider wants its key.
pub enum Auth {
    /// `Authorization: Bearer KEY` (OpenAI, Mistral, Together).
    Bearer,
    /// The key alone in a header of this name (Azure OpenAI's `api-key`).
    Header(&'static str),
}

/// The HTTP side of one configured source. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// The provider's name, for errors: `"mistral"`.
    pub provider: &'static str,
    /// `api_base` as it may be shown (no credentials), without a trailing `/`.
    pub api_base: String,
    base: Url,
    /// Query pairs every request carries (Azure's `api-version`).
    query: Vec<(String, String)>,
    max_retries: u32,
    /// The key, kept only to redact it from error answers that echo it.
    key: Secret,
    /// Whether `api_base` has a query of its own (which may hold a credential).
    base_has_query: bool,
}

impl ApiClient {
    /// Builds the client; the key goes into a header marked sensitive and is not kept elsewhere.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when a header value is not valid HTTP (e.g. a newline in the key).
    pub fn new(
        config: &SourceConfig,
        key: &Secret,
        provider: &'static str,
        auth: Auth,
        extra_headers: &[(&'static str, &Option<String>)],
        query: Vec<(String, String)>,
    ) -> Result<ApiClient, SourceError> {
        let setup = |message: String| SourceError::Setup {
            source_name: config.name.clone(),
            message,
        };
        let mut headers = HeaderMap::new();
        let (name, value) = match auth {
            Auth::Bearer => (
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            ),
            Auth::Header(name) => (HeaderName::from_static(name), key.expose().to_string()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| setup("the API key contains characters not allowed in a header".into()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
        for (name, value) in extra_headers {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v)
                    .map_err(|_| setup(format!("{name} {v:?} is not a valid header value")))?;
                headers.insert(*name, v);
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
        Ok(ApiClient {
            http,
            provider,
            api_base: shown.trim_end_matches('/').to_string(),
            base: config.api_base.0.clone(),
            query,
            max_retries: config.max_retries,
            key: key.clone(),
            base_has_query: config.api_base.query().is_some(),
        })
    }

    /// `api_base` + `/path` + `segments` (each escaped as one path segment), with the query every
    /// request carries.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when `api_base` cannot take a path.
    pub fn url(&self, path: &str, segments: &[&str]) -> Result<Url, SourceError> {
        let setup = |e: String| SourceError::Setup {
            source_name: String::new(),
            message: format!("api_base {} cannot take a path: {e}", self.api_base),
        };
        let base = self.base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}/{path}")).map_err(|e| setup(e.to_string()))?;
        if !segments.is_empty() {
            url.path_segments_mut()
                .map_err(|()| setup("not a hierarchical URL".into()))?
                .extend(segments);
        }
        for (k, v) in &self.query {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    /// `GET {path}/{id}` read by `normalise`: one job or batch by id, for an id that can be one
    /// (another would change the URL's meaning).
    ///
    /// # Errors
    /// [`SourceError`] after retries, or when the body is not one.
    pub async fn get_one(
        &self,
        path: &str,
        id: &str,
        observe: RequestObserver<'_>,
        normalise: &(dyn Fn(Value) -> Result<Job, JobParseError> + Sync),
    ) -> Result<Job, SourceError> {
        let url = self.url(path, &[id])?;
        let shown = self.shown(&url);
        super::job::check_id(id).map_err(|e| SourceError::Body {
            url: shown.clone(),
            message: e.to_string(),
        })?;
        let (body, _) = self.get(&url, observe).await?;
        normalise(parse_json(&shown, &body)?).map_err(|e| SourceError::Body {
            url: shown,
            message: e.to_string(),
        })
    }

    /// Moves `cursor` past `page` of the list at `list_url`; false when it was the last page.
    ///
    /// # Errors
    /// [`SourceError::Body`] as [`Cursor::advance`] explains.
    pub fn advance(
        &self,
        cursor: &mut super::Cursor,
        page: &Page,
        max_pages: u32,
        list_url: &Url,
    ) -> Result<bool, SourceError> {
        cursor
            .advance(page, max_pages)
            .map_err(|message| SourceError::Body {
                url: self.shown(list_url),
                message,
            })
    }

    /// `url` as it may be shown: without `user:pass@`; its query (`limit`, `after`) is ours
    /// unless `api_base` brought one, which is then hidden.
    pub fn shown(&self, url: &Url) -> String {
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

    /// GETs `url` with retries; returns the body of a 2xx answer and the number of requests made.
    pub async fn get(
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
                provider: self.provider,
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

enum Failure {
    Final(SourceError),
    /// With the delay the server asked for, in seconds (not yet clamped).
    Retryable(SourceError, Option<f64>),
}

/// 408, 409, 429 and 5xx are worth another try; other statuses will not change by retrying.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The official SDK's delay before retry `n` (0-based): `min(0.5·2ⁿ, 8) s`, minus up to 25 %.
pub(super) fn sdk_backoff(n: u32) -> Duration {
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
pub(super) fn api_error_message(status: StatusCode, content_type: &str, body: &str) -> String {
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

pub(super) fn parse_json(url: &str, body: &[u8]) -> Result<Value, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Body {
        url: url.to_string(),
        // serde_json's message already ends with "at line L column C".
        message: format!("invalid JSON: {e}"),
    })
}

/// The top level of a list page; each element of `data` is read on its own, so that one
/// malformed or absurdly nested job is skipped instead of failing the page.
#[derive(serde::Deserialize)]
pub(super) struct RawPage<'a> {
    #[serde(borrow)]
    data: Option<Vec<&'a serde_json::value::RawValue>>,
    has_more: Option<Value>,
}

/// The `data` elements (each still unparsed) and `has_more` of a list answer; `what` names the
/// list in errors.
pub(super) fn list_data<'b>(
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
pub(super) fn parse_items(url: &str, body: &[u8]) -> Result<ItemsPage, SourceError> {
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
pub(super) fn parse_page(
    url: &str,
    body: &[u8],
    normalise: &dyn Fn(Value) -> Result<Job, JobParseError>,
) -> Result<Page, SourceError> {
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
            .and_then(normalise);
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
        let page = parse_page(url, body.as_bytes(), &Job::from_value).unwrap();
        assert_eq!(page.jobs.len(), 2);
        assert_eq!(
            page.skipped,
            vec![(Some("b".into()), JobParseError::Missing("status"))]
        );
        assert_eq!(page.last_id.as_deref(), Some("c"));
        assert!(page.has_more);
        let e = parse_page(url, br#"{"object":"list","data":{}}"#, &Job::from_value).unwrap_err();
        assert!(e.to_string().contains("not a job list"), "{e}");
        let e = parse_page(
            url,
            br#"{"object":"list","data":[{"id":"a""#,
            &Job::from_value,
        )
        .unwrap_err();
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
        let page = parse_page(url, &std::fs::read(path).unwrap(), &Job::from_value).unwrap();
        assert!(page.skipped.is_empty());
        assert!(page.jobs.len() >= 2);
    }
}
