//! `[[notifier]]` as written: its kinds and formats and every key with its default. Validated
//! into [`super::NotifierConfig`] by `validate_notifier`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Dur, SafeUrl, SecretRef};

/// How a notifier delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawNotifierKind {
    Webhook,
    Email,
    /// PagerDuty Events API v2: incidents triggered and resolved.
    Pagerduty,
    /// A Telegram bot's messages to one chat.
    Telegram,
    /// Any HTTP endpoint, the body from a minijinja template.
    Http,
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
    /// A Microsoft Teams Workflows message: an Adaptive Card 1.4.
    Teams,
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
    /// Failed attempts in a row that raise `tunewatch.notifier.failing` (one dead delivery
    /// raises it at once); the next success raises `.recovered`.
    #[serde(default = "default_failing_after")]
    pub notifier_failing_after: u32,

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

    /// pagerduty / telegram: the API's base URL (the public one unless set).
    #[serde(default)]
    pub api_base: Option<SafeUrl>,
    /// pagerduty: the integration's routing key (a credential).
    #[serde(default)]
    pub routing_key_env: Option<String>,
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub routing_key_credential: Option<String>,
    /// telegram: the bot's token (a credential).
    #[serde(default)]
    pub bot_token_env: Option<String>,
    #[serde(default)]
    pub bot_token_file: Option<PathBuf>,
    #[serde(default)]
    pub bot_token_credential: Option<String>,
    /// telegram: the chat messages go to (a number, or "@channel").
    #[serde(default)]
    pub chat_id: Option<super::channels::ChatId>,
    /// http: POST (default), PUT or PATCH.
    #[serde(default)]
    pub method: Option<String>,
    /// http: extra request headers.
    #[serde(default)]
    pub headers: Option<super::channels::Headers>,
    /// http: the body, a minijinja template over `event` (the JSON webhook's envelope).
    #[serde(default)]
    pub body_template: Option<String>,
    /// http: the template from a file (relative to the config).
    #[serde(default)]
    pub body_template_file: Option<PathBuf>,

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
            Some(WebhookFormat::Slack) | Some(WebhookFormat::Discord) | Some(WebhookFormat::Teams)
        ) || self.kind == RawNotifierKind::Http;
        match (&self.url, self.url_secret()) {
            (Some(u), _) => crate::inert::redact_url(u, chat),
            (None, Some(r)) => format!("(URL from {r})"),
            (None, None) => "(no url)".into(),
        }
    }
}

fn default_failing_after() -> u32 {
    3
}
