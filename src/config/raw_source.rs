//! `[[source]]` as written: the API kinds, what a source watches, and every key with its
//! default. Validated into [`super::SourceConfig`] by `validate_source`.

use std::path::PathBuf;

use serde::Deserialize;

use super::SafeUrl;
use super::{Dur, SecretRef};

/// The API a source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The OpenAI fine-tuning jobs API, or one shaped like it.
    Openai,
    /// Azure OpenAI: OpenAI's shapes under `https://RESOURCE.openai.azure.com/openai`.
    AzureOpenai,
    /// Mistral's fine-tuning jobs API.
    Mistral,
    /// Together AI's fine-tunes API.
    Together,
    /// Google Vertex AI's tuning jobs (Gemini tuning), in one `project` and `location`.
    VertexAi,
    /// AWS Bedrock's model customization jobs, in one `region`.
    Bedrock,
    /// Fireworks AI's supervised fine-tuning jobs of one `account`.
    Fireworks,
    /// Hugging Face Jobs of one `namespace` (a user or an organisation).
    Huggingface,
    /// Anthropic's Message Batches (it has no fine-tuning API: it watches batches).
    Anthropic,
    /// Google's Gemini API batches (`generativelanguage.googleapis.com`; batches only).
    Gemini,
}

impl SourceKind {
    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Openai => "openai",
            SourceKind::AzureOpenai => "azure_openai",
            SourceKind::Mistral => "mistral",
            SourceKind::Together => "together",
            SourceKind::VertexAi => "vertex_ai",
            SourceKind::Bedrock => "bedrock",
            SourceKind::Fireworks => "fireworks",
            SourceKind::Huggingface => "huggingface",
            SourceKind::Anthropic => "anthropic",
            SourceKind::Gemini => "gemini",
        }
    }

    /// What the kind can watch: whether it has a fine-tuning API and a batch API.
    pub fn can_watch(self, w: Watch) -> bool {
        match w {
            Watch::FineTuning => !matches!(self, SourceKind::Anthropic | SourceKind::Gemini),
            Watch::Batches => self != SourceKind::Huggingface,
            Watch::Models => matches!(self, SourceKind::Openai | SourceKind::AzureOpenai),
        }
    }

    /// What a source of this kind watches when `watch` is not written: its fine-tuning jobs,
    /// or its batches when it has nothing else.
    pub fn default_watch(self) -> Vec<Watch> {
        if self.can_watch(Watch::FineTuning) {
            vec![Watch::FineTuning]
        } else {
            vec![Watch::Batches]
        }
    }

    /// The `api_base` when none is configured, from the source's `location` or `region` where
    /// the address has one (Azure has none: every resource has its own).
    pub fn default_api_base(self, s: &RawSource) -> Option<String> {
        match self {
            SourceKind::Openai => Some("https://api.openai.com/v1".into()),
            SourceKind::AzureOpenai => None,
            SourceKind::Mistral => Some("https://api.mistral.ai/v1".into()),
            SourceKind::Together => Some("https://api.together.ai/v1".into()),
            SourceKind::VertexAi => s
                .location
                .as_ref()
                .map(|l| format!("https://{l}-aiplatform.googleapis.com/v1")),
            SourceKind::Bedrock => s
                .region
                .as_ref()
                .map(|r| format!("https://bedrock.{r}.amazonaws.com")),
            SourceKind::Fireworks => Some("https://api.fireworks.ai/v1".into()),
            SourceKind::Huggingface => Some("https://huggingface.co/api".into()),
            SourceKind::Anthropic => Some("https://api.anthropic.com/v1".into()),
            SourceKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta".into()),
        }
    }
}

/// `[[source]]`: one API account whose fine-tuning jobs are watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Unique name, used in events, routes and the database.
    pub name: String,
    /// Which API: `"openai"`, `"azure_openai"`, `"mistral"`, `"together"`, `"vertex_ai"`,
    /// `"bedrock"`, `"fireworks"` or `"huggingface"`.
    pub kind: SourceKind,
    /// Base URL of the API, up to and including the version segment (`/openai` for Azure).
    /// Defaults per kind; required for `azure_openai`.
    #[serde(default)]
    pub api_base: Option<SafeUrl>,
    /// `azure_openai` only: the API version sent as `api-version` (default `"2024-10-21"`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (relative to the config file).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// systemd credential holding the API key (`$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default)]
    pub api_key_credential: Option<String>,
    /// The `whsec_…` secret OpenAI shows for a webhook endpoint: set, and with `daemon.listen`,
    /// tunewatch takes OpenAI's webhooks at `POST /webhooks/NAME` (one of `_env`, `_file`,
    /// `_credential`).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub webhook_secret_credential: Option<String>,
    /// `openai` only: sent as `OpenAI-Organization` when set.
    #[serde(default)]
    pub organization: Option<String>,
    /// `openai`: sent as `OpenAI-Project` when set. `vertex_ai` (required): the Google Cloud
    /// project whose tuning jobs are watched.
    #[serde(default)]
    pub project: Option<String>,
    /// `vertex_ai` (required): the region of the jobs, e.g. `"us-central1"`.
    #[serde(default)]
    pub location: Option<String>,
    /// `bedrock` (required): the AWS region of the jobs, e.g. `"us-east-1"`.
    #[serde(default)]
    pub region: Option<String>,
    /// `fireworks` (required): the Fireworks account id.
    #[serde(default)]
    pub account: Option<String>,
    /// `huggingface` (required): the user or organisation whose Jobs are watched.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `huggingface`: only Jobs with all these labels (`{ purpose = "training" }`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `vertex_ai`: the JSON key of a service account (one of `_env`, `_file`, `_credential`);
    /// or `google_auth = "metadata"`.
    #[serde(default)]
    pub google_credentials_env: Option<String>,
    #[serde(default)]
    pub google_credentials_file: Option<PathBuf>,
    #[serde(default)]
    pub google_credentials_credential: Option<String>,
    /// `vertex_ai`: `"service_account"` (a key, the default) or `"metadata"` (the metadata
    /// server of the Google Cloud machine tunewatch runs on).
    #[serde(default)]
    pub google_auth: Option<GoogleAuthMode>,
    /// `bedrock`: an AWS access key for SigV4 instead of a Bedrock API key (each one of
    /// `_env`, `_file`, `_credential`; the session token only for temporary credentials).
    #[serde(default)]
    pub aws_access_key_id_env: Option<String>,
    #[serde(default)]
    pub aws_access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub aws_access_key_id_credential: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key_env: Option<String>,
    #[serde(default)]
    pub aws_secret_access_key_file: Option<PathBuf>,
    #[serde(default)]
    pub aws_secret_access_key_credential: Option<String>,
    #[serde(default)]
    pub aws_session_token_env: Option<String>,
    #[serde(default)]
    pub aws_session_token_file: Option<PathBuf>,
    #[serde(default)]
    pub aws_session_token_credential: Option<String>,
    /// Time between two polls.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// Time between two polls when every job of the source is finished (no job to follow).
    /// Default: 5 minutes, or `poll_interval` when that is longer (a source polled hourly
    /// because webhooks bring its news is not polled more often when idle).
    #[serde(default)]
    pub idle_poll_interval: Option<Dur>,
    /// How often a poll pages through every job instead of stopping at the first settled page
    /// (the API does not promise its ordering). The first poll after start is always full.
    #[serde(default = "default_full_scan_every")]
    pub full_scan_every: Dur,
    /// A non-terminal job whose status has not changed for this long is reported as stalled.
    #[serde(default = "default_stall_after")]
    pub stall_after: Dur,
    /// Jobs asked for per page (`limit`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Time allowed to open a connection to the API.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time allowed for one whole request, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// Failed polls in a row that raise `tunewatch.source.failing` (once, until a success).
    #[serde(default = "default_failing_after")]
    pub failing_after: u32,
    /// Retries of one request after 408, 409, 429, 5xx, timeouts and connection errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Pages one poll reads at most (1..=100000); a server whose `has_more` never ends fails
    /// the poll with a clear error instead of being paged forever.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// What is watched: `"fine_tuning"` (jobs), `"batches"`, or both, as the kind has them
    /// (Hugging Face has no batches; Anthropic and Gemini have only batches). Default
    /// `["fine_tuning"]`, or `["batches"]` for `anthropic` and `gemini`.
    pub watch: Option<Vec<Watch>>,
    /// With `watch` `"models"`: how often the model list is read (1m..=7d).
    #[serde(default = "default_models_interval")]
    pub models_interval: Dur,
    /// With `watch` `"models"`: the lead times before a fine-tuned model retires at which
    /// `model.retiring` is raised, once each (each 1h..=365d; `[]` for none).
    #[serde(default = "default_retire_warn")]
    pub retire_warn: Vec<Dur>,
    /// A completed batch whose failed requests are more than this share of all (0..=1) also
    /// raises `batch.partially_failed`.
    #[serde(default = "default_batch_failed_ratio")]
    pub batch_failed_ratio: f64,
    /// Training insight: read running jobs' metric events (and finished jobs' checkpoints) for
    /// progress, ETA, losses, the best checkpoint, cost and the loss chart in every job alert.
    #[serde(default = "default_true")]
    pub insight: bool,
    /// How often a running job's new events are read, at most (1s..=1h). Reads happen at poll
    /// ticks, so a `metrics_interval` shorter than `poll_interval` reads once per poll.
    #[serde(default = "default_metrics_interval")]
    pub metrics_interval: Dur,
    /// Also read checkpoints while a job runs (every `metrics_interval`), not only when it ends.
    #[serde(default)]
    pub checkpoints: bool,
    /// Percentages (1..=99) at which `fine_tuning.job.progress` is raised, once each; `[]` for none.
    #[serde(default = "default_progress_marks")]
    pub progress_marks: Vec<u32>,
    /// Rise of the smoothed validation loss above its minimum, as a fraction (0.10 = 10 %), that
    /// counts toward `fine_tuning.job.overfitting`.
    #[serde(default = "default_overfit_tolerance")]
    pub overfit_tolerance: f64,
    /// Consecutive metric points above the tolerance (while training loss does not rise) that
    /// raise `fine_tuning.job.overfitting`.
    #[serde(default = "default_overfit_patience")]
    pub overfit_patience: u32,
    /// `[source.evaluate]`: evaluate each new model against a baseline when its job succeeds.
    #[serde(default)]
    pub evaluate: Option<super::evaluate::RawEvaluate>,
}

fn default_models_interval() -> Dur {
    Dur::secs(6 * 3600)
}
fn default_retire_warn() -> Vec<Dur> {
    vec![
        Dur::secs(30 * 86_400),
        Dur::secs(7 * 86_400),
        Dur::secs(86_400),
    ]
}
fn default_batch_failed_ratio() -> f64 {
    0.01
}

/// Where a `vertex_ai` source's Google credential comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoogleAuthMode {
    ServiceAccount,
    Metadata,
}

/// What a source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    /// Fine-tuning jobs.
    FineTuning,
    /// Batches: every kind with a batch API.
    Batches,
    /// The fine-tuned models and their retirement dates (`/models`): OpenAI and Azure OpenAI.
    Models,
}

fn default_true() -> bool {
    true
}
pub(super) fn default_metrics_interval() -> Dur {
    Dur::secs(120)
}
pub(super) fn default_progress_marks() -> Vec<u32> {
    vec![50]
}
pub(super) fn default_overfit_tolerance() -> f64 {
    0.10
}
pub(super) fn default_overfit_patience() -> u32 {
    3
}

fn default_max_pages() -> u32 {
    1000
}

fn default_poll_interval() -> Dur {
    Dur::secs(60)
}
/// `idle_poll_interval` when not set: 5 minutes, or `poll_interval` when longer.
pub(super) fn default_idle_poll_interval(poll: Dur) -> Dur {
    poll.max(Dur::secs(300))
}
fn default_full_scan_every() -> Dur {
    Dur::secs(3600)
}
fn default_stall_after() -> Dur {
    Dur::secs(6 * 3600)
}
fn default_page_size() -> u32 {
    100
}
fn default_connect_timeout() -> Dur {
    Dur::secs(10)
}
fn default_request_timeout() -> Dur {
    Dur::secs(30)
}
fn default_failing_after() -> u32 {
    3
}
fn default_max_retries() -> u32 {
    2
}

impl RawSource {
    /// Where the API key comes from; validation guarantees exactly one is set.
    pub fn webhook_secret(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.webhook_secret_env,
            &self.webhook_secret_file,
            &self.webhook_secret_credential,
        )
    }

    pub fn api_key(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.api_key_env,
            &self.api_key_file,
            &self.api_key_credential,
        )
    }

    pub fn google_credentials(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.google_credentials_env,
            &self.google_credentials_file,
            &self.google_credentials_credential,
        )
    }

    /// The AWS access key id, secret key and session token, each where set.
    pub fn aws(&self) -> [Option<SecretRef>; 3] {
        [
            SecretRef::pick(
                &self.aws_access_key_id_env,
                &self.aws_access_key_id_file,
                &self.aws_access_key_id_credential,
            ),
            SecretRef::pick(
                &self.aws_secret_access_key_env,
                &self.aws_secret_access_key_file,
                &self.aws_secret_access_key_credential,
            ),
            SecretRef::pick(
                &self.aws_session_token_env,
                &self.aws_session_token_file,
                &self.aws_session_token_credential,
            ),
        ]
    }
}
