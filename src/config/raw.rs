//! The config file as written: serde structs per TOML section, with a `///` doc on every key
//! (they double as the reference for `config/tunewatch.example.toml`) and the defaults in one
//! place. Nothing outside `config` uses these: [`super::validate`] turns them into the typed,
//! validated model the rest of the program trusts.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Dur, SafeUrl, SecretRef};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub(super) daemon: DaemonConfig,
    #[serde(default, rename = "source")]
    pub(super) sources: Vec<RawSource>,
    #[serde(default, rename = "notifier")]
    pub(super) notifiers: Vec<RawNotifier>,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RouteConfig>,
    /// `[prices]`: USD per 1M trained tokens, by base-model prefix (the longest matching prefix
    /// wins), e.g. `"gpt-4o-mini" = 3.00`. A model no prefix matches gets no cost line.
    #[serde(default)]
    pub(super) prices: std::collections::BTreeMap<String, f64>,
}

/// `[daemon]`: settings of the process itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The database holding snapshots, events and the outbox: a SQLite file (relative to the
    /// config file), or `postgres://USER@HOST[:PORT]/DB[?sslmode=…]` for a PostgreSQL store that
    /// several daemons can share. The password never goes in the URL: see `state_db_password_*`.
    #[serde(default = "default_state_db")]
    pub state_db: PathBuf,
    /// PostgreSQL only: where the database password is read from (one of the three).
    #[serde(default)]
    pub state_db_password_env: Option<String>,
    #[serde(default)]
    pub state_db_password_file: Option<PathBuf>,
    #[serde(default)]
    pub state_db_password_credential: Option<String>,
    /// PostgreSQL only: how long the leader's lease lasts without renewal (renewed every third
    /// of it); a dead leader is replaced within about this long. 3s to 5m.
    #[serde(default = "default_leader_lease")]
    pub leader_lease: Dur,
    /// PostgreSQL only: how long a delivery claimed by one daemon stays its own; a row held by a
    /// daemon that died is delivered by another after this. 5s to 1h.
    #[serde(default = "default_claim_lease")]
    pub claim_lease: Dur,
    /// PostgreSQL only: this daemon's name in `status`, `/metrics` and the lease. Default
    /// `HOSTNAME-PID`.
    #[serde(default)]
    pub instance: Option<String>,
    /// Address for `/healthz` and `/metrics`, e.g. `127.0.0.1:9187`. Off when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Log filter when `$RUST_LOG` is not set, e.g. `"info"` or `"info,tunewatch=debug"`.
    #[serde(default)]
    pub log_level: Option<String>,
    /// `"text"` (one line per event) or `"json"` (one JSON object per line, for log shippers).
    #[serde(default)]
    pub log_format: LogFormat,
    /// The token the status page and `/api` want (`Authorization: Bearer TOKEN`, or `?token=`
    /// once, which sets a cookie). Required when `listen` is not a loopback address.
    #[serde(default)]
    pub ui_token_env: Option<String>,
    #[serde(default)]
    pub ui_token_file: Option<PathBuf>,
    #[serde(default)]
    pub ui_token_credential: Option<String>,
    /// Host names the status page answers to besides loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`), when it has no token: e.g. the name a reverse proxy forwards, `"tw.internal"`.
    /// A page without a token refuses any other `Host`, so a web page elsewhere cannot read it
    /// through DNS rebinding.
    #[serde(default)]
    pub ui_hosts: Vec<String>,
}

impl DaemonConfig {
    /// Where the PostgreSQL password is read from, when set.
    pub fn state_db_password(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.state_db_password_env,
            &self.state_db_password_file,
            &self.state_db_password_credential,
        )
    }

    /// Where the status page's token is read from, when set.
    pub fn ui_token(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.ui_token_env,
            &self.ui_token_file,
            &self.ui_token_credential,
        )
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_db: default_state_db(),
            state_db_password_env: None,
            state_db_password_file: None,
            state_db_password_credential: None,
            leader_lease: default_leader_lease(),
            claim_lease: default_claim_lease(),
            instance: None,
            listen: None,
            log_level: None,
            log_format: LogFormat::Text,
            ui_token_env: None,
            ui_token_file: None,
            ui_token_credential: None,
            ui_hosts: Vec::new(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_leader_lease() -> Dur {
    Dur::secs(15)
}

fn default_claim_lease() -> Dur {
    Dur::secs(120)
}

fn default_state_db() -> PathBuf {
    PathBuf::from("/var/lib/tunewatch/tunewatch.db")
}

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
}

impl SourceKind {
    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Openai => "openai",
            SourceKind::AzureOpenai => "azure_openai",
            SourceKind::Mistral => "mistral",
            SourceKind::Together => "together",
        }
    }

    /// The `api_base` when none is configured (Azure has none: every resource has its own).
    pub fn default_api_base(self) -> Option<&'static str> {
        match self {
            SourceKind::Openai => Some("https://api.openai.com/v1"),
            SourceKind::AzureOpenai => None,
            SourceKind::Mistral => Some("https://api.mistral.ai/v1"),
            SourceKind::Together => Some("https://api.together.ai/v1"),
        }
    }
}

/// `[[source]]`: one API account whose fine-tuning jobs are watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Unique name, used in events, routes and the database.
    pub name: String,
    /// Which API: `"openai"`, `"azure_openai"`, `"mistral"` or `"together"`.
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
    /// `openai` only: sent as `OpenAI-Project` when set.
    #[serde(default)]
    pub project: Option<String>,
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
    /// What is watched: `"fine_tuning"` (jobs) and, for `openai` and `azure_openai`,
    /// `"batches"`. Default `["fine_tuning"]`.
    #[serde(default = "default_watch")]
    pub watch: Vec<Watch>,
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
}

fn default_watch() -> Vec<Watch> {
    vec![Watch::FineTuning]
}
fn default_batch_failed_ratio() -> f64 {
    0.01
}

/// What a source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Watch {
    /// Fine-tuning jobs.
    FineTuning,
    /// Batches (`/batches`): OpenAI and Azure OpenAI.
    Batches,
}

fn default_true() -> bool {
    true
}
fn default_metrics_interval() -> Dur {
    Dur::secs(120)
}
fn default_progress_marks() -> Vec<u32> {
    vec![50]
}
fn default_overfit_tolerance() -> f64 {
    0.10
}
fn default_overfit_patience() -> u32 {
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
}

/// How a notifier delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawNotifierKind {
    Webhook,
    Email,
}

/// The body a webhook notifier posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// OpenAI's event envelope, extended (DESIGN.md).
    #[default]
    Json,
    /// A Slack incoming-webhook payload.
    Slack,
    /// A Discord webhook payload.
    Discord,
}

/// The transport security of an e-mail notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// `[[notifier]]`: one destination for alerts. Keys that do not apply to its `kind` are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifier {
    /// Unique name, used by routes and in the outbox.
    pub name: String,
    /// `"webhook"` or `"email"`.
    pub kind: RawNotifierKind,

    /// webhook: where to POST. A Slack or Discord webhook URL is itself a credential: prefer
    /// `url_env`, `url_file` or `url_credential` for those. Shown redacted everywhere.
    #[serde(default)]
    pub url: Option<SafeUrl>,
    /// webhook: environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// webhook: file holding the URL (its first line).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// webhook: systemd credential holding the URL.
    #[serde(default)]
    pub url_credential: Option<String>,
    /// webhook: environment variable holding the `whsec_…` signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// webhook: file holding the signing secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// webhook: systemd credential holding the signing secret.
    #[serde(default)]
    pub secret_credential: Option<String>,
    /// webhook: `"json"`, `"slack"` or `"discord"`.
    #[serde(default)]
    pub format: Option<WebhookFormat>,
    /// Time allowed for one delivery attempt (webhook: 30s, email: 60s by default).
    #[serde(default)]
    pub timeout: Option<Dur>,

    /// email: the SMTP server.
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// email: its port (587 for STARTTLS, 465 for TLS, 25 for none).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// email: `"starttls"`, `"tls"` or `"none"`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// email: permits `tls = "none"` towards a host that is not loopback.
    #[serde(default)]
    pub allow_plaintext: Option<bool>,
    /// email: a PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// email: SMTP user name.
    #[serde(default)]
    pub username: Option<String>,
    /// email: environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// email: file holding the SMTP password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// email: systemd credential holding the SMTP password.
    #[serde(default)]
    pub password_credential: Option<String>,
    /// email: the sender, e.g. `tunewatch <tunewatch@example.com>`.
    #[serde(default)]
    pub from: Option<String>,
    /// email: the recipients.
    #[serde(default)]
    pub to: Option<Vec<String>>,

    /// First delay after a failed delivery; doubles each time.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: Dur,
    /// The longest delay between two attempts.
    #[serde(default = "default_retry_max")]
    pub retry_max: Dur,
    /// A delivery still failing this long after its event is marked dead.
    #[serde(default = "default_give_up_after")]
    pub give_up_after: Dur,
}

fn default_retry_initial() -> Dur {
    Dur::secs(30)
}
fn default_retry_max() -> Dur {
    Dur::secs(3600)
}
fn default_give_up_after() -> Dur {
    Dur::secs(24 * 3600)
}

impl RawNotifier {
    /// Where the webhook signing secret comes from, if any.
    pub fn secret(&self) -> Option<SecretRef> {
        SecretRef::pick(&self.secret_env, &self.secret_file, &self.secret_credential)
    }

    /// Where the SMTP password comes from, if any.
    pub fn password(&self) -> Option<SecretRef> {
        SecretRef::pick(
            &self.password_env,
            &self.password_file,
            &self.password_credential,
        )
    }

    /// Where the webhook URL comes from when it is kept secret (`url_env|_file|_credential`).
    pub fn url_secret(&self) -> Option<SecretRef> {
        SecretRef::pick(&self.url_env, &self.url_file, &self.url_credential)
    }

    /// The URL as it may be shown: credentials, query and, for chat formats, the token path
    /// hidden; "(from …)" when it comes from a secret.
    pub fn shown_url(&self) -> String {
        let chat = matches!(
            self.format,
            Some(WebhookFormat::Slack) | Some(WebhookFormat::Discord)
        );
        match (&self.url, self.url_secret()) {
            (Some(u), _) => crate::inert::redact_url(u, chat),
            (None, Some(r)) => format!("(URL from {r})"),
            (None, None) => "(no url)".into(),
        }
    }
}

/// `[[route]]`: which events (from which sources) go to which notifiers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Event types; a trailing `*` matches a prefix (`fine_tuning.job.*`).
    pub events: Vec<String>,
    /// Source names; all sources when absent.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Notifier names; each match becomes one outbox row per notifier.
    pub notifiers: Vec<String>,
}

impl RouteConfig {
    /// Whether an event of `event_type` from `source` takes this route.
    pub fn matches(&self, event_type: &str, source: &str) -> bool {
        let source_ok = self
            .sources
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == source));
        source_ok && self.events.iter().any(|p| event_matches(p, event_type))
    }
}

/// Matches an event type against a route pattern: exact, or a prefix ending in `*`.
pub fn event_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}
