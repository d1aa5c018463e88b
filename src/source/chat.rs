//! OpenAI-compatible chat completions, for evaluations: OpenAI, Azure OpenAI deployments,
//! Together, Fireworks (its `/inference/v1`), Mistral, and any `evaluate.api_base` (vLLM, a
//! gateway). One request per (case, model), retried after 429, 408 and 5xx with `retry-after`
//! honoured; 404 says the model is not ready yet (a new model is still being deployed).
//!
//! Nothing a request sends or receives is put into an error: providers echo prompts in their
//! error messages, so an error names the status and the provider's error code only.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::config::{EvaluateConfig, Secret, SourceConfig, SourceKind};
use crate::evaluate::cases::Message;
use crate::inert;

/// The largest answer body read.
const BODY_LIMIT: usize = 1024 * 1024;
/// Attempts of one request (the first and its retries).
const ATTEMPTS: u32 = 6;
/// The longest `retry-after` honoured.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// An answer: its text and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Why a completion could not be had. No request or answer text in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// 404: the model is not (yet) served.
    #[error("{url} answered 404 for the model ({code})")]
    NotReady { url: String, code: String },
    /// Refused for good (400, 401, 403, …), or retried until the attempts ran out.
    #[error("{url} answered {status} ({code})")]
    Failed {
        url: String,
        status: String,
        code: String,
    },
    /// The answer is not a chat completion.
    #[error("{url}: {message}")]
    Body { url: String, message: String },
    #[error("cannot set up chat completions for source {source_name}: {message}")]
    Setup {
        source_name: String,
        message: String,
    },
}

/// The chat completions of one evaluated source.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    base: Url,
    shown: String,
    /// Azure: the fine-tune's deployment and the `api-version`.
    azure: Option<(Option<String>, String)>,
    max_tokens: u32,
    temperature: f64,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("base", &self.shown)
            .finish_non_exhaustive()
    }
}

impl ChatClient {
    /// The client of `source`'s evaluations, with `key` in a sensitive header.
    ///
    /// # Errors
    /// [`ChatError::Setup`] when the key cannot be a header or the client cannot be built.
    pub fn new(
        source: &SourceConfig,
        evaluate: &EvaluateConfig,
        key: &Secret,
    ) -> Result<ChatClient, ChatError> {
        let setup = |message: String| ChatError::Setup {
            source_name: source.name.clone(),
            message,
        };
        let base = match (&evaluate.api_base, source.kind) {
            (Some(b), _) => b.0.clone(),
            (None, SourceKind::Fireworks) => source
                .api_base
                .join("/inference/v1")
                .map_err(|e| setup(e.to_string()))?,
            (None, _) => source.api_base.0.clone(),
        };
        let mut headers = HeaderMap::new();
        let (name, value) = match source.kind {
            SourceKind::AzureOpenai => ("api-key", key.expose().to_string()),
            _ => ("authorization", format!("Bearer {}", key.expose())),
        };
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| setup("the API key is not a valid header value".into()))?;
        v.set_sensitive(true);
        headers.insert(name, v);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tunewatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(source.connect_timeout.0)
            .timeout(evaluate.request_timeout.0)
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        let azure = (source.kind == SourceKind::AzureOpenai).then(|| {
            (
                evaluate.deployment.clone(),
                source.api_version.clone().unwrap_or_default(),
            )
        });
        Ok(ChatClient {
            shown: inert::redact_url(&base, false),
            http,
            base,
            azure,
            max_tokens: evaluate.max_tokens,
            temperature: evaluate.temperature,
        })
    }

    /// Where `model`'s completions are asked: `…/chat/completions`, or on Azure the deployment's
    /// (the fine-tune's for `fine_tune`, else a deployment named like the model).
    fn url(&self, model: &str, fine_tune: bool) -> Result<Url, ChatError> {
        let mut base = self.base.clone();
        let path = base.path().trim_end_matches('/').to_string();
        match &self.azure {
            Some((deployment, version)) => {
                let name = match (fine_tune, deployment) {
                    (true, Some(d)) => d.as_str(),
                    _ => model,
                };
                let name: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
                base.set_path(&format!("{path}/deployments/{name}/chat/completions"));
                base.query_pairs_mut().append_pair("api-version", version);
            }
            None => base.set_path(&format!("{path}/chat/completions")),
        }
        Ok(base)
    }

    /// Asks `model` to answer `messages`, retrying what the API says may be retried.
    ///
    /// # Errors
    /// [`ChatError`]: not ready (404), refused, or not a completion.
    pub async fn complete(
        &self,
        model: &str,
        fine_tune: bool,
        messages: &[Message],
    ) -> Result<Completion, ChatError> {
        let url = self.url(model, fine_tune)?;
        let shown = format!("{}/chat/completions", self.shown.trim_end_matches('/'));
        let body = json!({
            "model": model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.http.post(url.clone()).json(&body).send().await;
            let (status, wait) = match sent {
                Ok(r) if r.status().is_success() => return read(&shown, r).await,
                Ok(r) => {
                    let status = r.status();
                    let wait = crate::source::client::retry_after(r.headers());
                    let code = error_code(r).await;
                    if status.as_u16() == 404 {
                        return Err(ChatError::NotReady { url: shown, code });
                    }
                    let retryable =
                        matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error();
                    if !retryable || attempt >= ATTEMPTS {
                        return Err(ChatError::Failed {
                            url: shown,
                            status: format!("HTTP {}", status.as_u16()),
                            code,
                        });
                    }
                    (format!("HTTP {}", status.as_u16()), wait)
                }
                Err(e) => {
                    let what = if e.is_timeout() {
                        "timed out"
                    } else {
                        "no answer"
                    };
                    if attempt >= ATTEMPTS {
                        return Err(ChatError::Failed {
                            url: shown,
                            status: what.into(),
                            code: "-".into(),
                        });
                    }
                    (what.to_string(), None)
                }
            };
            let backoff = Duration::from_millis(500 * (1 << attempt.min(4)));
            let pause = wait
                .and_then(|w| inert::clamp_delay(w, Duration::ZERO, MAX_WAIT))
                .unwrap_or(backoff);
            tracing::debug!(url = %shown, status = %status, attempt, "chat completion retried");
            tokio::time::sleep(pause).await;
        }
    }
}

/// The provider's error code (`model_not_found`, `rate_limit_exceeded`), never its message.
async fn error_code(r: reqwest::Response) -> String {
    let text = inert::read_excerpt(r, 16 * 1024).await;
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            e.get("code")
                .or_else(|| e.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|c| c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        .unwrap_or_else(|| "no error code".into())
}

async fn read(shown: &str, mut r: reqwest::Response) -> Result<Completion, ChatError> {
    let body_error = |message: &str| ChatError::Body {
        url: shown.to_string(),
        message: message.to_string(),
    };
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|_| body_error("the answer broke off"))?
    {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(body_error("the answer is larger than 1 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|_| body_error("the answer is not JSON"))?;
    let text = v
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| body_error("the answer has no choices[0].message.content"))?;
    let tokens = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Completion {
        text: text.to_string(),
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str, azure: Option<(Option<String>, String)>) -> ChatClient {
        let base = Url::parse(base).unwrap();
        ChatClient {
            http: reqwest::Client::new(),
            shown: base.to_string(),
            base,
            azure,
            max_tokens: 16,
            temperature: 0.0,
        }
    }

    #[test]
    fn each_endpoint_shape_is_asked_where_its_api_serves_it() {
        let openai = client("https://api.openai.com/v1", None);
        assert_eq!(
            openai.url("gpt-4.1-mini", false).unwrap().as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        let azure = client(
            "https://acme.openai.azure.com/openai",
            Some((Some("support-ft".into()), "2024-10-21".into())),
        );
        assert_eq!(
            azure.url("ft:gpt-4o-mini:acme::x", true).unwrap().as_str(),
            "https://acme.openai.azure.com/openai/deployments/support-ft/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            azure.url("gpt-4o mini", false).unwrap().as_str(),
            "https://acme.openai.azure.com/openai/deployments/gpt-4o+mini/chat/completions?api-version=2024-10-21"
        );
    }
}
