//! The TOML configuration: the file as written (`raw`), validation into a typed model
//! (`validate`), secrets (`secret`) and durations (`duration`).
//!
//! Owns turning a file into a [`Config`] that the rest of the program can trust, and turning every
//! mistake into one sentence naming the file, the key and the line. Secrets are *named* here
//! (`*_env`, `*_file`, `*_credential`) and read by [`SecretRef::read`] — the same code for `check`
//! and `run`; their values never appear in `Debug` output. This module does no network or
//! database I/O.

mod alerting;
mod channels;
mod checks;
mod credentials;
mod duration;
mod evaluate;
mod event_names;
mod locate;
mod raw;
mod raw_notifier;
mod raw_source;
mod secret;
mod state_db;
mod validate;
mod validate_kind;
mod validate_notifier;
mod validate_source;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use alerting::{Digest, QuietHours};
pub use channels::{HttpConfig, PagerDutyConfig, TelegramConfig};
pub use credentials::{AwsKey, GOOGLE_TOKEN_URI, GoogleAuth, GoogleKey, SourceAuth, SourceSecrets};
pub use duration::{DURATION_RANGES, Dur};
pub use evaluate::{Baseline, EvaluateConfig, InferencePrices, TokenPrice};
pub use raw::event_matches;
pub use raw::{DaemonConfig, LogFormat, RouteConfig, SmtpTls, SourceKind, Watch, WebhookFormat};
pub use raw_source::GoogleAuthMode;
pub use secret::{SafeUrl, Secret, SecretKind, SecretRef};
pub use state_db::{PgTarget, SSL_MODES, StateDb, instance_name, parse_pg_url};
pub use validate::is_loopback;

/// Where the config is looked for when neither `--config` nor `$TUNEWATCH_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tunewatch/config.toml";
/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "TUNEWATCH_CONFIG";

/// Everything that can be wrong with a configuration or the secrets it names.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Whole { path: PathBuf, message: String },
    #[error("{owner}: {message}")]
    Secret { owner: String, message: String },
}

/// A parsed, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths inside it were resolved against its folder.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    /// `daemon.state_db`, validated: a SQLite file or a PostgreSQL database.
    pub state_db: StateDb,
    pub sources: Vec<SourceConfig>,
    pub notifiers: Vec<NotifierConfig>,
    pub routes: Vec<RouteConfig>,
    /// USD per 1M trained tokens by base-model prefix (`[prices]`).
    pub prices: Prices,
    /// USD per 1M inference tokens by model prefix (`[inference_prices]`), for evaluations.
    pub inference_prices: InferencePrices,
    /// `[[quiet_hours]]`, by name.
    pub quiet_hours: Vec<QuietHours>,
    /// `[[digest]]`.
    pub digests: Vec<Digest>,
}

/// `[prices]`: USD per 1M trained tokens by base-model prefix.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(pub std::collections::BTreeMap<String, f64>);

impl Prices {
    /// The price for `model`: the longest configured prefix it starts with. `None` when no
    /// prefix matches — never a guess.
    pub fn per_million(&self, model: &str) -> Option<f64> {
        self.0
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| *price)
    }
}

/// What a source's training insight reads and raises (`insight`, `metrics_interval`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct InsightConfig {
    pub enabled: bool,
    pub metrics_interval: Dur,
    pub checkpoints: bool,
    /// Sorted, without duplicates.
    pub progress_marks: Vec<u32>,
    pub overfit_tolerance: f64,
    pub overfit_patience: u32,
}

impl Default for InsightConfig {
    /// A source's defaults (insight on).
    fn default() -> InsightConfig {
        use raw_source::{
            default_metrics_interval, default_overfit_patience, default_overfit_tolerance,
            default_progress_marks,
        };
        InsightConfig {
            enabled: true,
            metrics_interval: default_metrics_interval(),
            checkpoints: false,
            progress_marks: default_progress_marks(),
            overfit_tolerance: default_overfit_tolerance(),
            overfit_patience: default_overfit_patience(),
        }
    }
}

/// One watched API account, validated: every key present, in range, its key's source known.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    pub api_base: SafeUrl,
    /// `azure_openai`: the `api-version` every request carries. `None` for other kinds.
    pub api_version: Option<String>,
    /// How the source proves who it is, and where its secrets are read from.
    pub auth: SourceAuth,
    /// Where its jobs are, for kinds whose addresses name it (a project, a region, an account).
    pub scope: Scope,
    /// Where the secret of OpenAI's webhooks for this source is read from; `None`: no intake.
    pub webhook_secret: Option<SecretRef>,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub poll_interval: Dur,
    pub idle_poll_interval: Dur,
    pub full_scan_every: Dur,
    pub stall_after: Dur,
    pub page_size: u32,
    pub connect_timeout: Dur,
    pub request_timeout: Dur,
    pub failing_after: u32,
    pub max_retries: u32,
    pub max_pages: u32,
    pub insight: InsightConfig,
    /// What is watched; never empty, without duplicates.
    pub watch: Vec<Watch>,
    pub batch_failed_ratio: f64,
    /// With `watch` `"models"`: how often the model list is read.
    pub models_interval: Dur,
    /// Lead times (seconds, longest first, distinct) before a model retires that raise
    /// `model.retiring`.
    pub retire_warn: Vec<u64>,
    /// `[source.evaluate]`: each new model evaluated when its job succeeds; `None` when off.
    pub evaluate: Option<EvaluateConfig>,
}

/// Where a source's jobs are, beyond `api_base`: the parts of its addresses its kind needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The key's own account (OpenAI, Azure OpenAI, Mistral, Together).
    Account,
    Vertex {
        project: String,
        location: String,
    },
    Bedrock {
        region: String,
    },
    Fireworks {
        account: String,
    },
    Huggingface {
        namespace: String,
        labels: std::collections::BTreeMap<String, String>,
    },
}

/// Retry timing of one notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

/// One destination for alerts, validated.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    pub name: String,
    pub retry: RetryPolicy,
    /// Time allowed for one attempt; the kind's own default when absent.
    pub timeout: Option<Duration>,
    /// Failed attempts in a row that raise `tunewatch.notifier.failing` (a dead one does at once).
    pub failing_after: u32,
    pub kind: NotifierKind,
}

/// How a notifier delivers, with exactly the settings of that way.
#[derive(Debug, Clone)]
pub enum NotifierKind {
    Webhook(WebhookConfig),
    Email(EmailConfig),
    PagerDuty(PagerDutyConfig),
    Telegram(TelegramConfig),
    Http(HttpConfig),
}

/// A webhook destination.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: UrlSource,
    /// Signs every request when set.
    pub secret: Option<SecretRef>,
    pub format: WebhookFormat,
}

/// Where a webhook URL comes from: the file itself, or a secret (a chat webhook URL is one).
#[derive(Debug, Clone)]
pub enum UrlSource {
    Inline(SafeUrl),
    Secret(SecretRef),
}

/// An SMTP destination.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    /// The given port, else 587 for STARTTLS, 465 for TLS, 25 for none.
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub ca_file: Option<PathBuf>,
    pub login: Option<Login>,
    pub from: String,
    pub to: Vec<String>,
}

/// SMTP credentials: a user name and where its password is read from.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: SecretRef,
}

impl NotifierConfig {
    /// The secrets this notifier needs, each with what it is.
    pub fn secrets(&self) -> Vec<(SecretRef, SecretKind)> {
        match &self.kind {
            NotifierKind::Webhook(w) => {
                let url = match &w.url {
                    UrlSource::Secret(r) => Some((r.clone(), SecretKind::Url)),
                    UrlSource::Inline(_) => None,
                };
                let secret = w.secret.clone().map(|r| (r, SecretKind::WebhookSecret));
                url.into_iter().chain(secret).collect()
            }
            NotifierKind::Email(e) => e
                .login
                .iter()
                .map(|l| (l.password.clone(), SecretKind::Password))
                .collect(),
            NotifierKind::PagerDuty(p) => vec![(p.routing_key.clone(), SecretKind::ApiKey)],
            NotifierKind::Telegram(t) => vec![(t.bot_token.clone(), SecretKind::ApiKey)],
            NotifierKind::Http(h) => match &h.url {
                UrlSource::Secret(r) => vec![(r.clone(), SecretKind::Url)],
                UrlSource::Inline(_) => Vec::new(),
            },
        }
    }
}

impl WebhookConfig {
    /// Whether the body is a chat payload (whose URL is a credential).
    pub fn is_chat(&self) -> bool {
        matches!(
            self.format,
            WebhookFormat::Slack | WebhookFormat::Discord | WebhookFormat::Teams
        )
    }

    /// The URL, read from its secret when it has one.
    ///
    /// # Errors
    /// A sentence naming where the URL was to come from; never the URL itself.
    pub fn url(&self) -> Result<SafeUrl, String> {
        match &self.url {
            UrlSource::Inline(u) => Ok(u.clone()),
            UrlSource::Secret(r) => secret::parse_url_secret(&r.read(SecretKind::Url)?, r),
        }
    }

    /// The URL as it may be shown: credentials, query and, for chat formats, the token path
    /// hidden; "(URL from …)" when it comes from a secret.
    pub fn shown_url(&self) -> String {
        match &self.url {
            UrlSource::Inline(u) => crate::inert::redact_url(u, self.is_chat()),
            UrlSource::Secret(r) => format!("(URL from {r})"),
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`. Secrets are not read here.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the line and the key at fault.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the line and the key at fault.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, path)
    }

    /// The PostgreSQL password, read (`None` for SQLite, or PostgreSQL without one).
    ///
    /// # Errors
    /// [`ConfigError::Secret`] when it is named but cannot be read.
    pub fn state_db_password(&self) -> Result<Option<Secret>, ConfigError> {
        match &self.state_db {
            StateDb::Postgres(PgTarget {
                password: Some(r), ..
            }) => r
                .read(SecretKind::Password)
                .map(Some)
                .map_err(|message| ConfigError::Secret {
                    owner: "daemon state_db password".into(),
                    message,
                }),
            _ => Ok(None),
        }
    }

    /// Reads every secret the config names, by the same code as `run`, and reports each one
    /// that is missing or unusable.
    pub fn check_secrets(&self) -> Vec<ConfigError> {
        self.check_secrets_in(None)
    }

    /// [`Config::check_secrets`] with systemd credentials read from `credentials`.
    pub fn check_secrets_in(&self, credentials: Option<&Path>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for s in &self.sources {
            if let Err(message) = s.auth.read_in(credentials) {
                errors.push(ConfigError::Secret {
                    owner: format!("source {:?} {}", s.name, s.auth.label()),
                    message,
                });
            }
            if let Some(Err(message)) = s
                .webhook_secret
                .as_ref()
                .map(|w| w.read_in(SecretKind::WebhookSecret, credentials))
            {
                errors.push(ConfigError::Secret {
                    owner: format!("source {:?} webhook secret", s.name),
                    message,
                });
            }
        }
        if let StateDb::Postgres(PgTarget {
            password: Some(r), ..
        }) = &self.state_db
            && let Err(message) = r.read_in(SecretKind::Password, credentials)
        {
            errors.push(ConfigError::Secret {
                owner: "daemon state_db password".into(),
                message,
            });
        }
        if let Some(Err(message)) = self
            .daemon
            .ui_token()
            .map(|t| t.read_in(SecretKind::ApiKey, credentials))
        {
            errors.push(ConfigError::Secret {
                owner: "daemon ui_token".into(),
                message,
            });
        }
        for n in &self.notifiers {
            for (r, kind) in n.secrets() {
                if let Err(message) = r.read_in(kind, credentials) {
                    errors.push(ConfigError::Secret {
                        owner: format!("notifier {:?}", n.name),
                        message,
                    });
                }
            }
        }
        errors
    }

    /// Secret files readable by other users, and a world-readable config that names secret
    /// files: not errors, but worth a warning from `check`.
    pub fn permission_warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode());
        let mut files: Vec<(&str, PathBuf)> = Vec::new();
        for s in &self.sources {
            let secrets = s.auth.secrets().into_iter().map(|(r, _, _)| r);
            for r in secrets.chain(&s.webhook_secret) {
                if let SecretRef::File(f) = r {
                    files.push((&s.name, f.clone()));
                }
            }
        }
        for n in &self.notifiers {
            for (r, _) in n.secrets() {
                if let SecretRef::File(f) = r {
                    files.push((&n.name, f));
                }
            }
        }
        let mut warnings = Vec::new();
        for s in self.sources.iter().filter(|s| s.webhook_secret.is_some()) {
            if self.daemon.listen.is_none() {
                warnings.push(format!(
                    "source {:?} has a webhook secret but daemon.listen is not set: no webhook \
                     can arrive; set daemon.listen (and expose /webhooks/{} through a reverse proxy)",
                    s.name, s.name
                ));
            }
        }
        if !files.is_empty() && mode(&self.path).is_some_and(|m| m & 0o004 != 0) {
            warnings.push(format!(
                "{} names secret files and is readable by every user; consider chmod o-r, \
                 or systemd credentials (*_credential) instead of *_file",
                self.path.display()
            ));
        }
        for (owner, f) in files {
            if let Some(m) = mode(&f).filter(|m| m & 0o044 != 0) {
                warnings.push(format!(
                    "secret file {} (used by {owner:?}) is readable by {} (mode {:o}); chmod 600 it",
                    f.display(),
                    if m & 0o004 != 0 { "every user" } else { "its group" },
                    m & 0o777
                ));
            }
        }
        warnings
    }

    /// The names of the notifiers that should receive `event_type` from `source`, each once.
    pub fn notifiers_for(&self, event_type: &str, source: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(event_type, source)) {
            for n in &route.notifiers {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn notifier(&self, name: &str) -> Option<&NotifierConfig> {
        self.notifiers.iter().find(|n| n.name == name)
    }
}

/// Picks the config path: `--config`, else `$TUNEWATCH_CONFIG`, else the default.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}
