//! Sources: where job snapshots come from. `job` is the model, `openai` the HTTP client.
//!
//! This boundary translates every HTTP and body failure into a [`SourceError`] that names the URL
//! and what went wrong, in one sentence, with no secret in it.

pub mod job;
pub mod openai;

pub use job::{Job, JobError, JobParseError, JobStatus};
pub use openai::OpenAiClient;

/// Why a poll of the API failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name:?}: {message}")]
    Setup {
        source_name: String,
        message: String,
    },
    #[error(
        "the API key was rejected by {api_base} (HTTP {status}: {message}); check the source's \
         api_key_* and organization/project"
    )]
    KeyRejected {
        api_base: String,
        status: u16,
        message: String,
    },
    #[error("GET {url} answered HTTP {status} {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("GET {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url} returned an unusable body: {message}")]
    Body { url: String, message: String },
}

impl SourceError {
    /// `url` is the URL as it may be shown (already redacted).
    pub(crate) fn transport(url: &str, e: &reqwest::Error) -> SourceError {
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the connection broke while reading the body"
        } else {
            "the connection failed"
        };
        // The innermost cause says the most ("Connection refused", "connection closed before …").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let cause = crate::inert::redact_urls_in(&crate::inert::excerpt(
            &cause.to_string(),
            crate::inert::EXCERPT_CHARS,
        ));
        SourceError::Transport {
            url: url.to_string(),
            message: format!("{kind} ({cause})"),
        }
    }
}
