//! Validation of each `[[notifier]]`: the keys of its kind, its URL or SMTP settings, retry
//! timing; returns the typed [`NotifierConfig`].

use super::raw::{RawNotifier, RawNotifierKind, SmtpTls};
use super::validate::{Validator, is_loopback};
use super::{
    ConfigError, EmailConfig, Login, NotifierConfig, NotifierKind, RetryPolicy, UrlSource,
    WebhookConfig,
};

impl Validator<'_> {
    /// One `[[notifier]]`, checked and typed.
    pub(super) fn notifier(
        &self,
        i: usize,
        n: &RawNotifier,
    ) -> Result<NotifierConfig, ConfigError> {
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
        self.notifier_foreign_keys(i, n, &webhook_keys, &email_keys)?;
        let typed = match n.kind {
            RawNotifierKind::Webhook => self.webhook(i, n, &webhook_keys)?,
            RawNotifierKind::Email => self.email_kind(i, n, &email_keys)?,
            RawNotifierKind::Pagerduty => NotifierKind::PagerDuty(self.pagerduty(i, n)?),
            RawNotifierKind::Telegram => NotifierKind::Telegram(self.telegram(i, n)?),
            RawNotifierKind::Http => NotifierKind::Http(self.http(i, n)?),
        };
        self.timing(i, n)?;
        Ok(NotifierConfig {
            name: n.name.clone(),
            retry: RetryPolicy {
                initial: n.retry_initial.0,
                max: n.retry_max.0,
                give_up_after: n.give_up_after.0,
            },
            timeout: n.timeout.map(|t| t.0),
            failing_after: n.notifier_failing_after,
            kind: typed,
        })
    }

    /// Refuses a key that belongs to another kind of notifier.
    fn notifier_foreign_keys(
        &self,
        i: usize,
        n: &RawNotifier,
        webhook_keys: &[(&'static str, bool); 8],
        email_keys: &[(&'static str, bool); 11],
    ) -> Result<(), ConfigError> {
        let pagerduty = [
            ("routing_key_env", n.routing_key_env.is_some()),
            ("routing_key_file", n.routing_key_file.is_some()),
            ("routing_key_credential", n.routing_key_credential.is_some()),
        ];
        let telegram = [
            ("bot_token_env", n.bot_token_env.is_some()),
            ("bot_token_file", n.bot_token_file.is_some()),
            ("bot_token_credential", n.bot_token_credential.is_some()),
            ("chat_id", n.chat_id.is_some()),
        ];
        let http = [
            ("method", n.method.is_some()),
            ("headers", n.headers.is_some()),
            ("body_template", n.body_template.is_some()),
            ("body_template_file", n.body_template_file.is_some()),
        ];
        let api_base = [("api_base", n.api_base.is_some())];
        let url = [
            webhook_keys[0],
            webhook_keys[5],
            webhook_keys[6],
            webhook_keys[7],
        ];
        let signing = &webhook_keys[1..5];
        let (kind, allowed): (&str, Vec<&(&str, bool)>) = match n.kind {
            RawNotifierKind::Webhook => ("webhook", webhook_keys.iter().collect()),
            RawNotifierKind::Email => ("email", email_keys.iter().collect()),
            RawNotifierKind::Pagerduty => {
                ("pagerduty", pagerduty.iter().chain(&api_base).collect())
            }
            RawNotifierKind::Telegram => ("telegram", telegram.iter().chain(&api_base).collect()),
            RawNotifierKind::Http => ("http", http.iter().chain(&url).collect()),
        };
        let every = webhook_keys
            .iter()
            .chain(email_keys)
            .chain(&pagerduty)
            .chain(&telegram)
            .chain(&http)
            .chain(&api_base)
            .chain(signing);
        for (key, set) in every {
            if *set && !allowed.iter().any(|(k, _)| k == key) {
                return Err(self.at(
                    "notifier",
                    i,
                    key,
                    format!("key `{key}` does not apply to {kind} notifier {:?}", n.name),
                ));
            }
        }
        Ok(())
    }

    /// A webhook notifier's URL (inline or a secret), signing secret and format.
    fn webhook(
        &self,
        i: usize,
        n: &RawNotifier,
        webhook_keys: &[(&'static str, bool); 8],
    ) -> Result<NotifierKind, ConfigError> {
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
        let url = match (&n.url, n.url_secret()) {
            (Some(u), _) => UrlSource::Inline(u.clone()),
            (None, Some(r)) => UrlSource::Secret(r),
            (None, None) => return Err(self.at("notifier", i, "url", "no url".into())),
        };
        Ok(NotifierKind::Webhook(WebhookConfig {
            url,
            secret: n.secret(),
            format: n.format.unwrap_or_default(),
        }))
    }

    /// An e-mail notifier's server, addresses and login.
    fn email_kind(
        &self,
        i: usize,
        n: &RawNotifier,
        email_keys: &[(&'static str, bool); 11],
    ) -> Result<NotifierKind, ConfigError> {
        let needs = |key: &str| {
            self.at(
                "notifier",
                i,
                "kind",
                format!("email notifier {:?} needs `{key}`", n.name),
            )
        };
        let smtp_host = n.smtp_host.clone().ok_or_else(|| needs("smtp_host"))?;
        let from = n.from.clone().ok_or_else(|| needs("from"))?;
        let to = n.to.clone().ok_or_else(|| needs("to"))?;
        if to.is_empty() {
            return Err(self.at(
                "notifier",
                i,
                "to",
                format!("email notifier {:?} has an empty `to` list", n.name),
            ));
        }
        self.one_secret("notifier", i, &email_keys[6..9], false)?;
        let login = self.email(i, n)?;
        let tls = n.tls.unwrap_or_default();
        Ok(NotifierKind::Email(EmailConfig {
            smtp_port: n.smtp_port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            }),
            smtp_host,
            tls,
            ca_file: n.ca_file.clone(),
            login,
            from,
            to,
        }))
    }

    /// The notifier's timeout, retry timing and secret names.
    fn timing(&self, i: usize, n: &RawNotifier) -> Result<(), ConfigError> {
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

    /// The e-mail rules; returns the login when one is configured.
    fn email(&self, i: usize, n: &RawNotifier) -> Result<Option<Login>, ConfigError> {
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
        match (&n.username, n.password()) {
            (Some(username), Some(password)) => Ok(Some(Login {
                username: username.clone(),
                password,
            })),
            (None, None) => Ok(None),
            (username, _) => Err(self.at(
                "notifier",
                i,
                if username.is_some() {
                    "username"
                } else {
                    "password_env"
                },
                format!(
                    "email notifier {:?} needs both `username` and one of `password_env`, \
                     `password_file`, `password_credential`, or neither",
                    n.name
                ),
            )),
        }
    }
}
