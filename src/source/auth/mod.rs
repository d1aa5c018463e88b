//! How a request proves who sends it: a key in a header (Bearer, `api-key`, `x-api-key`,
//! `x-goog-api-key`), a Google OAuth2 token, or an AWS SigV4 signature. The HTTP core
//! ([`super::client::ApiClient`]) applies it to each request just before sending; everything
//! else about a provider stays in the provider's own file.

pub mod google;
pub mod sigv4;

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::SourceError;
use crate::config::{Secret, SourceSecrets};

pub use google::GoogleTokens;
pub use sigv4::SigV4;

/// How requests carry the credential.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer KEY`.
    Bearer(Secret),
    /// The key alone in a header of this name (`api-key`, `x-api-key`, `x-goog-api-key`).
    Header(&'static str, Secret),
    /// A Google OAuth2 token (`Authorization: Bearer TOKEN`), fetched and cached.
    Google(Arc<GoogleTokens>),
    /// An AWS SigV4 signature, computed per request.
    SigV4(Arc<SigV4>),
}

impl Auth {
    /// The usual way for a source that takes a key: `Bearer` with the key read.
    ///
    /// # Errors
    /// [`SourceError::Setup`] when the source's credential is not a key.
    pub fn bearer(source_name: &str, secrets: &SourceSecrets) -> Result<Auth, SourceError> {
        match secrets {
            SourceSecrets::Key(k) => Ok(Auth::Bearer(k.clone())),
            _ => Err(SourceError::Setup {
                source_name: source_name.to_string(),
                message: "this kind of source takes an API key (api_key_*)".into(),
            }),
        }
    }

    /// The headers that never change (a key), marked sensitive; none for a token or signature.
    ///
    /// # Errors
    /// A sentence when the key cannot be a header value (a newline in it).
    pub fn static_headers(&self) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        let (name, value) = match self {
            Auth::Bearer(key) => (
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            ),
            Auth::Header(name, key) => (HeaderName::from_static(name), key.expose().to_string()),
            Auth::Google(_) | Auth::SigV4(_) => return Ok(headers),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| "the API key contains characters not allowed in a header".to_string())?;
        value.set_sensitive(true);
        headers.insert(name, value);
        Ok(headers)
    }

    /// Adds what changes per request: a fresh (or cached) Google token, or a SigV4 signature.
    ///
    /// # Errors
    /// [`SourceError`] when no token can be had, or signing fails.
    pub async fn apply(&self, request: &mut reqwest::Request) -> Result<(), SourceError> {
        match self {
            Auth::Bearer(_) | Auth::Header(..) => Ok(()),
            Auth::Google(tokens) => {
                let token = tokens.token().await?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| SourceError::Setup {
                        source_name: String::new(),
                        message: "Google's token cannot be a header value".into(),
                    })?;
                value.set_sensitive(true);
                request
                    .headers_mut()
                    .insert(reqwest::header::AUTHORIZATION, value);
                Ok(())
            }
            Auth::SigV4(signer) => signer.sign(request),
        }
    }

    /// After a 401: whether a new credential may help (a Google token is fetched anew once).
    pub async fn refresh(&self) -> bool {
        match self {
            Auth::Google(tokens) => {
                tokens.invalidate().await;
                true
            }
            _ => false,
        }
    }

    /// The secret values, to redact from anything an API answers.
    pub fn secrets(&self) -> Vec<Secret> {
        match self {
            Auth::Bearer(k) | Auth::Header(_, k) => vec![k.clone()],
            Auth::Google(_) | Auth::SigV4(_) => Vec::new(),
        }
    }
}
