//! The webhook notifier: POSTs an event as JSON (or a chat payload) and signs it per Standard
//! Webhooks — `webhook-id` is the event id on every attempt, `webhook-timestamp` the attempt's unix
//! time, `webhook-signature` `v1,` + base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`.
//!
//! It reports how an attempt went ([`Attempt`]); when to retry is the dispatcher's decision.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use sha2::Sha256;

use super::{Attempt, NotifyError, render};
use crate::config::{Secret, UrlSource, WebhookConfig, WebhookFormat};
use crate::event::Event;
use crate::inert;

/// Time allowed for one delivery when the notifier sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The HMAC key decoded from a `whsec_…` secret. Its `Debug` hides it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// Decodes a Standard Webhooks secret: `whsec_` followed by base64 (the prefix is optional).
    ///
    /// # Errors
    /// A sentence saying the secret is not base64; the secret itself is not in it.
    pub fn from_secret(secret: &Secret) -> Result<SigningKey, NotifyError> {
        let text = secret.expose().trim();
        let b64 = text.strip_prefix("whsec_").unwrap_or(text);
        match B64.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(SigningKey(key)),
            _ => Err(NotifyError::BadSecret),
        }
    }

    /// The `webhook-signature` value for one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("invariant: HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Whether any of the space-separated `v1,` signatures in `header` is this key's signature.
    /// Every one is tried, each compared in constant time (no timing says how much matched).
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("invariant: HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let mut ok = false;
        for candidate in header.split_whitespace().take(16) {
            let Some(b64) = candidate.strip_prefix("v1,") else {
                continue;
            };
            if let Ok(sig) = B64.decode(b64) {
                ok |= mac.clone().verify_slice(&sig).is_ok();
            }
        }
        ok
    }
}

/// A configured webhook destination.
pub struct WebhookNotifier {
    pub name: String,
    url: Url,
    /// `url` as it may be shown (credentials and chat tokens hidden).
    shown: String,
    key: Option<SigningKey>,
    format: WebhookFormat,
    http: reqwest::Client,
}

impl WebhookNotifier {
    /// Builds the notifier from its config and its (already read) secret.
    ///
    /// # Errors
    /// A sentence when the secret is malformed or the HTTP client cannot be built.
    pub fn new(
        name: &str,
        config: &WebhookConfig,
        timeout: Option<Duration>,
        secret: Option<&Secret>,
    ) -> Result<WebhookNotifier, NotifyError> {
        let url = config.url().map_err(NotifyError::Url)?.0;
        let key = secret.map(SigningKey::from_secret).transpose()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Only a 2xx answer to the POST itself is "delivered": a redirect would be followed
            // as a GET without the body (or re-POST the signed body to another origin).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout.unwrap_or(DEFAULT_TIMEOUT))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(WebhookNotifier {
            name: name.to_string(),
            // A URL kept in a secret is shown without its path, whatever the format.
            shown: inert::redact_url(
                &url,
                config.is_chat() || matches!(config.url, UrlSource::Secret(_)),
            ),
            url,
            key,
            format: config.format,
            http,
        })
    }

    /// The destination, for messages: redacted, no secret in it.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Sends `event` once and says how it went.
    pub async fn deliver(&self, event: &Event, now_unix: i64, link: Option<&str>) -> Attempt {
        let body = match render::webhook_body(event, self.format, link) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Failed {
                    retryable: false,
                    status: None,
                    error: format!("cannot render the event: {e}"),
                    retry_after: None,
                };
            }
        };
        self.post(&event.id, now_unix, body).await
    }

    /// The format it sends in.
    pub fn format(&self) -> WebhookFormat {
        self.format
    }

    /// POSTs `body` once with `id` as its `webhook-id`, signed when a key is set.
    pub async fn post(&self, id: &str, now_unix: i64, body: Vec<u8>) -> Attempt {
        // The id and timestamp go out even unsigned, so any receiver can de-duplicate.
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", now_unix.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", key.sign(id, now_unix, &body));
        }
        match request.body(body).send().await {
            Ok(response) => super::answer::read(&self.shown, response).await,
            Err(e) => super::answer::unsent(&self.shown, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn signs_the_fixture_vector() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openai/webhook_signature_vector.synthetic.json"
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let key = SigningKey::from_secret(&Secret::new(v["secret"].as_str().unwrap())).unwrap();
        let id = v["headers"]["webhook-id"].as_str().unwrap();
        let ts: i64 = v["headers"]["webhook-timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = v["body"].as_str().unwrap().as_bytes();
        let expected = v["headers"]["webhook-signature"].as_str().unwrap();
        assert_eq!(key.sign(id, ts, body), expected);
        assert!(key.verify(id, ts, body, &format!("v1,bogus {expected}")));
        assert!(!key.verify(id, ts + 1, body, expected));
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        let e = SigningKey::from_secret(&Secret::new("whsec_***not-base64***")).unwrap_err();
        assert!(!e.to_string().contains("not-base64"));
        let key = SigningKey::from_secret(&Secret::new("whsec_c2VjcmV0")).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }
}
