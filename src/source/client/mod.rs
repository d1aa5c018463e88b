//! The HTTP core every provider shares: one reqwest client per source with its credential
//! ([`Auth`]: a key in a sensitive header, a Google token, a SigV4 signature), connect and
//! request timeouts, redirects only within `api_base`'s origin,
//! bounded bodies, and retries of 408/409/429/5xx, timeouts and connection errors that honour
//! `retry-after-ms`/`retry-after` up to 120 s, else `min(0.5·2ⁿ, 8) s` with jitter — as polite as
//! the official SDKs. Every failure becomes one [`SourceError`] sentence naming the URL (redacted)
//! and, for a rejected key, the provider. Providers build URLs and read bodies; this sends them.

mod parse;

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::{debug, warn};

pub use super::auth::Auth;
use super::job::{Job, JobParseError};
use super::{Page, RequestObserver, SourceError};
use crate::config::{Secret, SourceConfig};
use crate::inert::{self, API_BODY_LIMIT, ERROR_BODY_LIMIT, EXCERPT_CHARS};
#[cfg(test)]
use parse::api_error_message;
pub(in crate::source) use parse::{
    TokenList, api_error, parse_items, parse_json, parse_page, parse_token_page,
};

/// The longest server-requested delay honoured before retrying (as the official SDK does).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The shortest: a server asking for `retry-after: 0` still gets a second.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Redirects followed within the API's own origin (never to another: the key and the
/// organisation headers would go with them).
const MAX_REDIRECTS: usize = 5;

/// What a successful GET brought: the body, the next page's address from a `Link: <…>;
/// rel="next"` header (Hugging Face pages that way), and the requests it took.
pub struct Answer {
    pub body: Vec<u8>,
    pub next: Option<String>,
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
    /// How each request proves who sends it.
    auth: Auth,
    /// Secrets kept only to redact them from error answers that echo them.
    redact: Vec<Secret>,
    /// Whether `api_base` has a query of its own (which may hold a credential).
    base_has_query: bool,
}

impl ApiClient {
    /// Builds the client; a key goes into a header marked sensitive and is not kept elsewhere.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when a header value is not valid HTTP (e.g. a newline in the key).
    pub fn new(
        config: &SourceConfig,
        provider: &'static str,
        auth: Auth,
        extra_headers: &[(&'static str, &Option<String>)],
        query: Vec<(String, String)>,
    ) -> Result<ApiClient, SourceError> {
        let setup = |message: String| SourceError::Setup {
            source_name: config.name.clone(),
            message,
        };
        let mut headers = auth.static_headers().map_err(setup)?;
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
            redact: auth.secrets(),
            auth,
            base_has_query: config.api_base.query().is_some(),
        })
    }

    /// A plain client for a source's other requests (a token exchange): its timeouts and
    /// user agent, no credential, no redirects.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when the client cannot be built.
    pub fn plain_http(config: &SourceConfig) -> Result<reqwest::Client, SourceError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout.0)
            .timeout(config.request_timeout.0)
            .build()
            .map_err(|e| SourceError::Setup {
                source_name: config.name.clone(),
                message: format!("cannot build the HTTP client: {e}"),
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
        let text = if path.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{path}")
        };
        let mut url = Url::parse(&text).map_err(|e| setup(e.to_string()))?;
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
    ///
    /// # Errors
    /// The last [`SourceError`] after retries; a rejected credential at once.
    pub async fn get(
        &self,
        url: &Url,
        observe: RequestObserver<'_>,
    ) -> Result<(Vec<u8>, u32), SourceError> {
        let (answer, requests) = self.get_answer(url, observe).await?;
        Ok((answer.body, requests))
    }

    /// [`ApiClient::get`], with the next page's address when the answer links one. A 401 to a
    /// Google token fetches a new token and asks once more.
    ///
    /// # Errors
    /// As [`ApiClient::get`].
    pub async fn get_answer(
        &self,
        url: &Url,
        observe: RequestObserver<'_>,
    ) -> Result<(Answer, u32), SourceError> {
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            let outcome = self.try_get(url, observe).await;
            attempt += 1;
            let (error, server_delay) = match outcome {
                Ok(answer) => return Ok((answer, attempt)),
                Err(Failure::Final(e @ SourceError::KeyRejected { status: 401, .. })) => {
                    if refreshed || !self.auth.refresh().await {
                        return Err(e);
                    }
                    refreshed = true;
                    continue;
                }
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

    async fn try_get(&self, url: &Url, observe: RequestObserver<'_>) -> Result<Answer, Failure> {
        let started = std::time::Instant::now();
        let shown = self.shown(url);
        let mut request = self
            .http
            .get(url.clone())
            .build()
            .map_err(|e| Failure::Final(SourceError::transport(&shown, &e)))?;
        if let Err(e) = self.auth.apply(&mut request).await {
            return Err(match e {
                SourceError::Transport { .. } => Failure::Retryable(e, None),
                e => Failure::Final(e),
            });
        }
        let response = match self.http.execute(request).await {
            Ok(r) => r,
            Err(e) => {
                observe(None, started.elapsed());
                return Err(Failure::Retryable(SourceError::transport(&shown, &e), None));
            }
        };
        if response.status().is_success() {
            self.success(response, shown, started, observe).await
        } else {
            Err(self.failure(response, shown, started, observe).await)
        }
    }

    /// A 2xx answer: its body (bounded) and the `Link` header's next page.
    async fn success(
        &self,
        response: reqwest::Response,
        shown: String,
        started: std::time::Instant,
        observe: RequestObserver<'_>,
    ) -> Result<Answer, Failure> {
        let status = response.status();
        let next = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = inert::read_body(response, API_BODY_LIMIT).await;
        observe(Some(status.as_u16()), started.elapsed());
        debug!(url = %shown, status = status.as_u16(), ms = started.elapsed().as_millis() as u64,
               "API request");
        match body {
            Ok(body) => Ok(Answer { body, next }),
            Err(inert::BodyError::Transport(e)) => {
                Err(Failure::Retryable(SourceError::transport(&shown, &e), None))
            }
            Err(inert::BodyError::TooLarge { limit }) => Err(Failure::Final(SourceError::Body {
                url: shown,
                message: format!(
                    "the answer is larger than {}; stopped reading it",
                    inert::size(limit)
                ),
            })),
        }
    }

    /// Any other answer: one sentence from its (bounded, redacted) body, and whether to retry.
    async fn failure(
        &self,
        response: reqwest::Response,
        shown: String,
        started: std::time::Instant,
        observe: RequestObserver<'_>,
    ) -> Failure {
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
        let aws_error_type = header(reqwest::header::HeaderName::from_static("x-amzn-errortype"));
        let body = inert::read_excerpt(response, ERROR_BODY_LIMIT).await;
        observe(Some(status.as_u16()), started.elapsed());
        let (code, message) = if status.is_redirection() {
            (
                None,
                format!(
                    "redirect to {} not followed (tunewatch follows redirects only within the \
                     API's own origin); set api_base to where the API is",
                    inert::redact_urls_in(&location)
                ),
            )
        } else {
            // The key, and any URL the server quotes (with its user:pass@), never get further.
            let (code, message) = api_error(status, &content_type, &aws_error_type, &body);
            let secrets: Vec<&str> = self.redact.iter().map(Secret::expose).collect();
            (
                code.map(|c| inert::redact(&c, &secrets)),
                inert::redact(&inert::redact_urls_in(&message), &secrets),
            )
        };
        let error = match status.as_u16() {
            401 | 403 => SourceError::KeyRejected {
                provider: self.provider,
                api_base: self.api_base.clone(),
                status: status.as_u16(),
                code,
                message,
            },
            code => SourceError::Status {
                url: shown,
                status: code,
                message,
            },
        };
        if is_retryable(status) {
            Failure::Retryable(error, delay)
        } else {
            Failure::Final(error)
        }
    }
}

enum Failure {
    Final(SourceError),
    /// With the delay the server asked for, in seconds (not yet clamped).
    Retryable(SourceError, Option<f64>),
}

/// The address of `rel="next"` in a `Link` header (`<https://…?cursor=x>; rel="next"`).
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        (next && url.len() <= 4096).then(|| url.to_string())
    })
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
