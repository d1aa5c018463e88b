//! How an HTTP channel's attempt went, read the same way for every channel that POSTs: a
//! transport failure, a success, a redirect (never followed), or a refusal with its status,
//! an excerpt of its body and its `Retry-After`. Destinations are named by their shown (redacted)
//! form only.

use std::time::Duration;

use super::Attempt;
use crate::inert::{self, ERROR_BODY_LIMIT, EXCERPT_CHARS};

/// The attempt that could not be sent: timed out, not connected, or failed on the way.
pub(crate) fn unsent(shown: &str, e: reqwest::Error) -> Attempt {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // Without the URL: reqwest's message would print it whole, credentials and all.
    let cause = inert::redact_urls_in(&super::error_chain(&e.without_url()));
    Attempt::Failed {
        retryable: true,
        status: None,
        error: format!(
            "POST {shown} {kind} ({})",
            inert::excerpt(&cause, EXCERPT_CHARS)
        ),
        retry_after: None,
    }
}

/// The answer to an attempt that reached the destination; 408, 425, 429 and 5xx are tried again.
pub(crate) async fn read(shown: &str, response: reqwest::Response) -> Attempt {
    let status = response.status();
    let code = status.as_u16();
    if status.is_success() {
        return Attempt::Delivered { status: Some(code) };
    }
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| inert::redact_urls_in(&inert::excerpt(l, EXCERPT_CHARS)))
            .unwrap_or_else(|| "nowhere (no Location header)".into());
        return Attempt::Failed {
            retryable: true,
            status: Some(code),
            error: format!(
                "POST {shown} answered HTTP {code}, a redirect to {location}; deliveries do not \
                 follow redirects: set the notifier's url to the final address"
            ),
            retry_after: None,
        };
    }
    let retry_after = crate::source::client::retry_after(response.headers())
        .and_then(|s| inert::clamp_delay(s, Duration::ZERO, Duration::from_secs(86_400)));
    let text = inert::read_excerpt(response, ERROR_BODY_LIMIT).await;
    let excerpt = inert::excerpt(&text, 200);
    Attempt::Failed {
        retryable: matches!(code, 408 | 425 | 429) || status.is_server_error(),
        status: Some(code),
        error: if excerpt.is_empty() {
            format!("POST {shown} answered HTTP {code}")
        } else {
            format!("POST {shown} answered HTTP {code}: {excerpt}")
        },
        retry_after,
    }
}

/// The HTTP client of a channel that POSTs: no redirects followed, `timeout` (30 s unless
/// set), tunewatch's user agent.
pub(crate) fn client(timeout: Option<Duration>) -> Result<reqwest::Client, super::NotifyError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout.unwrap_or(Duration::from_secs(30)))
        .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| super::NotifyError::Client(e.to_string()))
}

impl Attempt {
    /// The attempt with `secret` (a routing key, a bot token) cut out of its error.
    pub(crate) fn without(self, secret: &str, shown_as: &str) -> Attempt {
        match self {
            Attempt::Failed {
                retryable,
                status,
                error,
                retry_after,
            } if !secret.is_empty() => Attempt::Failed {
                retryable,
                status,
                error: error.replace(secret, shown_as),
                retry_after,
            },
            other => other,
        }
    }
}
