//! Validation: turns the file as written ([`super::raw`]) into the typed model ([`super::Config`]),
//! or into one sentence naming the file, the line and the key at fault. Parse, don't validate:
//! each check returns the value it proved, so no caller unwraps an option checked here.

use std::path::Path;

use super::event_names::known_event_pattern;
use super::locate::parse_error;
use super::raw::{ConfigFile, RouteConfig};
/// The Azure OpenAI API version used when `api_version` is not set.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

use super::evaluate::InferencePrices;
use super::{Config, ConfigError, NotifierConfig, Prices, StateDb};

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
        s.google_credentials_file.as_mut().map(fix);
        s.aws_access_key_id_file.as_mut().map(fix);
        s.aws_secret_access_key_file.as_mut().map(fix);
        s.aws_session_token_file.as_mut().map(fix);
        s.webhook_secret_file.as_mut().map(fix);
        if let Some(e) = &mut s.evaluate {
            fix(&mut e.cases_file);
        }
    }
    for n in &mut file.notifiers {
        n.url_file.as_mut().map(fix);
        n.secret_file.as_mut().map(fix);
        n.password_file.as_mut().map(fix);
        n.ca_file.as_mut().map(fix);
        n.routing_key_file.as_mut().map(fix);
        n.bot_token_file.as_mut().map(fix);
        n.body_template_file.as_mut().map(fix);
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
        self.daemon_keys(&state_db)?;
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
        let notifiers = self.notifiers()?;
        for (i, r) in c.routes.iter().enumerate() {
            self.route(i, r)?;
        }
        for (i, n) in c.notifiers.iter().enumerate() {
            if !c.routes.iter().any(|r| r.notifiers.contains(&n.name))
                && !c.digests.iter().any(|d| d.notifiers.contains(&n.name))
            {
                return Err(self.at(
                    "notifier",
                    i,
                    "name",
                    format!(
                        "no [[route]] or [[digest]] names notifier {:?}, so it would never be \
                         used; add a route or remove it",
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
            inference_prices: self.checked_inference_prices()?,
            quiet_hours: self.quiet_hours()?,
            digests: self.digests()?,
        })
    }

    /// `[daemon]`'s keys that need more than their type: leases, the database file, the
    /// token keys, a public listener's token and the log filter.
    fn daemon_keys(&self, state_db: &StateDb) -> Result<(), ConfigError> {
        let c = self.file;
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
        Ok(())
    }

    /// Every `[[notifier]]`, named once each.
    fn notifiers(&self) -> Result<Vec<NotifierConfig>, ConfigError> {
        let c = self.file;
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
        Ok(notifiers)
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

    /// `[inference_prices]`: finite, non-negative input and output prices for non-empty prefixes.
    fn checked_inference_prices(&self) -> Result<InferencePrices, ConfigError> {
        for (prefix, p) in &self.file.inference_prices {
            let ok = |x: f64| x.is_finite() && (0.0..=1e6).contains(&x);
            if prefix.is_empty() || !ok(p.input) || !ok(p.output) {
                return Err(self.table_at(
                    "inference_prices",
                    prefix,
                    format!(
                        "[inference_prices] {prefix:?}: input and output are USD per 1M tokens, \
                         between 0 and 1000000, for a non-empty model prefix"
                    ),
                ));
            }
        }
        Ok(self.inference_prices())
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
        self.route_alerting(i, r)?;
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
