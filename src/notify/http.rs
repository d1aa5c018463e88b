//! The `http` notifier: any endpoint (ntfy, Matrix, Google Chat, an internal API), its body a
//! minijinja template over `event` — the same envelope the JSON webhook sends. The template runs
//! sandboxed: no loader (no file), no environment, strict undefined, fuel and a recursion limit,
//! a bounded output; so a template cannot read a secret, loop for ever or stall the daemon
//! (Uptime Kuma's GHSA-vffh-c9pq-4crh is the hole this keeps shut).

use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use reqwest::header::{HeaderName, HeaderValue};

use super::{Attempt, NotifyError};
use crate::config::{HttpConfig, Secret, UrlSource};
use crate::event::Event;
use crate::inert;

/// Instructions a template may run for one event.
const FUEL: u64 = 200_000;
/// How deep loops, conditions and macros may nest.
const RECURSION: usize = 64;
/// The largest body a template may produce.
const BODY_LIMIT: usize = 512 * 1024;

/// A template, checked.
pub struct BodyTemplate {
    source: String,
}

/// Why a template cannot render, with its line when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub line: Option<usize>,
    pub message: String,
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION);
    // No loader: `include`, `import` and `extends` find nothing. No auto-escape: the body is
    // whatever the endpoint wants (JSON: use `| tojson`).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

fn error(e: &minijinja::Error) -> TemplateError {
    TemplateError {
        line: e.line(),
        message: match e.line() {
            Some(l) => format!("line {l}: {}", inert::excerpt(&e.to_string(), 300)),
            None => inert::excerpt(&e.to_string(), 300),
        },
    }
}

impl BodyTemplate {
    /// Compiles `source`.
    ///
    /// # Errors
    /// [`TemplateError`] with the line of a syntax error.
    pub fn new(source: &str) -> Result<BodyTemplate, TemplateError> {
        let env = env();
        env.template_from_str(source).map_err(|e| error(&e))?;
        Ok(BodyTemplate {
            source: source.to_string(),
        })
    }

    /// The body for `event`.
    ///
    /// # Errors
    /// [`TemplateError`]: an undefined name, a failed filter, fuel or recursion spent, a body
    /// over 512 KiB.
    pub fn render(&self, event: &Event) -> Result<String, TemplateError> {
        let env = env();
        let template = env.template_from_str(&self.source).map_err(|e| error(&e))?;
        let body = template
            .render(minijinja::context! { event => &*event.for_receivers() })
            .map_err(|e| error(&e))?;
        if body.len() > BODY_LIMIT {
            return Err(TemplateError {
                line: None,
                message: format!("the body is {} bytes, more than 512 KiB", body.len()),
            });
        }
        Ok(body)
    }
}

/// One configured HTTP endpoint.
pub struct HttpNotifier {
    http: reqwest::Client,
    url: reqwest::Url,
    shown: String,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    template: BodyTemplate,
}

impl HttpNotifier {
    /// # Errors
    /// [`NotifyError`] when the URL, a header or the template cannot be used.
    pub fn new(
        config: &HttpConfig,
        timeout: Option<Duration>,
        url_secret: Option<&Secret>,
    ) -> Result<HttpNotifier, NotifyError> {
        let url = match (&config.url, url_secret) {
            (UrlSource::Inline(u), _) => u.0.clone(),
            (UrlSource::Secret(_), Some(s)) => reqwest::Url::parse(s.expose().trim())
                .map_err(|_| NotifyError::Client("the url secret is not a URL".into()))?,
            (UrlSource::Secret(r), None) => {
                return Err(NotifyError::Client(format!(
                    "the url from {r} was not read"
                )));
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| NotifyError::Client(format!("header {k:?} is not a valid name")))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| NotifyError::Client(format!("header {k:?} has an invalid value")))?;
            // Authorization and friends never show in a Debug of the request.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let template = BodyTemplate::new(&config.template).map_err(|e| {
            NotifyError::Client(format!("{}: {}", config.template_origin, e.message))
        })?;
        Ok(HttpNotifier {
            http: super::answer::client(timeout)?,
            shown: inert::redact_url(&url, true),
            method: reqwest::Method::from_bytes(config.method.as_bytes())
                .unwrap_or(reqwest::Method::POST),
            url,
            headers,
            template,
        })
    }

    /// Renders the body of `event` and sends it once.
    pub async fn deliver(&self, event: &Event) -> Attempt {
        let body = match self.template.render(event) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Failed {
                    retryable: false,
                    status: None,
                    error: format!("the body template failed: {}", e.message),
                    retry_after: None,
                };
            }
        };
        self.send(&event.id, body).await
    }

    /// Sends `body` once, with `id` as its `webhook-id`.
    pub async fn send(&self, id: &str, body: String) -> Attempt {
        let request = self
            .http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header("webhook-id", id)
            .body(body);
        match request.send().await {
            Ok(r) => super::answer::read(&self.shown, r).await,
            Err(e) => super::answer::unsent(&self.shown, e),
        }
    }
}
