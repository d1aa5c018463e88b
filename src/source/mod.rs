//! Sources: where job snapshots come from. `job` is the model; each provider is one file that
//! implements [`Source`] (`openai` is the first). A provider lists, fetches and normalises;
//! everything downstream (snapshots, diff, events, routes, outbox) is shared, so a new provider
//! adds a file and one line in [`build`], not a branch in the scheduler.
//!
//! This boundary translates every HTTP and body failure into a [`SourceError`] that names the URL
//! and what went wrong, in one sentence, with no secret in it.

pub mod auth;
pub mod batches;
pub mod bedrock;
pub mod chat;
pub mod client;
pub mod fireworks;
pub mod huggingface;
/// The job model lives in [`crate::model`]; its old address stays.
pub use crate::model::job;
pub mod mistral;
pub mod models;
pub mod names;
pub mod openai;
pub mod together;
pub mod vertex;
pub mod view;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{SourceConfig, SourceKind, SourceSecrets};
pub use job::{Job, JobError, JobParseError, JobStatus};
pub use openai::OpenAiClient;

/// A boxed future, so that [`Source`] can be used as `dyn Source`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Told about every request made: the HTTP status (none when no answer came) and its duration.
pub type RequestObserver<'a> = &'a (dyn Fn(Option<u16>, Duration) + Sync);

/// One provider's API, as the scheduler uses it.
pub trait Source: Send + Sync {
    /// The provider's name, as events carry it: `"openai"`.
    fn provider(&self) -> &'static str;

    /// One page of the job list at `cursor`, newest first; with the number of requests it took
    /// (retries included).
    fn list_page<'a>(
        &'a self,
        cursor: &'a Cursor,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<(Page, u32), SourceError>>;

    /// Moves `cursor` past `page`; false when it was the last page.
    ///
    /// # Errors
    /// [`SourceError::Body`] when paging must stop (a cursor seen twice, `max_pages`).
    fn advance(&self, cursor: &mut Cursor, page: &Page) -> Result<bool, SourceError>;

    /// One job by id.
    fn get_job<'a>(
        &'a self,
        id: &'a str,
        observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Job, SourceError>>;

    /// The provider's job object as tunewatch's job model (statuses normalised).
    ///
    /// # Errors
    /// [`JobParseError`] when the value is not a job.
    fn normalise(&self, raw: Value) -> Result<Job, JobParseError>;

    /// One page of a job's events or checkpoints (`list`), newest first, after the item `after`;
    /// with the number of requests it took. `None` when the provider has no such list (then
    /// there is no training insight for its jobs).
    fn list_job_items<'a>(
        &'a self,
        _job_id: &'a str,
        _list: JobList,
        _after: Option<&'a str>,
        _observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<(ItemsPage, u32)>, SourceError>> {
        Box::pin(async { Ok(None) })
    }

    /// The job in full, when a list gives less than a fetch by id (Bedrock's summaries lack
    /// the failure message and the losses): read once for a job about to be stored finished, so
    /// that its alert has them. `None` when the provider's list already has everything.
    fn details<'a>(
        &'a self,
        _job: &'a Job,
        _observe: RequestObserver<'a>,
    ) -> BoxFuture<'a, Result<Option<Job>, SourceError>> {
        Box::pin(async { Ok(None) })
    }

    /// What this client lists: fine-tuning jobs (the default) or batches.
    fn kind(&self) -> job::Kind {
        job::Kind::FineTuning
    }

    /// Whether `id` is one of this client's objects (a followed id goes to the client that owns
    /// it: batch ids start with `batch_`).
    fn owns(&self, id: &str) -> bool {
        !id.starts_with("batch_")
    }

    /// Whether the list is newest first, so that a poll may stop at the first page that ends in
    /// a known job. A provider that does not promise an order reads every page, every poll.
    fn newest_first(&self) -> bool {
        true
    }

    /// Whether a (normalised) status is final: the job never changes status again.
    fn is_terminal(&self, status: &JobStatus) -> bool {
        status.is_terminal()
    }
}

/// The lists a job has beside itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobList {
    /// `GET …/jobs/{id}/events`: messages and metric points.
    Events,
    /// `GET …/jobs/{id}/checkpoints`: models saved during training.
    Checkpoints,
}

impl JobList {
    /// The path segment of the list.
    pub fn segment(self) -> &'static str {
        match self {
            JobList::Events => "events",
            JobList::Checkpoints => "checkpoints",
        }
    }
}

/// One page of a job's events or checkpoints, each kept as the API sent it.
#[derive(Debug, Default)]
pub struct ItemsPage {
    /// The items with a usable `id`, newest first.
    pub items: Vec<Value>,
    /// Items that had no usable id, skipped.
    pub skipped: usize,
    pub has_more: bool,
    /// The id to pass as `after` for the next page.
    pub last_id: Option<String>,
}

/// The clients for what `config` watches (fine-tuning jobs of its kind of API, batches): the
/// one place that knows every provider.
///
/// # Errors
/// [`SourceError::Setup`] when a client cannot be built from the config and credential.
pub fn build_all(
    config: &SourceConfig,
    secrets: &SourceSecrets,
) -> Result<Vec<Arc<dyn Source>>, SourceError> {
    let mut clients = Vec::new();
    for watch in &config.watch {
        clients.push(match watch {
            crate::config::Watch::FineTuning => build(config, secrets)?,
            crate::config::Watch::Batches => batches::build(config, secrets)?,
            // The model list is read on its own schedule, by `models::ModelsClient`.
            crate::config::Watch::Models => continue,
        });
    }
    Ok(clients)
}

/// The API key of a source that takes one.
pub(crate) fn key_of<'a>(
    config: &SourceConfig,
    secrets: &'a SourceSecrets,
) -> Result<&'a crate::config::Secret, SourceError> {
    match secrets {
        SourceSecrets::Key(k) => Ok(k),
        _ => Err(SourceError::Setup {
            source_name: config.name.clone(),
            message: format!("a {} source takes an API key", config.kind.name()),
        }),
    }
}

/// The fine-tuning jobs client for `config`'s kind of API.
///
/// # Errors
/// [`SourceError::Setup`] when the client cannot be built from the config and credential.
pub fn build(
    config: &SourceConfig,
    secrets: &SourceSecrets,
) -> Result<Arc<dyn Source>, SourceError> {
    Ok(match config.kind {
        SourceKind::Openai | SourceKind::AzureOpenai => {
            Arc::new(OpenAiClient::new(config, key_of(config, secrets)?)?)
        }
        SourceKind::Mistral => Arc::new(mistral::MistralClient::new(
            config,
            key_of(config, secrets)?,
        )?),
        SourceKind::Together => Arc::new(together::TogetherClient::new(
            config,
            key_of(config, secrets)?,
        )?),
        SourceKind::VertexAi => Arc::new(vertex::VertexClient::new(config, secrets)?),
        SourceKind::Bedrock => Arc::new(bedrock::BedrockClient::new(config, secrets)?),
        SourceKind::Fireworks => Arc::new(fireworks::FireworksClient::new(config, secrets)?),
        SourceKind::Huggingface => Arc::new(huggingface::HuggingFaceClient::new(config, secrets)?),
        SourceKind::Anthropic | SourceKind::Gemini => {
            return Err(SourceError::Setup {
                source_name: config.name.clone(),
                message: format!("{} has no fine-tuning API", config.kind.name()),
            });
        }
    })
}

/// What a kind's API cannot give, in sentences `check` prints, so nobody waits for a loss chart
/// or a webhook that cannot come. `insight`: whether training insight is on for the source.
pub fn cannot_give(
    kind: SourceKind,
    insight: bool,
    watch: &[crate::config::Watch],
) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if insight && watch.contains(&crate::config::Watch::FineTuning) {
        notes.extend(match kind {
            SourceKind::Openai | SourceKind::AzureOpenai => None,
            SourceKind::Mistral => Some(
                "mistral has no separate events/checkpoints list, so its jobs get no training insight (progress, losses, chart)",
            ),
            SourceKind::Together => Some(
                "together has no separate events/checkpoints list, so its jobs get no training insight (progress, losses, chart)",
            ),
            SourceKind::VertexAi => Some(
                "vertex_ai gives no metrics while a job runs: no progress, losses, loss chart or overfitting warning; the cost (from billable tokens and [prices]) and the tuned model's checkpoints come when it ends",
            ),
            SourceKind::Bedrock => Some(
                "bedrock gives only the final training and validation loss of a finished job: no progress, loss chart or overfitting warning",
            ),
            SourceKind::Fireworks => Some(
                "fireworks gives progress (percent) and an estimated cost, but no losses: no loss chart or overfitting warning",
            ),
            SourceKind::Huggingface => {
                Some("huggingface Jobs have a state and nothing else: no progress, losses or cost")
            }
            SourceKind::Anthropic | SourceKind::Gemini => None,
        });
    }
    if watch.contains(&crate::config::Watch::Batches) {
        notes.extend(match kind {
            SourceKind::Anthropic => Some(
                "anthropic counts a batch's requests only when it ends: no progress while it runs",
            ),
            SourceKind::Together => Some(
                "together gives a batch's progress but no request counts: no batch.partially_failed",
            ),
            _ => None,
        });
        if matches!(
            kind,
            SourceKind::Mistral | SourceKind::Together | SourceKind::Gemini
        ) {
            notes.push("its batch list promises no order: every poll reads all of it");
        }
    }
    if !matches!(kind, SourceKind::Openai) {
        notes.push("no webhooks: changes are seen by polling only");
    }
    notes
}

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

/// Where paging goes next within one poll: it refuses a cursor seen before (a server that
/// would be paged in a circle) and more than `max_pages` pages.
#[derive(Debug, Default)]
pub struct Cursor {
    after: Option<String>,
    seen: std::collections::HashSet<String>,
    pages: u32,
}

impl Cursor {
    /// The `after` of the next request (`None` for the first page).
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Moves past `page`; false when it was the last page.
    ///
    /// # Errors
    /// A sentence when `has_more` is set but the page gives no id to go on from, when the id was
    /// already used as a cursor in this poll (the server pages in a circle), or when the poll
    /// would read more than `max_pages` pages.
    pub fn advance(&mut self, page: &Page, max_pages: u32) -> Result<bool, String> {
        self.pages += 1;
        if !page.has_more {
            return Ok(false);
        }
        let Some(last) = &page.last_id else {
            return Err("has_more is true but the page gives no id to continue after".into());
        };
        if self.pages >= max_pages {
            return Err(format!(
                "has_more is still true after {} pages (max_pages); stopping this poll",
                self.pages
            ));
        }
        if self.after.as_deref() == Some(last.as_str()) || !self.seen.insert(last.clone()) {
            return Err(format!(
                "the API sent cursor {} a second time in one poll (after {} pages): it pages in \
                 a circle; stopping this poll",
                crate::inert::Inert(last),
                self.pages
            ));
        }
        self.after = Some(last.clone());
        Ok(true)
    }
}

/// Why a poll of the API failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name:?}: {message}")]
    Setup {
        source_name: String,
        message: String,
    },
    #[error(
        "the {} was rejected by {api_base} ({provider}, HTTP {status}{}: {message}); check the \
         source's {}",
        credential_word(provider),
        code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(),
        credential_keys(provider)
    )]
    KeyRejected {
        provider: &'static str,
        api_base: String,
        status: u16,
        /// The provider's own error code (`UNAUTHENTICATED`, `ExpiredTokenException`).
        code: Option<String>,
        message: String,
    },
    /// A credential refused before the API was asked: a Google token exchange, the metadata
    /// server.
    #[error("{0}")]
    CredentialRefused(Box<Refusal>),
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

/// A credential refused by the service that exchanges it for access (Google's token endpoint),
/// with the service's own error code.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the {what} was refused by {at}{}: {message}; {hint}",
    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
)]
pub struct Refusal {
    pub what: &'static str,
    pub at: String,
    pub code: Option<String>,
    pub message: String,
    pub hint: &'static str,
}

/// What a provider's credential is called in a sentence.
fn credential_word(provider: &str) -> &'static str {
    match provider {
        "vertex_ai" | "gemini_vertex" => "Google credential",
        "bedrock" => "AWS credential",
        _ => "API key",
    }
}

/// The config keys that hold a provider's credential, for "check the source's …".
fn credential_keys(provider: &str) -> &'static str {
    match provider {
        "openai" => "api_key_* and organization/project",
        "vertex_ai" => "google_credentials_* (and the account's roles)",
        "bedrock" => "api_key_* or aws_access_key_id_*/aws_secret_access_key_* (and its policy)",
        _ => "api_key_*",
    }
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
