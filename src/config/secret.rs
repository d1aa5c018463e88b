//! Secrets: where each is read from (`*_env`, `*_file`, `*_credential`), the one function that
//! reads and validates them for `check` and `run` alike ([`SecretRef::read`]), and the types
//! that keep them out of every `Debug` and log line ([`Secret`], [`SafeUrl`]).

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

pub use crate::model::secret::{SafeUrl, Secret};

pub(super) fn parse_url_secret(secret: &Secret, from: &SecretRef) -> Result<SafeUrl, String> {
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
    /// A Google service-account key: the whole JSON document (of at most 64 KiB), not a line.
    GoogleKey,
}

/// The largest secret read whole (a service-account key is about 2.3 KiB).
const WHOLE_SECRET_LIMIT: u64 = 64 << 10;

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
    pub(super) fn pick(
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
        self.resolve_in(None)
    }

    /// [`SecretRef::resolve`], with systemd credentials read from `credentials` instead of
    /// `$CREDENTIALS_DIRECTORY` when given (`check --credentials-dir`, before the unit runs).
    ///
    /// # Errors
    /// As [`SecretRef::resolve`].
    pub fn resolve_in(&self, credentials: Option<&Path>) -> Result<Secret, String> {
        self.resolve_as(credentials, false)
    }

    /// Reads the secret: its first line, or (`whole`) all of it, up to 64 KiB.
    fn resolve_as(&self, credentials: Option<&Path>, whole: bool) -> Result<Secret, String> {
        let read_file = |path: &Path, what: &str| -> Result<String, String> {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(WHOLE_SECRET_LIMIT + 1).read_to_string(&mut text))
                .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
            if text.len() as u64 > WHOLE_SECRET_LIMIT {
                return Err(format!("{what} {} is larger than 64 KiB", path.display()));
            }
            Ok(text)
        };
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable ${name} is not set"))?,
            SecretRef::File(path) => read_file(path, "secret file")?,
            SecretRef::Credential(name) => {
                let dir = credentials
                    .map(|d| d.as_os_str().to_owned())
                    .or_else(|| std::env::var_os("CREDENTIALS_DIRECTORY"))
                    .ok_or_else(|| {
                        format!(
                            "credential {name:?} needs $CREDENTIALS_DIRECTORY, which is not set \
                             (systemd sets it from LoadCredential=; before that, \
                             `tunewatch check --credentials-dir /etc/credstore` reads them there)"
                        )
                    })?;
                read_file(&Path::new(&dir).join(name), "credential")?
            }
        };
        let value = match self {
            _ if whole => value.trim().to_string(),
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
        Ok(Secret::new(value))
    }

    /// Reads the secret and checks that it can be what `kind` says: the one path by which both
    /// `check` and `run` read secrets, so that a config `check` accepts, `run` accepts.
    ///
    /// # Errors
    /// A sentence naming where the secret came from and what is wrong; never the value.
    pub fn read(&self, kind: SecretKind) -> Result<Secret, String> {
        self.read_in(kind, None)
    }

    /// [`SecretRef::read`] with credentials from `credentials` (see [`SecretRef::resolve_in`]).
    ///
    /// # Errors
    /// As [`SecretRef::read`].
    pub fn read_in(&self, kind: SecretKind, credentials: Option<&Path>) -> Result<Secret, String> {
        let secret = self.resolve_as(credentials, kind == SecretKind::GoogleKey)?;
        let value = secret.expose();
        let problem = match kind {
            SecretKind::ApiKey => value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
                .then_some("contains white space or control characters, which a key cannot"),
            // Parsed whole by the credential's own reader (`GoogleKey::parse`).
            SecretKind::GoogleKey => None,
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
