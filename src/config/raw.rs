//! The config file as written: serde structs per TOML section, with a `///` doc on every key
//! (they double as the reference for `config/tunewatch.example.toml`) and the defaults in one
//! place. Nothing outside `config` uses these: [`super::validate`] turns them into the typed,
//! validated model the rest of the program trusts.

use std::path::PathBuf;

use serde::Deserialize;

pub use super::raw_notifier::{RawNotifier, RawNotifierKind, SmtpTls, WebhookFormat};
pub use super::raw_source::{RawSource, SourceKind, Watch};
use super::{Dur, SecretRef};

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
    /// `[inference_prices]`: USD per 1M input and output tokens by model prefix, for
    /// evaluations: `"ft:gpt-4.1-mini" = { input = 0.80, output = 3.20 }`.
    #[serde(default)]
    pub(super) inference_prices: std::collections::BTreeMap<String, super::evaluate::TokenPrice>,
    /// `[[quiet_hours]]`: named windows of local time in which routes hold their alerts.
    #[serde(default)]
    pub(super) quiet_hours: Vec<super::alerting::RawQuietHours>,
    /// `[[digest]]`: a daily summary to some notifiers.
    #[serde(default, rename = "digest")]
    pub(super) digests: Vec<super::alerting::RawDigest>,
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
    /// The longest silence `tunewatch silence add` accepts.
    #[serde(default = "super::alerting::default_max_silence")]
    pub max_silence: Dur,
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
            max_silence: super::alerting::default_max_silence(),
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
    /// What makes events share one message (e-mail, Slack, Discord): `source`, `type`, `status`,
    /// `model`, `job`, `metadata.KEY`.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long the first event of a group waits for others ("0s": no grouping; up to 1h).
    #[serde(default)]
    pub group_wait: Dur,
    /// After a group was sent, how long the next group of the same key waits.
    #[serde(default = "default_group_interval")]
    pub group_interval: Dur,
    /// Lines in a group message before "+N more".
    #[serde(default = "default_group_max_items")]
    pub group_max_items: u32,
    /// `[[quiet_hours]]` names: events are held in them, never dropped.
    #[serde(default)]
    pub quiet_hours: Vec<String>,
    /// Event types (or patterns) sent at once even in quiet hours.
    #[serde(default)]
    pub quiet_bypass: Vec<String>,
    /// Reminders of a condition that stays true (a stalled job, a failing source or notifier):
    /// "0s" (off) or 15m..30d.
    #[serde(default)]
    pub remind_every: Dur,
}

fn default_group_by() -> Vec<String> {
    vec!["source".into(), "type".into()]
}

fn default_group_interval() -> Dur {
    Dur::secs(300)
}

fn default_group_max_items() -> u32 {
    20
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
