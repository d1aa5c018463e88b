//! How a source proves who it is, named in the config ([`SourceAuth`]) and read
//! ([`SourceSecrets`]) by the one path `check` and `run` share: an API key; Google's OAuth2 from a
//! service-account key or the metadata server; or an AWS access key for SigV4. A Google key is
//! parsed here — JSON, e-mail, token address and the RSA key itself — so a key `check` accepts is
//! one `run` can sign with. No value ever reaches a `Debug` or a log line.

use std::fmt;
use std::path::Path;

use super::secret::{Secret, SecretKind, SecretRef};

/// Where a source's credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAuth {
    /// A key sent as the provider wants it (`Authorization: Bearer`, `api-key`, `x-api-key`).
    Key(SecretRef),
    /// Google OAuth2: a service-account key exchanged for tokens, or the metadata server.
    Google(GoogleAuth),
    /// AWS Signature Version 4 with an access key (and a session token for temporary ones).
    Aws {
        access_key_id: SecretRef,
        secret_access_key: SecretRef,
        session_token: Option<SecretRef>,
    },
}

/// Which Google credential a source uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleAuth {
    /// The JSON key of a service account.
    ServiceAccount(SecretRef),
    /// The metadata server of the machine tunewatch runs on (GCE, GKE, Cloud Run).
    Metadata,
}

impl SourceAuth {
    /// What the credential is, for "source \"prod\" api key: …".
    pub fn label(&self) -> &'static str {
        match self {
            SourceAuth::Key(_) => "api key",
            SourceAuth::Google(_) => "Google credential",
            SourceAuth::Aws { .. } => "AWS credential",
        }
    }

    /// Every secret this names, with what it is (for `check` and the permission warnings).
    pub fn secrets(&self) -> Vec<(&SecretRef, SecretKind, &'static str)> {
        match self {
            SourceAuth::Key(r) => vec![(r, SecretKind::ApiKey, "api key")],
            SourceAuth::Google(GoogleAuth::ServiceAccount(r)) => {
                vec![(r, SecretKind::GoogleKey, "Google service-account key")]
            }
            SourceAuth::Google(GoogleAuth::Metadata) => Vec::new(),
            SourceAuth::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let mut v = vec![
                    (access_key_id, SecretKind::ApiKey, "AWS access key id"),
                    (
                        secret_access_key,
                        SecretKind::ApiKey,
                        "AWS secret access key",
                    ),
                ];
                v.extend(
                    session_token
                        .iter()
                        .map(|t| (t, SecretKind::ApiKey, "AWS session token")),
                );
                v
            }
        }
    }

    /// Reads every secret (systemd credentials from `credentials` when given), by the rules of
    /// [`SecretRef::read_in`].
    ///
    /// # Errors
    /// A sentence naming what is missing or unusable; never a value.
    pub fn read_in(&self, credentials: Option<&Path>) -> Result<SourceSecrets, String> {
        Ok(match self {
            SourceAuth::Key(r) => SourceSecrets::Key(r.read_in(SecretKind::ApiKey, credentials)?),
            SourceAuth::Google(GoogleAuth::Metadata) => SourceSecrets::GoogleMetadata,
            SourceAuth::Google(GoogleAuth::ServiceAccount(r)) => {
                let secret = r.read_in(SecretKind::GoogleKey, credentials)?;
                SourceSecrets::GoogleKey(GoogleKey::parse(&secret, r)?)
            }
            SourceAuth::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            } => SourceSecrets::Aws(AwsKey {
                access_key_id: access_key_id.read_in(SecretKind::ApiKey, credentials)?,
                secret_access_key: secret_access_key.read_in(SecretKind::ApiKey, credentials)?,
                session_token: session_token
                    .as_ref()
                    .map(|t| t.read_in(SecretKind::ApiKey, credentials))
                    .transpose()?,
            }),
        })
    }
}

impl fmt::Display for SourceAuth {
    /// Where the credential comes from, for `check`: never a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceAuth::Key(r) => write!(f, "key from {r}"),
            SourceAuth::Google(GoogleAuth::ServiceAccount(r)) => {
                write!(f, "Google service-account key from {r}")
            }
            SourceAuth::Google(GoogleAuth::Metadata) => {
                f.write_str("Google credentials from the metadata server")
            }
            SourceAuth::Aws { access_key_id, .. } => {
                write!(
                    f,
                    "AWS access key (SigV4) from {access_key_id} and its secret"
                )
            }
        }
    }
}

/// A source's credential, read.
#[derive(Debug, Clone)]
pub enum SourceSecrets {
    Key(Secret),
    GoogleKey(GoogleKey),
    GoogleMetadata,
    Aws(AwsKey),
}

impl From<Secret> for SourceSecrets {
    fn from(key: Secret) -> SourceSecrets {
        SourceSecrets::Key(key)
    }
}

impl SourceSecrets {
    /// Every secret value, so that an error body echoing one can be redacted.
    pub fn values(&self) -> Vec<&str> {
        match self {
            SourceSecrets::Key(k) => vec![k.expose()],
            SourceSecrets::GoogleKey(g) => vec![g.private_key_id.as_deref().unwrap_or("")]
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect(),
            SourceSecrets::GoogleMetadata => Vec::new(),
            SourceSecrets::Aws(a) => {
                let mut v = vec![a.access_key_id.expose(), a.secret_access_key.expose()];
                v.extend(a.session_token.as_ref().map(Secret::expose));
                v
            }
        }
    }
}

/// An AWS access key, read.
#[derive(Debug, Clone)]
pub struct AwsKey {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// A Google service-account key, parsed: who it is, where tokens come from, and the RSA key
/// that signs the assertions (never shown: its `Debug` hides it).
#[derive(Clone)]
pub struct GoogleKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: url::Url,
    pub signing_key: jsonwebtoken::EncodingKey,
}

impl fmt::Debug for GoogleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .field("private_key", &"***")
            .finish()
    }
}

/// Where a key without `token_uri` exchanges its assertions.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

impl GoogleKey {
    /// Parses the JSON key IAM gives for a service account.
    ///
    /// # Errors
    /// A sentence naming `from` and what is wrong (not JSON, not a service account's key, no
    /// e-mail, an RSA key that does not parse, a token address that is not https); never the key.
    pub fn parse(secret: &Secret, from: &SecretRef) -> Result<GoogleKey, String> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(rename = "type")]
            kind: Option<String>,
            client_email: Option<String>,
            private_key: Option<String>,
            private_key_id: Option<String>,
            token_uri: Option<String>,
        }
        let bad = |why: &str| format!("{from} is not a Google service-account key: {why}");
        let raw: Raw = serde_json::from_str(secret.expose()).map_err(|e| {
            bad(&format!(
                "not JSON ({})",
                e.to_string().split(" at line").next().unwrap_or("")
            ))
        })?;
        if raw.kind.as_deref() != Some("service_account") {
            return Err(bad("its \"type\" is not \"service_account\""));
        }
        let client_email = raw
            .client_email
            .filter(|e| e.contains('@') && !e.chars().any(char::is_control))
            .ok_or_else(|| bad("no \"client_email\""))?;
        let pem = raw.private_key.ok_or_else(|| bad("no \"private_key\""))?;
        let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| bad("its \"private_key\" is not an RSA private key in PEM"))?;
        let token_uri = url::Url::parse(raw.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI))
            .map_err(|_| bad("its \"token_uri\" is not a URL"))?;
        let loopback = token_uri
            .host_str()
            .is_some_and(super::validate::is_loopback);
        if token_uri.scheme() != "https" && !(token_uri.scheme() == "http" && loopback) {
            return Err(bad("its \"token_uri\" is not https"));
        }
        Ok(GoogleKey {
            client_email,
            private_key_id: raw.private_key_id,
            token_uri,
            signing_key,
        })
    }
}
