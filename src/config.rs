//! The TOML configuration: typed sections, defaults in one place, loading and validation.
//!
//! Owns turning a file into a [`Config`] that the rest of the program can trust, and turning every
//! mistake into one sentence naming the file, the key and the line. Secrets are *named* here
//! (`*_env`, `*_file`, `*_credential`) and read by [`SecretRef::resolve`]; their values never
//! appear in `Debug` output. This module does no network or database I/O.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

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
    pub sources: Vec<SourceConfig>,
    pub notifiers: Vec<NotifierConfig>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default, rename = "source")]
    sources: Vec<SourceConfig>,
    #[serde(default, rename = "notifier")]
    notifiers: Vec<NotifierConfig>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteConfig>,
}

/// `[daemon]`: settings of the process itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// The SQLite database holding snapshots, events and the outbox. Relative to the config file.
    #[serde(default = "default_state_db")]
    pub state_db: PathBuf,
    /// Address for `/healthz` and `/metrics`, e.g. `127.0.0.1:9187`. Off when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Log filter when `$RUST_LOG` is not set, e.g. `"info"` or `"info,tunewatch=debug"`.
    #[serde(default)]
    pub log_level: Option<String>,
    /// `"text"` (one line per event) or `"json"` (one JSON object per line, for log shippers).
    #[serde(default)]
    pub log_format: LogFormat,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_db: default_state_db(),
            listen: None,
            log_level: None,
            log_format: LogFormat::Text,
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

fn default_state_db() -> PathBuf {
    PathBuf::from("/var/lib/tunewatch/tunewatch.db")
}

/// The API a source talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The OpenAI fine-tuning jobs API, or one shaped like it.
    Openai,
}

/// `[[source]]`: one API account whose fine-tuning jobs are watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name, used in events, routes and the database.
    pub name: String,
    /// Which API: `"openai"`.
    pub kind: SourceKind,
    /// Base URL of the API, up to and including the version segment.
    #[serde(default = "default_api_base")]
    pub api_base: SafeUrl,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (relative to the config file).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// systemd credential holding the API key (`$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default)]
    pub api_key_credential: Option<String>,
    /// Sent as `OpenAI-Organization` when set.
    #[serde(default)]
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project` when set.
    #[serde(default)]
    pub project: Option<String>,
    /// Time between two polls.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// Time between two polls when every job of the source is finished (no job to follow).
    #[serde(default = "default_idle_poll_interval")]
    pub idle_poll_interval: Dur,
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
}

fn default_max_pages() -> u32 {
    1000
}

fn default_api_base() -> SafeUrl {
    // invariant: a constant, valid URL.
    SafeUrl(Url::parse("https://api.openai.com/v1").expect("constant URL parses"))
}
fn default_poll_interval() -> Dur {
    Dur::secs(60)
}
fn default_idle_poll_interval() -> Dur {
    Dur::secs(300)
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

impl SourceConfig {
    /// Where the API key comes from; validation guarantees exactly one is set.
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
pub enum NotifierKind {
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
pub struct NotifierConfig {
    /// Unique name, used by routes and in the outbox.
    pub name: String,
    /// `"webhook"` or `"email"`.
    pub kind: NotifierKind,

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

impl NotifierConfig {
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

    /// The secrets this notifier needs, each with what it is.
    pub fn secrets(&self) -> Vec<(SecretRef, SecretKind)> {
        let webhook = self.secret().map(|r| (r, SecretKind::WebhookSecret));
        let url = self.url_secret().map(|r| (r, SecretKind::Url));
        let password = self.password().map(|r| (r, SecretKind::Password));
        webhook.into_iter().chain(url).chain(password).collect()
    }

    /// The webhook URL (from `url` or its secret), read and checked.
    ///
    /// # Errors
    /// A sentence naming where the URL was to come from; never the URL itself.
    pub fn webhook_url(&self) -> Result<SafeUrl, String> {
        match (&self.url, self.url_secret()) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(r)) => parse_url_secret(&r.read(SecretKind::Url)?, &r),
            (None, None) => Err(format!("webhook notifier {:?} has no url", self.name)),
        }
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

impl Config {
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

/// A URL from the config that may carry credentials (`user:pass@`, a chat webhook's token):
/// its `Debug` and `Display` show it redacted ([`crate::inert::redact_url`]); the request code
/// reads the real one through `Deref`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SafeUrl(pub Url);

impl std::ops::Deref for SafeUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::inert::redact_url(&self.0, false))
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
    }
}

fn parse_url_secret(secret: &Secret, from: &SecretRef) -> Result<SafeUrl, String> {
    match Url::parse(secret.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(SafeUrl(u)),
        _ => Err(format!("{from} does not hold an http(s) URL")),
    }
}

/// What a secret is, so that `check` and `run` validate it by the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An API key: goes into a header, so no white space or control characters.
    ApiKey,
    /// A Standard Webhooks secret: `whsec_` and base64.
    WebhookSecret,
    /// A URL that is a credential.
    Url,
    /// An SMTP password: no line breaks.
    Password,
}

/// A duration written as `"90s"`, `"5m"`, `"6h"` or `"1h 30m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}; write it like \"90s\", \"5m\" or \"6h\""
                ))
            })
    }
}

/// Where a secret is read from. Holds the *name* of the secret, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file; its content, trailing newline removed.
    File(PathBuf),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
}

impl SecretRef {
    fn pick(
        env: &Option<String>,
        file: &Option<PathBuf>,
        cred: &Option<String>,
    ) -> Option<SecretRef> {
        if let Some(e) = env {
            return Some(SecretRef::Env(e.clone()));
        }
        if let Some(f) = file {
            return Some(SecretRef::File(f.clone()));
        }
        cred.as_ref().map(|c| SecretRef::Credential(c.clone()))
    }

    /// Reads the secret.
    ///
    /// # Errors
    /// A sentence naming the variable, file or credential that is missing, unreadable or empty.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable ${name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
            SecretRef::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {name:?} needs $CREDENTIALS_DIRECTORY, which is not set \
                         (use LoadCredential= in the systemd unit)"
                    )
                })?;
                let path = Path::new(&dir).join(name);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read credential {}: {e}", path.display()))?
            }
        };
        let value = match self {
            // A file (or credential) holds the secret on its first line; anything after it
            // (a comment, a note) is not part of it.
            SecretRef::File(_) | SecretRef::Credential(_) => {
                value.lines().next().unwrap_or("").trim_end().to_string()
            }
            SecretRef::Env(_) => value.trim_end_matches(['\n', '\r']).to_string(),
        };
        if value.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(Secret(value))
    }

    /// Reads the secret and checks that it can be what `kind` says: the one path by which both
    /// `check` and `run` read secrets, so that a config `check` accepts, `run` accepts.
    ///
    /// # Errors
    /// A sentence naming where the secret came from and what is wrong; never the value.
    pub fn read(&self, kind: SecretKind) -> Result<Secret, String> {
        let secret = self.resolve()?;
        let value = secret.expose();
        let problem = match kind {
            SecretKind::ApiKey => value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
                .then_some("contains white space or control characters, which a key cannot"),
            SecretKind::Password | SecretKind::Url => value
                .chars()
                .any(char::is_control)
                .then_some("contains a line break or control characters"),
            SecretKind::WebhookSecret => {
                use base64::Engine;
                let b64 = value.trim().strip_prefix("whsec_").unwrap_or(value.trim());
                match base64::engine::general_purpose::STANDARD.decode(b64) {
                    Ok(key) if !key.is_empty() => None,
                    _ => Some("is not \"whsec_\" followed by base64"),
                }
            }
        };
        match problem {
            Some(p) => Err(format!("{self} {p}")),
            None => {
                if kind == SecretKind::Url {
                    parse_url_secret(&secret, self)?;
                }
                Ok(secret)
            }
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "environment variable ${n}"),
            SecretRef::File(p) => write!(f, "secret file {}", p.display()),
            SecretRef::Credential(n) => write!(f, "credential {n:?}"),
        }
    }
}

/// A secret value. Its `Debug` and `Display` print `***`, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (a header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Picks the config path: `--config`, else `$TUNEWATCH_CONFIG`, else the default.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
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
        let file: ConfigFile = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
        let mut config = Config {
            path: path.to_path_buf(),
            daemon: file.daemon,
            sources: file.sources,
            notifiers: file.notifiers,
            routes: file.routes,
        };
        let empty_db = config.daemon.state_db.as_os_str().is_empty();
        config.resolve_paths();
        let validator = Validator {
            text,
            path,
            config: &config,
        };
        if empty_db {
            return Err(validator.daemon_at(
                "state_db",
                "`state_db` is empty; name a database file".into(),
            ));
        }
        Validator {
            text,
            path,
            config: &config,
        }
        .validate()?;
        Ok(config)
    }

    /// Makes every relative path in the config relative to the config file's folder.
    fn resolve_paths(&mut self) {
        let base = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.daemon.state_db);
        for s in &mut self.sources {
            s.api_key_file.as_mut().map(fix);
        }
        for n in &mut self.notifiers {
            n.url_file.as_mut().map(fix);
            n.secret_file.as_mut().map(fix);
            n.password_file.as_mut().map(fix);
            n.ca_file.as_mut().map(fix);
        }
    }

    /// Reads every secret the config names and reports each one that is missing.
    ///
    /// # Errors
    /// One [`ConfigError::Secret`] per secret that cannot be read.
    pub fn check_secrets(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for s in &self.sources {
            if let Some(r) = s.api_key()
                && let Err(message) = r.read(SecretKind::ApiKey)
            {
                errors.push(ConfigError::Secret {
                    owner: format!("source {:?} api key", s.name),
                    message,
                });
            }
        }
        for n in &self.notifiers {
            for (r, kind) in n.secrets() {
                if let Err(message) = r.read(kind) {
                    errors.push(ConfigError::Secret {
                        owner: format!("notifier {:?}", n.name),
                        message,
                    });
                }
            }
        }
        errors
    }
}

impl Config {
    /// Secret files readable by other users, and a world-readable config that names secret
    /// files: not errors, but worth a warning from `check`.
    pub fn permission_warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode());
        let mut files: Vec<(&str, &PathBuf)> = Vec::new();
        for s in &self.sources {
            if let Some(f) = &s.api_key_file {
                files.push((&s.name, f));
            }
        }
        for n in &self.notifiers {
            for f in [&n.secret_file, &n.url_file, &n.password_file]
                .into_iter()
                .flatten()
            {
                files.push((&n.name, f));
            }
        }
        let mut warnings = Vec::new();
        if !files.is_empty() && mode(&self.path).is_some_and(|m| m & 0o004 != 0) {
            warnings.push(format!(
                "{} names secret files and is readable by every user; consider chmod o-r, \
                 or systemd credentials (*_credential) instead of *_file",
                self.path.display()
            ));
        }
        for (owner, f) in files {
            if let Some(m) = mode(f).filter(|m| m & 0o044 != 0) {
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
}

/// Turns toml's multi-line report into one sentence with the line and the key.
fn parse_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = line_of(text, span.start);
            let key = key_on_line(text, line);
            let message = match key {
                Some(k) if !message.contains(&format!("`{k}`")) => format!("key `{k}`: {message}"),
                _ => message,
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message,
            }
        }
        None => ConfigError::Whole {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The key assigned on a line (`key = value`), if the line is an assignment.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Every duration key with its documented range (inclusive): `check` and `run` refuse a value
/// outside it, so no absurd duration reaches a timer.
pub const DURATION_RANGES: &[(&str, Duration, Duration)] = &[
    (
        "poll_interval",
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    ),
    (
        "idle_poll_interval",
        Duration::from_millis(100),
        Duration::from_secs(7 * 24 * 3600),
    ),
    (
        "stall_after",
        Duration::from_secs(1),
        Duration::from_secs(365 * 24 * 3600),
    ),
    (
        "full_scan_every",
        Duration::from_millis(100),
        Duration::from_secs(30 * 24 * 3600),
    ),
    (
        "connect_timeout",
        Duration::from_millis(100),
        Duration::from_secs(300),
    ),
    (
        "request_timeout",
        Duration::from_millis(100),
        Duration::from_secs(3600),
    ),
    (
        "timeout",
        Duration::from_millis(100),
        Duration::from_secs(600),
    ),
    (
        "retry_initial",
        Duration::from_millis(100),
        Duration::from_secs(3600),
    ),
    (
        "retry_max",
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    ),
    (
        "give_up_after",
        Duration::from_secs(1),
        Duration::from_secs(30 * 24 * 3600),
    ),
];

/// The event types tunewatch raises, as prefixes a route pattern may name.
pub const EVENT_PREFIXES: &[&str] = &["fine_tuning.job.", "tunewatch.source."];
/// The `tunewatch.source.*` event types.
pub const SOURCE_EVENTS: &[&str] = &["tunewatch.source.failing", "tunewatch.source.recovered"];

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    config: &'a Config,
}

impl Validator<'_> {
    fn validate(&self) -> Result<(), ConfigError> {
        let c = self.config;
        if let Ok(m) = std::fs::metadata(&c.daemon.state_db)
            && !m.is_file()
        {
            return Err(self.daemon_at(
                "state_db",
                format!(
                    "`state_db` {} is not a regular file; name a database file (it is created \
                     if missing)",
                    c.daemon.state_db.display()
                ),
            ));
        }
        if let Some(level) = &c.daemon.log_level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        {
            return Err(ConfigError::Invalid {
                path: self.path.to_path_buf(),
                line: self
                    .text
                    .lines()
                    .position(|l| l.trim_start().starts_with("log_level"))
                    .map_or(1, |n| n + 1),
                message: format!("key `log_level`: {level:?} is not a log filter ({e})"),
            });
        }
        if c.sources.is_empty() {
            return Err(ConfigError::Whole {
                path: self.path.to_path_buf(),
                message: "no [[source]] is configured, so there is nothing to watch".into(),
            });
        }
        for (i, s) in c.sources.iter().enumerate() {
            self.name("source", i, &s.name)?;
            if c.sources[..i].iter().any(|o| o.name == s.name) {
                return Err(self.at(
                    "source",
                    i,
                    "name",
                    format!("duplicate source name {:?}", s.name),
                ));
            }
            self.one_secret(
                "source",
                i,
                &[
                    ("api_key_env", s.api_key_env.is_some()),
                    ("api_key_file", s.api_key_file.is_some()),
                    ("api_key_credential", s.api_key_credential.is_some()),
                ],
                true,
            )?;
            if !matches!(s.api_base.scheme(), "http" | "https") {
                return Err(self.at(
                    "source",
                    i,
                    "api_base",
                    format!("api_base {} is not an http(s) URL", s.api_base),
                ));
            }
            for (key, d) in [
                ("poll_interval", s.poll_interval),
                ("idle_poll_interval", s.idle_poll_interval),
                ("stall_after", s.stall_after),
                ("full_scan_every", s.full_scan_every),
                ("connect_timeout", s.connect_timeout),
                ("request_timeout", s.request_timeout),
            ] {
                self.within("source", i, key, d)?;
            }
            if !(1..=100_000).contains(&s.max_pages) {
                return Err(self.at(
                    "source",
                    i,
                    "max_pages",
                    format!("max_pages {} is outside 1..=100000", s.max_pages),
                ));
            }
            self.env_name("source", i, "api_key_env", s.api_key_env.as_deref())?;
            if s.idle_poll_interval < s.poll_interval {
                return Err(self.at(
                    "source",
                    i,
                    "idle_poll_interval",
                    format!(
                        "idle_poll_interval ({}) is shorter than poll_interval ({})",
                        s.idle_poll_interval, s.poll_interval
                    ),
                ));
            }
            if s.failing_after == 0 {
                return Err(self.at(
                    "source",
                    i,
                    "failing_after",
                    "`failing_after` must be at least 1".into(),
                ));
            }
            if !(1..=100).contains(&s.page_size) {
                return Err(self.at(
                    "source",
                    i,
                    "page_size",
                    format!("page_size {} is outside 1..=100", s.page_size),
                ));
            }
        }
        for (i, n) in c.notifiers.iter().enumerate() {
            self.name("notifier", i, &n.name)?;
            if c.notifiers[..i].iter().any(|o| o.name == n.name) {
                return Err(self.at(
                    "notifier",
                    i,
                    "name",
                    format!("duplicate notifier name {:?}", n.name),
                ));
            }
            self.notifier(i, n)?;
        }
        for (i, r) in c.routes.iter().enumerate() {
            self.route(i, r)?;
        }
        for (i, n) in c.notifiers.iter().enumerate() {
            if !c.routes.iter().any(|r| r.notifiers.contains(&n.name)) {
                return Err(self.at(
                    "notifier",
                    i,
                    "name",
                    format!(
                        "no [[route]] names notifier {:?}, so it would never be used; \
                         add a route or remove it",
                        n.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn notifier(&self, i: usize, n: &NotifierConfig) -> Result<(), ConfigError> {
        let webhook_keys = [
            ("url", n.url.is_some()),
            ("secret_env", n.secret_env.is_some()),
            ("secret_file", n.secret_file.is_some()),
            ("secret_credential", n.secret_credential.is_some()),
            ("format", n.format.is_some()),
            ("url_env", n.url_env.is_some()),
            ("url_file", n.url_file.is_some()),
            ("url_credential", n.url_credential.is_some()),
        ];
        let email_keys = [
            ("smtp_host", n.smtp_host.is_some()),
            ("smtp_port", n.smtp_port.is_some()),
            ("tls", n.tls.is_some()),
            ("allow_plaintext", n.allow_plaintext.is_some()),
            ("ca_file", n.ca_file.is_some()),
            ("username", n.username.is_some()),
            ("password_env", n.password_env.is_some()),
            ("password_file", n.password_file.is_some()),
            ("password_credential", n.password_credential.is_some()),
            ("from", n.from.is_some()),
            ("to", n.to.is_some()),
        ];
        let (foreign, kind) = match n.kind {
            NotifierKind::Webhook => (&email_keys[..], "webhook"),
            NotifierKind::Email => (&webhook_keys[..], "email"),
        };
        if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err(self.at(
                "notifier",
                i,
                key,
                format!("key `{key}` does not apply to {kind} notifier {:?}", n.name),
            ));
        }
        match n.kind {
            NotifierKind::Webhook => {
                let url_keys = [
                    webhook_keys[0],
                    webhook_keys[5],
                    webhook_keys[6],
                    webhook_keys[7],
                ];
                if !url_keys.iter().any(|(_, set)| *set) {
                    return Err(self.at(
                        "notifier",
                        i,
                        "kind",
                        format!(
                            "webhook notifier {:?} needs a `url` (or `url_env`, `url_file`, \
                             `url_credential`)",
                            n.name
                        ),
                    ));
                }
                self.one_secret("notifier", i, &url_keys, false)?;
                if let Some(url) = &n.url
                    && !matches!(url.scheme(), "http" | "https")
                {
                    return Err(self.at(
                        "notifier",
                        i,
                        "url",
                        format!("url {} is not an http(s) URL", n.shown_url()),
                    ));
                }
                self.one_secret("notifier", i, &webhook_keys[1..4], false)?;
            }
            NotifierKind::Email => {
                for (key, set) in [
                    ("smtp_host", n.smtp_host.is_some()),
                    ("from", n.from.is_some()),
                    ("to", n.to.is_some()),
                ] {
                    if !set {
                        return Err(self.at(
                            "notifier",
                            i,
                            "kind",
                            format!("email notifier {:?} needs `{key}`", n.name),
                        ));
                    }
                }
                if n.to.as_ref().is_some_and(Vec::is_empty) {
                    return Err(self.at(
                        "notifier",
                        i,
                        "to",
                        format!("email notifier {:?} has an empty `to` list", n.name),
                    ));
                }
                self.one_secret("notifier", i, &email_keys[6..9], false)?;
                self.email(i, n)?;
            }
        }
        if let Some(t) = n.timeout {
            self.within("notifier", i, "timeout", t)?;
        }
        for (key, d) in [
            ("retry_initial", n.retry_initial),
            ("retry_max", n.retry_max),
            ("give_up_after", n.give_up_after),
        ] {
            self.within("notifier", i, key, d)?;
        }
        for (key, name) in [
            ("secret_env", n.secret_env.as_deref()),
            ("url_env", n.url_env.as_deref()),
            ("password_env", n.password_env.as_deref()),
        ] {
            self.env_name("notifier", i, key, name)?;
        }
        if n.retry_initial > n.retry_max {
            return Err(self.at(
                "notifier",
                i,
                "retry_initial",
                format!(
                    "retry_initial ({}) is longer than retry_max ({})",
                    n.retry_initial, n.retry_max
                ),
            ));
        }
        Ok(())
    }

    fn email(&self, i: usize, n: &NotifierConfig) -> Result<(), ConfigError> {
        let host = n.smtp_host.as_deref().unwrap_or_default();
        if n.tls == Some(SmtpTls::None) && !is_loopback(host) && n.allow_plaintext != Some(true) {
            return Err(self.at(
                "notifier",
                i,
                "tls",
                format!(
                    "tls = \"none\" would send mail and the password in clear text to {host}; \
                     use \"starttls\" or \"tls\", or set allow_plaintext = true"
                ),
            ));
        }
        if let Some(from) = &n.from
            && let Err(e) = from.parse::<lettre::message::Mailbox>()
        {
            return Err(self.at(
                "notifier",
                i,
                "from",
                format!("`from` {from:?} is not an e-mail address ({e})"),
            ));
        }
        for to in n.to.iter().flatten() {
            if let Err(e) = to.parse::<lettre::message::Mailbox>() {
                return Err(self.at(
                    "notifier",
                    i,
                    "to",
                    format!("`to` address {to:?} is not an e-mail address ({e})"),
                ));
            }
        }
        if n.username.is_some() != n.password().is_some() {
            let key = if n.username.is_some() {
                "username"
            } else {
                "password_env"
            };
            return Err(self.at(
                "notifier",
                i,
                key,
                format!(
                    "email notifier {:?} needs both `username` and one of `password_env`, \
                     `password_file`, `password_credential`, or neither",
                    n.name
                ),
            ));
        }
        Ok(())
    }

    fn route(&self, i: usize, r: &RouteConfig) -> Result<(), ConfigError> {
        if r.events.is_empty() {
            return Err(self.at(
                "route",
                i,
                "events",
                "route has an empty `events` list".into(),
            ));
        }
        for e in &r.events {
            if let Err(message) = known_event_pattern(e) {
                return Err(self.at("route", i, "events", message));
            }
        }
        if r.notifiers.is_empty() {
            return Err(self.at(
                "route",
                i,
                "notifiers",
                "route has an empty `notifiers` list".into(),
            ));
        }
        for n in &r.notifiers {
            if self.config.notifier(n).is_none() {
                return Err(self.at(
                    "route",
                    i,
                    "notifiers",
                    format!("route names notifier {n:?}, which is not defined"),
                ));
            }
        }
        for s in r.sources.iter().flatten() {
            if self.config.source(s).is_none() {
                return Err(self.at(
                    "route",
                    i,
                    "sources",
                    format!("route names source {s:?}, which is not defined"),
                ));
            }
        }
        Ok(())
    }

    fn name(&self, table: &str, i: usize, name: &str) -> Result<(), ConfigError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(())
        } else {
            Err(self.at(
                table,
                i,
                "name",
                format!("{table} name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
            ))
        }
    }

    fn one_secret(
        &self,
        table: &str,
        i: usize,
        keys: &[(&str, bool)],
        required: bool,
    ) -> Result<(), ConfigError> {
        let set: Vec<&str> = keys.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect();
        if set.len() > 1 {
            return Err(self.at(
                table,
                i,
                set[1],
                format!("set only one of `{}`", set.join("`, `")),
            ));
        }
        if required && set.is_empty() {
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            return Err(self.at(
                table,
                i,
                "name",
                format!("{table} needs one of `{}`", names.join("`, `")),
            ));
        }
        Ok(())
    }

    /// Refuses a duration outside its documented range ([`DURATION_RANGES`]).
    fn within(&self, table: &str, i: usize, key: &str, d: Dur) -> Result<(), ConfigError> {
        let Some((_, min, max)) = DURATION_RANGES.iter().find(|(k, _, _)| *k == key) else {
            return Ok(());
        };
        if d.0 < *min || d.0 > *max {
            return Err(self.at(
                table,
                i,
                key,
                format!(
                    "`{key}` = \"{d}\" is outside its range, {} to {}",
                    Dur(*min),
                    Dur(*max)
                ),
            ));
        }
        Ok(())
    }

    /// `*_env` must name an environment variable; a value that is not a name (a key pasted in
    /// by mistake) is refused without being echoed.
    fn env_name(
        &self,
        table: &str,
        i: usize,
        key: &str,
        name: Option<&str>,
    ) -> Result<(), ConfigError> {
        let Some(name) = name else { return Ok(()) };
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            return Ok(());
        }
        Err(self.at(
            table,
            i,
            key,
            format!(
                "`{key}` must name an environment variable (letters, digits and _), like \
                 OPENAI_API_KEY; its value is not shown, in case it is the secret itself"
            ),
        ))
    }

    /// An error located at `key` of `[daemon]`.
    fn daemon_at(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self
                .text
                .lines()
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
                .map_or(1, |n| n + 1),
            message,
        }
    }

    /// An error located at `key` inside the `i`-th `[[table]]` (or at its header).
    fn at(&self, table: &str, i: usize, key: &str, message: String) -> ConfigError {
        let line = locate(self.text, table, i, key).unwrap_or(1);
        let message = if message.contains(&format!("`{key}`")) {
            message
        } else {
            format!("key `{key}`: {message}")
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            message,
        }
    }
}

/// Whether an SMTP host is this machine, where plaintext cannot be overheard.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The statuses OpenAI's fine-tuning jobs API uses, and the events tunewatch adds to them.
pub const JOB_EVENT_NAMES: &[&str] = &[
    "created",
    "validating_files",
    "queued",
    "running",
    "paused",
    "succeeded",
    "failed",
    "cancelled",
    "stalled",
];

/// Whether a route may name `e`: a type tunewatch raises, or a prefix of some with a trailing
/// `*`. `Err` carries the sentence for an unknown one, with a suggestion when one is close.
fn known_event_pattern(e: &str) -> Result<(), String> {
    let expected = "expected fine_tuning.job.<status>, fine_tuning.job.created, \
                    fine_tuning.job.stalled, tunewatch.source.failing or tunewatch.source.recovered; \
                    a trailing * matches a prefix";
    if let Some(prefix) = e.strip_suffix('*') {
        let ok = !prefix.contains('*')
            && EVENT_PREFIXES
                .iter()
                .any(|k| k.starts_with(prefix) || prefix.starts_with(k));
        return if ok {
            Ok(())
        } else {
            Err(format!("unknown event type {e:?} ({expected})"))
        };
    }
    let known: Vec<String> = JOB_EVENT_NAMES
        .iter()
        .map(|n| format!("fine_tuning.job.{n}"))
        .chain(SOURCE_EVENTS.iter().map(|s| s.to_string()))
        .collect();
    if known.iter().any(|k| k == e) {
        return Ok(());
    }
    let closest = known
        .iter()
        .map(|k| (edit_distance(k, e), k))
        .min()
        .filter(|(d, _)| *d <= 3);
    Err(match closest {
        Some((_, k)) => format!("unknown event type {e:?}: did you mean {k:?}?"),
        None => format!(
            "unknown event type {e:?} ({expected}; a status tunewatch does not know yet is \
             routed with a wildcard such as \"fine_tuning.job.*\")"
        ),
    })
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The line of `key` inside the `index`-th `[[table]]`, or of that table's header.
///
/// Scans the text the way people write TOML (one `key = value` a line); the fallback to the
/// header keeps errors located even for inline tables.
fn locate(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let mut seen = 0usize;
    let mut header_line = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            if header_line.is_some() {
                break;
            }
            if line.replace(' ', "") == header {
                if seen == index {
                    header_line = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if header_line.is_some()
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(n + 1);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
state_db = "state/tunewatch.db"

[[source]]
name = "prod"
kind = "openai"
api_key_env = "OPENAI_API_KEY"
poll_interval = "90s"

[[notifier]]
name = "ops-hook"
kind = "webhook"
url = "https://hooks.example.com/tunewatch"
secret_env = "HOOK_SECRET"

[[notifier]]
name = "team-mail"
kind = "email"
smtp_host = "smtp.example.com"
from = "tunewatch <t@example.com>"
to = ["ml@example.com"]

[[route]]
events = ["fine_tuning.job.succeeded", "fine_tuning.job.*"]
notifiers = ["ops-hook"]

[[route]]
events = ["fine_tuning.job.failed"]
notifiers = ["team-mail"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/tw/config.toml"))
    }

    fn err(text: &str) -> String {
        parse(text)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn a_good_config_parses_with_defaults_and_resolved_paths() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.daemon.state_db, Path::new("/etc/tw/state/tunewatch.db"));
        let s = &c.sources[0];
        assert_eq!(s.poll_interval.0, Duration::from_secs(90));
        assert_eq!(s.stall_after.0, Duration::from_secs(6 * 3600));
        assert_eq!(s.api_base.as_str(), "https://api.openai.com/v1");
        assert_eq!(s.api_key(), Some(SecretRef::Env("OPENAI_API_KEY".into())));
        assert_eq!(c.notifiers[0].retry_initial.0, Duration::from_secs(30));
        assert_eq!(
            c.notifiers_for("fine_tuning.job.succeeded", "prod"),
            vec!["ops-hook"]
        );
        assert!(
            c.notifiers_for("tunewatch.source.failing", "prod")
                .is_empty()
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = GOOD.replace("poll_interval = \"90s\"", "poll_intervall = \"90s\"");
        let e = err(&text);
        assert!(e.starts_with("/etc/tw/config.toml, line 9:"), "{e}");
        assert!(e.contains("poll_intervall"), "{e}");
    }

    #[test]
    fn a_bad_duration_is_named_with_its_key_and_line() {
        let e = err(&GOOD.replace("\"90s\"", "\"ninety\""));
        assert!(e.contains("line 9"), "{e}");
        assert!(e.contains("poll_interval"), "{e}");
        assert!(e.contains("invalid duration"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let e = err(&GOOD.replace("poll_interval = \"90s\"", "poll_interval = 90"));
        assert!(e.contains("line 9") && e.contains("poll_interval"), "{e}");
    }

    #[test]
    fn a_bad_url_is_named_with_its_line() {
        let e = err(&GOOD.replace("https://hooks.example.com/tunewatch", "not a url"));
        assert!(e.contains("line 14") && e.contains("url"), "{e}");
    }

    #[test]
    fn a_route_to_a_missing_notifier_is_refused_at_its_line() {
        let e = err(&GOOD.replace("notifiers = [\"ops-hook\"]", "notifiers = [\"pager\"]"));
        assert!(e.contains("line 26"), "{e}");
        assert!(e.contains("notifiers") && e.contains("\"pager\""), "{e}");
    }

    #[test]
    fn a_route_to_a_missing_source_is_refused() {
        let text = GOOD.replace(
            "notifiers = [\"ops-hook\"]",
            "notifiers = [\"ops-hook\"]\nsources = [\"staging\"]",
        );
        let e = err(&text);
        assert!(e.contains("line 27") && e.contains("\"staging\""), "{e}");
    }

    #[test]
    fn duplicate_names_are_refused_at_the_second() {
        let text = GOOD.replace("name = \"team-mail\"", "name = \"ops-hook\"");
        let e = err(&text);
        assert!(
            e.contains("line 18") && e.contains("duplicate notifier"),
            "{e}"
        );
        let text = format!(
            "{GOOD}\n[[source]]\nname = \"prod\"\nkind = \"openai\"\napi_key_env = \"K\"\n"
        );
        let e = err(&text);
        assert!(
            e.contains("line 33") && e.contains("duplicate source"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_event_type_is_refused() {
        let e = err(&GOOD.replace("fine_tuning.job.succeeded", "job.succeeded"));
        assert!(
            e.contains("line 25") && e.contains("unknown event type"),
            "{e}"
        );
        let e = err(&GOOD.replace("fine_tuning.job.succeeded", "tunewatch.source.exploded"));
        assert!(e.contains("unknown event type"), "{e}");
    }

    #[test]
    fn keys_of_another_kind_and_missing_required_keys_are_refused() {
        let e = err(&GOOD.replace(
            "secret_env = \"HOOK_SECRET\"",
            "secret_env = \"HOOK_SECRET\"\nsmtp_host = \"x\"",
        ));
        assert!(e.contains("line 16") && e.contains("smtp_host"), "{e}");
        let e = err(&GOOD.replace("url = \"https://hooks.example.com/tunewatch\"\n", ""));
        assert!(e.contains("needs a `url`"), "{e}");
        let e = err(&GOOD.replace("to = [\"ml@example.com\"]", "to = []"));
        assert!(e.contains("empty `to`"), "{e}");
        let e = err(&GOOD.replace("api_key_env = \"OPENAI_API_KEY\"\n", ""));
        assert!(e.contains("api_key_env") && e.contains("line 6"), "{e}");
    }

    #[test]
    fn plaintext_smtp_is_refused_for_a_remote_host_unless_allowed() {
        let remote = GOOD.replace(
            "to = [\"ml@example.com\"]",
            "to = [\"ml@example.com\"]\ntls = \"none\"",
        );
        let e = err(&remote);
        assert!(
            e.contains("line 23") && e.contains("clear text to smtp.example.com"),
            "{e}"
        );
        parse(&remote.replace("tls = \"none\"", "tls = \"none\"\nallow_plaintext = true")).unwrap();
        parse(&remote.replace("smtp.example.com", "127.0.0.1")).unwrap();
        parse(&remote.replace("smtp.example.com", "localhost")).unwrap();
        assert!(is_loopback("[::1]") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn email_addresses_and_credentials_are_checked() {
        let e = err(&GOOD.replace("tunewatch <t@example.com>", "not an address"));
        assert!(e.contains("line 21") && e.contains("`from`"), "{e}");
        let e = err(&GOOD.replace("ml@example.com", "ml at example"));
        assert!(e.contains("line 22") && e.contains("`to`"), "{e}");
        let e = err(&GOOD.replace("to = [", "username = \"tw\"\nto = ["));
        assert!(
            e.contains("line 22") && e.contains("needs both `username`"),
            "{e}"
        );
        parse(&GOOD.replace("to = [", "username = \"tw\"\npassword_env = \"P\"\nto = [")).unwrap();
    }

    #[test]
    fn a_notifier_no_route_reaches_is_refused_at_its_line() {
        let text = GOOD.replace("notifiers = [\"team-mail\"]", "notifiers = [\"ops-hook\"]");
        let e = err(&text);
        assert!(
            e.contains("line 18") && e.contains("no [[route]] names notifier \"team-mail\""),
            "{e}"
        );
    }

    #[test]
    fn two_sources_for_one_secret_are_refused() {
        let e = err(&GOOD.replace(
            "secret_env = \"HOOK_SECRET\"",
            "secret_env = \"HOOK_SECRET\"\nsecret_file = \"hook.key\"",
        ));
        assert!(e.contains("only one of") && e.contains("line 16"), "{e}");
    }

    #[test]
    fn no_source_is_refused() {
        let e = err("[daemon]\nstate_db = \"x.db\"\n");
        assert!(e.contains("no [[source]]"), "{e}");
    }

    #[test]
    fn missing_secrets_are_named_without_values() {
        let c = parse(&GOOD.replace("OPENAI_API_KEY", "TW_TEST_SURELY_UNSET_VAR")).unwrap();
        let errors: Vec<String> = c.check_secrets().iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("$TW_TEST_SURELY_UNSET_VAR is not set")),
            "{errors:?}"
        );
    }

    #[test]
    fn secrets_are_read_from_files_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-very-secret\n").unwrap();
        let secret = SecretRef::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "sk-very-secret");
        assert!(!format!("{secret:?} {secret}").contains("very-secret"));
    }

    #[test]
    fn readable_secret_files_and_configs_naming_them_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("api.key");
        std::fs::write(&key, "sk-x").unwrap();
        let config = dir.path().join("config.toml");
        let text = GOOD.replace(
            "api_key_env = \"OPENAI_API_KEY\"",
            "api_key_file = \"api.key\"",
        );
        std::fs::write(&config, &text).unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&key, 0o600);
        set(&config, 0o640);
        assert!(
            Config::load(&config)
                .unwrap()
                .permission_warnings()
                .is_empty()
        );
        set(&key, 0o644);
        set(&config, 0o644);
        let w = Config::load(&config).unwrap().permission_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("names secret files and is readable by every user"),
            "{w:?}"
        );
        assert!(
            w[1].contains("api.key") && w[1].contains("mode 644"),
            "{w:?}"
        );
    }

    #[test]
    fn a_bad_log_filter_is_refused() {
        let e = err(&GOOD.replace("[daemon]", "[daemon]\nlog_level = \"info,,=[\""));
        assert!(e.contains("log_level"), "{e}");
    }

    #[test]
    fn route_patterns_match_exactly_or_by_prefix() {
        assert!(event_matches("fine_tuning.job.*", "fine_tuning.job.paused"));
        assert!(event_matches("*", "tunewatch.source.failing"));
        assert!(!event_matches(
            "fine_tuning.job.failed",
            "fine_tuning.job.failed2"
        ));
    }

    #[test]
    fn the_example_config_parses_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tunewatch.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text, &path).unwrap();
        assert_eq!(c.sources[0].name, "prod");
        // Every `pub field:` of the config structs is mentioned (set or commented) in the example.
        let source = include_str!("config.rs");
        let structs = source.split("#[cfg(test)]").next().unwrap();
        for line in structs.lines() {
            let l = line.trim();
            if let Some(field) = l
                .strip_prefix("pub ")
                .and_then(|r| r.split_once(':'))
                .map(|f| f.0)
                && !field.contains(' ')
                && !["path", "daemon", "sources", "notifiers", "routes"].contains(&field)
            {
                assert!(
                    text.contains(&format!("{field} =")),
                    "config/tunewatch.example.toml does not document `{field}`"
                );
            }
        }
    }

    #[test]
    fn config_path_prefers_flag_then_default() {
        assert_eq!(config_path(Some("/x.toml".into())), Path::new("/x.toml"));
    }
}
