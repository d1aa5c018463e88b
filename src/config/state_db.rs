//! `daemon.state_db`: a SQLite file (one daemon) or a PostgreSQL URL (several daemons sharing it),
//! with the PostgreSQL password read like every other secret and never written in the URL.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use super::validate::Validator;
use super::{ConfigError, SafeUrl, SecretRef};

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDb {
    /// A SQLite file: one daemon per database, held by a lock file.
    Sqlite(PathBuf),
    /// A PostgreSQL database several daemons share.
    Postgres(PgTarget),
}

/// A PostgreSQL database: its URL (no password in it) and where the password is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub url: SafeUrl,
    pub password: Option<SecretRef>,
}

impl StateDb {
    /// Where the store is, as the store opens it.
    pub fn location(&self) -> crate::store::Location<'_> {
        match self {
            StateDb::Sqlite(path) => crate::store::Location::Sqlite(path),
            StateDb::Postgres(target) => crate::store::Location::Postgres(&target.url),
        }
    }

    /// Whether `text` names a PostgreSQL database rather than a file.
    pub fn is_postgres_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The SQLite file, if that is the backend.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            StateDb::Sqlite(p) => Some(p),
            StateDb::Postgres(_) => None,
        }
    }
}

impl fmt::Display for StateDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDb::Sqlite(p) => write!(f, "{}", p.display()),
            StateDb::Postgres(t) => write!(f, "{t}"),
        }
    }
}

/// `postgres://USER@HOST:PORT/DB`: what names the database in messages. The URL never holds a
/// password (refused at parse time), and its parameters are left out.
impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::model::secret::database_label(&self.url))
    }
}

/// The `sslmode` values accepted. TLS always verifies the server's certificate and name against
/// the system's roots, so `require` is as strict as libpq's `verify-full`.
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

/// Parses a `postgres://` URL as written in the config: no password in it, a database named,
/// only the parameters tunewatch honours.
///
/// # Errors
/// One sentence naming what is wrong (the URL is shown without credentials).
pub fn parse_pg_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a PostgreSQL URL ({e})"))?;
    let shown = crate::inert::redact_url(&url, false);
    if url.password().is_some() {
        return Err(format!(
            "{shown} has a password in it; remove it and set `state_db_password_env`, \
             `state_db_password_file` or `state_db_password_credential`"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown} names no host"));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(format!(
            "{shown} names no database; write postgres://USER@HOST/DATABASE"
        ));
    }
    for (key, value) in url.query_pairs() {
        match &*key {
            "sslmode" if SSL_MODES.contains(&&*value) => {}
            "sslmode" => {
                return Err(format!(
                    "{shown}: sslmode {:?} is not one of {}",
                    crate::inert::Inert(&value).to_string(),
                    SSL_MODES.join(", ")
                ));
            }
            "connect_timeout" | "application_name" => {}
            other => {
                return Err(format!(
                    "{shown}: parameter {:?} is not supported (sslmode, connect_timeout and \
                     application_name are)",
                    crate::inert::Inert(other).to_string()
                ));
            }
        }
    }
    Ok(url)
}

impl Validator<'_> {
    /// `state_db` and its password keys, checked together.
    pub(super) fn state_db(&self) -> Result<StateDb, ConfigError> {
        let d = &self.file.daemon;
        let text = d.state_db.to_string_lossy();
        let password_keys = [
            ("state_db_password_env", d.state_db_password_env.is_some()),
            ("state_db_password_file", d.state_db_password_file.is_some()),
            (
                "state_db_password_credential",
                d.state_db_password_credential.is_some(),
            ),
        ];
        let set: Vec<&str> = password_keys
            .iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| *k)
            .collect();
        if !StateDb::is_postgres_url(&text) {
            let pg_only = [
                ("state_db_password", !set.is_empty()),
                ("instance", d.instance.is_some()),
            ];
            if let Some((key, _)) = pg_only.iter().find(|(_, s)| *s) {
                let key = set.first().copied().unwrap_or(key);
                return Err(self.daemon_at(
                    key,
                    format!(
                        "`{key}` applies only to a PostgreSQL state_db (postgres://…), and \
                         state_db is a file"
                    ),
                ));
            }
            return Ok(StateDb::Sqlite(d.state_db.clone()));
        }
        if set.len() > 1 {
            return Err(self.daemon_at(set[1], format!("set only one of `{}`", set.join("`, `"))));
        }
        let url = parse_pg_url(&text)
            .map_err(|m| self.daemon_at("state_db", format!("`state_db` {m}")))?;
        if let Some(name) = &d.instance {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(self.daemon_at(
                    "instance",
                    "`instance` must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
                ));
            }
        }
        Ok(StateDb::Postgres(PgTarget {
            url: SafeUrl(url),
            password: d.state_db_password(),
        }))
    }
}

/// This daemon's name among others on one PostgreSQL store: `instance`, or `HOSTNAME-PID`.
pub fn instance_name(configured: Option<&str>) -> String {
    if let Some(name) = configured {
        return name.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 48
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .unwrap_or_else(|| "tunewatch".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_password_or_an_unknown_parameter_is_refused_without_echoing_the_password() {
        let e = parse_pg_url("postgres://tw:hunter2@db.example/tw").unwrap_err();
        assert!(
            e.contains("state_db_password_env") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse_pg_url("postgres://tw@db.example/tw?sslmode=maybe").unwrap_err();
        assert!(e.contains("sslmode \"maybe\""), "{e}");
        let e = parse_pg_url("postgres://tw@db.example/tw?options=-c").unwrap_err();
        assert!(e.contains("\"options\" is not supported"), "{e}");
        let e = parse_pg_url("postgres://tw@db.example/").unwrap_err();
        assert!(e.contains("names no database"), "{e}");
        parse_pg_url("postgresql://tw@db.example:6432/tw?sslmode=verify-full").unwrap();
    }
}
