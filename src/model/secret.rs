//! Values that must not leak: a secret ([`Secret`]: `***` in every `Debug` and `Display`) and a
//! URL that may carry credentials ([`SafeUrl`]: shown redacted). Read by `config`, used by the
//! sources, notifiers and the store.

use std::fmt;

use serde::Deserialize;
use url::Url;

/// A URL from the config that may carry credentials (`user:pass@`, a chat webhook's token):
/// its `Debug` and `Display` show it redacted ([`super::inert::redact_url`]); the request code
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
        f.write_str(&super::inert::redact_url(&self.0, false))
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
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

/// A database URL as it may be shown: scheme, user, host, port and database name, never a
/// password or the query (which may hold one).
pub fn database_label(u: &Url) -> String {
    let inert = |s: &str| super::inert::Inert(s).to_string();
    let mut out = format!("{}://", u.scheme());
    if !u.username().is_empty() {
        out.push_str(&format!("{}@", inert(u.username())));
    }
    out.push_str(&inert(u.host_str().unwrap_or("")));
    if let Some(p) = u.port() {
        out.push_str(&format!(":{p}"));
    }
    out.push_str(&inert(u.path()));
    out
}
