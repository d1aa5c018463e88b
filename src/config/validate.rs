//! Validation: turns the file as written ([`super::raw`]) into the typed model ([`super::Config`]),
//! or into one sentence naming the file, the line and the key at fault. Parse, don't validate:
//! each check returns the value it proved, so no caller unwraps an option checked here.

use std::path::Path;

use super::event_names::known_event_pattern;
use super::locate::parse_error;
use super::raw::{ConfigFile, RawNotifier, RawNotifierKind, RawSource, RouteConfig, SmtpTls};
/// The Azure OpenAI API version used when `api_version` is not set.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

use super::{
    Config, ConfigError, EmailConfig, InsightConfig, Login, NotifierConfig, NotifierKind, Prices,
    RetryPolicy, SafeUrl, SourceConfig, SourceKind, UrlSource, Watch, WebhookConfig,
};

/// Parses `text` (read from `path`) into a validated [`Config`].
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut file: ConfigFile = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
    let validator = |file| Validator { text, path, file };
    if file.daemon.state_db.as_os_str().is_empty() {
        return Err(validator(&file).daemon_at(
            "state_db",
            "`state_db` is empty; name a database file".into(),
        ));
    }
    resolve_paths(&mut file, path);
    validator(&file).validate()
}

/// Makes every relative path in the file relative to the config file's folder.
fn resolve_paths(file: &mut ConfigFile, path: &Path) {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let fix = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if !super::StateDb::is_postgres_url(&file.daemon.state_db.to_string_lossy()) {
        fix(&mut file.daemon.state_db);
    }
    file.daemon.state_db_password_file.as_mut().map(fix);
    file.daemon.ui_token_file.as_mut().map(fix);
    for s in &mut file.sources {
        s.api_key_file.as_mut().map(fix);
        s.webhook_secret_file.as_mut().map(fix);
    }
    for n in &mut file.notifiers {
        n.url_file.as_mut().map(fix);
        n.secret_file.as_mut().map(fix);
        n.password_file.as_mut().map(fix);
        n.ca_file.as_mut().map(fix);
    }
}

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
    pub(super) file: &'a ConfigFile,
}

impl Validator<'_> {
    fn validate(&self) -> Result<Config, ConfigError> {
        let c = self.file;
        let state_db = self.state_db()?;
        self.daemon_within("leader_lease", c.daemon.leader_lease)?;
        self.daemon_within("claim_lease", c.daemon.claim_lease)?;
        if let Some(path) = state_db.sqlite_path()
            && let Ok(m) = std::fs::metadata(path)
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
        let token_keys = [
            c.daemon.ui_token_env.is_some(),
            c.daemon.ui_token_file.is_some(),
            c.daemon.ui_token_credential.is_some(),
        ];
        if token_keys.iter().filter(|k| **k).count() > 1 {
            return Err(self.daemon_at(
                "ui_token_file",
                "set only one of `ui_token_env`, `ui_token_file`, `ui_token_credential`".into(),
            ));
        }
        if let Some(addr) = c.daemon.listen
            && !addr.ip().is_loopback()
            && c.daemon.ui_token().is_none()
        {
            return Err(self.daemon_at(
                "listen",
                format!(
                    "`listen` {addr} is not a loopback address, so the status page needs a token: \
                     set `ui_token_env`, `ui_token_file` or `ui_token_credential` \
                     (/healthz and /metrics stay open)"
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
        let mut sources = Vec::with_capacity(c.sources.len());
        for (i, s) in c.sources.iter().enumerate() {
            sources.push(self.source(i, s)?);
        }
        let mut notifiers = Vec::with_capacity(c.notifiers.len());
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
            notifiers.push(self.notifier(i, n)?);
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
        Ok(Config {
            path: self.path.to_path_buf(),
            daemon: c.daemon.clone(),
            state_db,
            sources,
            notifiers,
            routes: c.routes.clone(),
            prices: self.prices()?,
        })
    }

    /// `[prices]`: every price a finite, non-negative number of USD per 1M tokens.
    fn prices(&self) -> Result<Prices, ConfigError> {
        for (prefix, price) in &self.file.prices {
            if prefix.is_empty() || !(price.is_finite() && *price >= 0.0 && *price <= 1e6) {
                return Err(self.daemon_at(
                    &format!("{prefix:?}"),
                    format!(
                        "[prices] {prefix:?} = {price}: a price is USD per 1M trained tokens, \
                         between 0 and 1000000, for a non-empty model prefix"
                    ),
                ));
            }
        }
        Ok(Prices(self.file.prices.clone()))
    }

    /// Keys that only some kinds take: set for another kind, they are refused with their line
    /// rather than silently ignored.
    fn kind_keys(&self, i: usize, s: &RawSource) -> Result<(), ConfigError> {
        let only = [
            ("organization", s.organization.is_some(), SourceKind::Openai),
            ("project", s.project.is_some(), SourceKind::Openai),
            (
                "api_version",
                s.api_version.is_some(),
                SourceKind::AzureOpenai,
            ),
        ];
        for (key, set, kind) in only {
            if set && s.kind != kind {
                return Err(self.at(
                    "source",
                    i,
                    key,
                    format!(
                        "`{key}` applies only to kind = \"{}\", not to \"{}\"",
                        kind.name(),
                        s.kind.name()
                    ),
                ));
            }
        }
        if s.watch.is_empty() {
            return Err(self.at(
                "source",
                i,
                "watch",
                "`watch` is empty; name \"fine_tuning\", \"batches\" or both".into(),
            ));
        }
        if s.watch.contains(&Watch::Batches)
            && !matches!(s.kind, SourceKind::Openai | SourceKind::AzureOpenai)
        {
            return Err(self.at(
                "source",
                i,
                "watch",
                format!(
                    "`watch` \"batches\" applies only to kind = \"openai\" and \"azure_openai\", \
                     not to \"{}\" (it has no batches API)",
                    s.kind.name()
                ),
            ));
        }
        if !(s.batch_failed_ratio.is_finite() && (0.0..=1.0).contains(&s.batch_failed_ratio)) {
            return Err(self.at(
                "source",
                i,
                "batch_failed_ratio",
                format!(
                    "batch_failed_ratio {} is outside 0..=1 (a share: 0.01 is 1 %)",
                    s.batch_failed_ratio
                ),
            ));
        }
        if let Some(v) = &s.api_version
            && (v.is_empty()
                || v.len() > 40
                || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(self.at(
                "source",
                i,
                "api_version",
                format!("api_version {v:?} is not a version like \"2024-10-21\""),
            ));
        }
        Ok(())
    }

    /// One `[[source]]`, checked and typed.
    fn source(&self, i: usize, s: &RawSource) -> Result<SourceConfig, ConfigError> {
        let idle = s
            .idle_poll_interval
            .unwrap_or_else(|| super::raw::default_idle_poll_interval(s.poll_interval));
        let c = self.file;
        {
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
            if let Some(base) = &s.api_base
                && !matches!(base.scheme(), "http" | "https")
            {
                return Err(self.at(
                    "source",
                    i,
                    "api_base",
                    format!("api_base {base} is not an http(s) URL"),
                ));
            }
            self.kind_keys(i, s)?;
            for (key, d) in [
                ("poll_interval", s.poll_interval),
                ("idle_poll_interval", idle),
                ("stall_after", s.stall_after),
                ("full_scan_every", s.full_scan_every),
                ("metrics_interval", s.metrics_interval),
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
            self.one_secret(
                "source",
                i,
                &[
                    ("webhook_secret_env", s.webhook_secret_env.is_some()),
                    ("webhook_secret_file", s.webhook_secret_file.is_some()),
                    (
                        "webhook_secret_credential",
                        s.webhook_secret_credential.is_some(),
                    ),
                ],
                false,
            )?;
            self.env_name(
                "source",
                i,
                "webhook_secret_env",
                s.webhook_secret_env.as_deref(),
            )?;
            if idle < s.poll_interval {
                return Err(self.at(
                    "source",
                    i,
                    "idle_poll_interval",
                    format!(
                        "idle_poll_interval ({}) is shorter than poll_interval ({})",
                        idle, s.poll_interval
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
            if let Some(m) = s.progress_marks.iter().find(|m| !(1..=99).contains(*m)) {
                return Err(self.at(
                    "source",
                    i,
                    "progress_marks",
                    format!("progress mark {m} is outside 1..=99 (percent)"),
                ));
            }
            if !(s.overfit_tolerance.is_finite()
                && s.overfit_tolerance > 0.0
                && s.overfit_tolerance <= 10.0)
            {
                return Err(self.at(
                    "source",
                    i,
                    "overfit_tolerance",
                    format!(
                        "overfit_tolerance {} is outside 0..=10 (a fraction: 0.10 is 10 %)",
                        s.overfit_tolerance
                    ),
                ));
            }
            if !(1..=1000).contains(&s.overfit_patience) {
                return Err(self.at(
                    "source",
                    i,
                    "overfit_patience",
                    format!(
                        "overfit_patience {} is outside 1..=1000",
                        s.overfit_patience
                    ),
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
        let api_key = s.api_key().ok_or_else(|| {
            self.at(
                "source",
                i,
                "name",
                "source needs one of `api_key_env`, `api_key_file`, `api_key_credential`".into(),
            )
        })?;
        Ok(SourceConfig {
            name: s.name.clone(),
            kind: s.kind,
            api_base: match (&s.api_base, s.kind.default_api_base()) {
                (Some(base), _) => base.clone(),
                (None, Some(default)) => SafeUrl(
                    url::Url::parse(default)
                        // invariant: the defaults are constant, valid URLs (a test parses each).
                        .expect("a default api_base parses"),
                ),
                (None, None) => {
                    return Err(self.at(
                        "source",
                        i,
                        "kind",
                        format!(
                            "a {} source needs `api_base` (https://RESOURCE.openai.azure.com/openai)",
                            s.kind.name()
                        ),
                    ));
                }
            },
            api_version: (s.kind == SourceKind::AzureOpenai).then(|| {
                s.api_version
                    .clone()
                    .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_string())
            }),
            api_key,
            organization: s.organization.clone(),
            project: s.project.clone(),
            poll_interval: s.poll_interval,
            idle_poll_interval: idle,
            webhook_secret: s.webhook_secret(),
            full_scan_every: s.full_scan_every,
            stall_after: s.stall_after,
            page_size: s.page_size,
            connect_timeout: s.connect_timeout,
            request_timeout: s.request_timeout,
            failing_after: s.failing_after,
            max_retries: s.max_retries,
            max_pages: s.max_pages,
            watch: {
                let mut w = Vec::new();
                for x in &s.watch {
                    if !w.contains(x) {
                        w.push(*x);
                    }
                }
                w
            },
            batch_failed_ratio: s.batch_failed_ratio,
            insight: InsightConfig {
                enabled: s.insight,
                metrics_interval: s.metrics_interval,
                checkpoints: s.checkpoints,
                progress_marks: {
                    let mut marks = s.progress_marks.clone();
                    marks.sort_unstable();
                    marks.dedup();
                    marks
                },
                overfit_tolerance: s.overfit_tolerance,
                overfit_patience: s.overfit_patience,
            },
        })
    }

    /// One `[[notifier]]`, checked and typed.
    fn notifier(&self, i: usize, n: &RawNotifier) -> Result<NotifierConfig, ConfigError> {
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
            RawNotifierKind::Webhook => (&email_keys[..], "webhook"),
            RawNotifierKind::Email => (&webhook_keys[..], "email"),
        };
        if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err(self.at(
                "notifier",
                i,
                key,
                format!("key `{key}` does not apply to {kind} notifier {:?}", n.name),
            ));
        }
        let typed = match n.kind {
            RawNotifierKind::Webhook => {
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
                NotifierKind::Webhook(WebhookConfig {
                    url,
                    secret: n.secret(),
                    format: n.format.unwrap_or_default(),
                })
            }
            RawNotifierKind::Email => {
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
                NotifierKind::Email(EmailConfig {
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
                })
            }
        };
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
        Ok(NotifierConfig {
            name: n.name.clone(),
            retry: RetryPolicy {
                initial: n.retry_initial.0,
                max: n.retry_max.0,
                give_up_after: n.give_up_after.0,
            },
            timeout: n.timeout.map(|t| t.0),
            kind: typed,
        })
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
            if !self.file.notifiers.iter().any(|x| x.name == *n) {
                return Err(self.at(
                    "route",
                    i,
                    "notifiers",
                    format!("route names notifier {n:?}, which is not defined"),
                ));
            }
        }
        for s in r.sources.iter().flatten() {
            if !self.file.sources.iter().any(|x| x.name == *s) {
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
}

/// Whether an SMTP host is this machine, where plaintext cannot be overheard.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
