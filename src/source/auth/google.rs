//! Google OAuth2 access tokens for Vertex AI (and Gemini's batches on Vertex): from a service
//! account's key — an RS256-signed JWT assertion (`iss` the account, `scope` cloud-platform,
//! `aud` the key's `token_uri`, an hour at most) exchanged with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` — or from the metadata server of the
//! Google Cloud machine tunewatch runs on (`Metadata-Flavor: Google`; its host from
//! `$GCE_METADATA_HOST` when set, as Google's own libraries do).
//!
//! A token is cached until a minute before it expires and shared by every request of the source;
//! a 401 from the API throws it away so the next request fetches a new one. A refused credential
//! is one sentence with Google's own error code; no key, assertion or token is ever shown.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::super::SourceError;
use crate::config::{GoogleKey, Secret};
use crate::inert::{self, ERROR_BODY_LIMIT, EXCERPT_CHARS};

/// The scope of every token: Vertex AI's APIs are under cloud-platform.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long an assertion is valid (Google accepts at most an hour).
const ASSERTION_LIFETIME: i64 = 3600;
/// A token is replaced this long before Google says it expires.
const EARLY: Duration = Duration::from_secs(60);
/// The metadata server when `$GCE_METADATA_HOST` is not set.
const METADATA_HOST: &str = "metadata.google.internal";

/// Where tokens come from.
enum From {
    Key(Box<GoogleKey>),
    Metadata { host: String },
}

/// A source's Google tokens: fetched when needed, cached, replaced before they expire.
pub struct GoogleTokens {
    from: From,
    http: reqwest::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl GoogleTokens {
    /// Tokens from a service account's key.
    pub fn service_account(key: GoogleKey, http: reqwest::Client) -> Self {
        GoogleTokens {
            from: From::Key(Box::new(key)),
            http,
            cached: Mutex::new(None),
        }
    }

    /// Tokens from the metadata server (`$GCE_METADATA_HOST`, else the standard one).
    pub fn metadata(http: reqwest::Client) -> Self {
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
            .unwrap_or_else(|| METADATA_HOST.to_string());
        GoogleTokens {
            from: From::Metadata { host },
            http,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one.
    ///
    /// # Errors
    /// [`SourceError::CredentialRefused`] when Google refuses the credential; transport errors
    /// as for any request.
    pub async fn token(&self) -> Result<Secret, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, expires_in) = match &self.from {
            From::Key(key) => self.exchange(key).await?,
            From::Metadata { host } => self.ask_metadata(host).await?,
        };
        let lifetime = Duration::from_secs(expires_in.clamp(1, 24 * 3600));
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(EARLY),
        ));
        Ok(token)
    }

    /// Forgets the cached token (the API answered 401 to it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Signs an assertion with the key and exchanges it for a token.
    async fn exchange(&self, key: &GoogleKey) -> Result<(Secret, u64), SourceError> {
        let now = crate::model::clock::unix_now();
        let claims = serde_json::json!({
            "iss": key.client_email,
            "scope": SCOPE,
            "aud": key.token_uri.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid.clone_from(&key.private_key_id);
        let assertion = jsonwebtoken::encode(&header, &claims, &key.signing_key).map_err(|e| {
            self.refused(
                key.token_uri.as_str(),
                None,
                &format!("cannot sign an assertion: {e}"),
            )
        })?;
        let shown = inert::redact_url(&key.token_uri, false);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let request = self
            .http
            .post(key.token_uri.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form);
        self.token_answer(request, &shown).await
    }

    /// Asks the metadata server for the default service account's token.
    async fn ask_metadata(&self, host: &str) -> Result<(Secret, u64), SourceError> {
        let url =
            format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
        let request = self.http.get(&url).header("Metadata-Flavor", "Google");
        self.token_answer(request, &url).await
    }

    /// Sends a token request and reads `{access_token, expires_in}`.
    async fn token_answer(
        &self,
        request: reqwest::RequestBuilder,
        shown: &str,
    ) -> Result<(Secret, u64), SourceError> {
        let response = request
            .send()
            .await
            .map_err(|e| SourceError::transport(shown, &e))?;
        let status = response.status();
        if !status.is_success() {
            let body = inert::read_excerpt(response, ERROR_BODY_LIMIT).await;
            // OAuth2's own words: {"error": "invalid_grant", "error_description": "…"}.
            let (code, message) = match serde_json::from_str::<Value>(&body) {
                Ok(v) => (
                    v.get("error").and_then(Value::as_str).map(str::to_string),
                    v.get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                Err(_) => (None, body),
            };
            let message = inert::excerpt(
                &format!(
                    "HTTP {}{}",
                    status.as_u16(),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
                EXCERPT_CHARS,
            );
            return Err(self.refused(shown, code, &message));
        }
        let body = inert::read_body(response, ERROR_BODY_LIMIT)
            .await
            .map_err(|_| self.refused(shown, None, "the token answer could not be read"))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| self.refused(shown, None, "the token answer is not JSON"))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| {
                !t.is_empty()
                    && t.len() <= 8192
                    && !t.chars().any(|c| c.is_whitespace() || c.is_control())
            })
            .ok_or_else(|| {
                self.refused(shown, None, "the token answer has no usable access_token")
            })?;
        let expires_in = v
            .get("expires_in")
            .and_then(crate::inert::count)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(3600);
        Ok((Secret::new(token), expires_in))
    }

    fn refused(&self, at: &str, code: Option<String>, message: &str) -> SourceError {
        SourceError::CredentialRefused(Box::new(super::super::Refusal {
            what: match self.from {
                From::Key(_) => "Google service-account key",
                From::Metadata { .. } => "Google metadata server's credentials",
            },
            at: at.to_string(),
            code,
            message: message.to_string(),
            hint: match self.from {
                From::Key(_) => "check the source's google_credentials_*",
                From::Metadata { .. } => "check the machine's service account and its scopes",
            },
        }))
    }
}
