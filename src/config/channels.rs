//! The notifier kinds beyond webhooks and e-mail (DESIGN.md, "More channels"): PagerDuty's
//! Events v2, Telegram's Bot API, and a generic HTTP endpoint whose body is a minijinja template.
//! Each keeps its credential (routing key, bot token, URL) in a secret reference.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::raw::RawNotifier;
use super::validate::Validator;
use super::{ConfigError, SafeUrl, SecretRef, UrlSource};

/// PagerDuty Events API v2.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// `https://events.pagerduty.com/v2` unless set; events go to `{api_base}/enqueue`.
    pub api_base: SafeUrl,
    pub routing_key: SecretRef,
}

/// Telegram's Bot API.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// `https://api.telegram.org` unless set; messages go to `{api_base}/bot{TOKEN}/sendMessage`.
    pub api_base: SafeUrl,
    pub bot_token: SecretRef,
    pub chat_id: String,
}

/// Any HTTP endpoint, the body from a template.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub url: UrlSource,
    /// POST, PUT or PATCH.
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// The template's text, and where it came from (for messages).
    pub template: String,
    pub template_origin: String,
}

/// A chat id as written: a number or a string (`"@channel"`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum ChatId {
    Number(i64),
    Text(String),
}

/// The headers an HTTP notifier may not set: the transport's own.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

fn base(s: &str) -> Result<SafeUrl, String> {
    url::Url::parse(s).map(SafeUrl).map_err(|e| e.to_string())
}

impl Validator<'_> {
    fn api_base_of(
        &self,
        i: usize,
        n: &RawNotifier,
        default: &str,
    ) -> Result<SafeUrl, ConfigError> {
        let b = match &n.api_base {
            Some(b) => b.clone(),
            None => base(default).map_err(|e| self.at("notifier", i, "api_base", e))?,
        };
        if !matches!(b.scheme(), "http" | "https") {
            return Err(self.at(
                "notifier",
                i,
                "api_base",
                "api_base is not an http(s) URL".into(),
            ));
        }
        Ok(b)
    }

    /// A `kind = "pagerduty"` notifier.
    pub(super) fn pagerduty(
        &self,
        i: usize,
        n: &RawNotifier,
    ) -> Result<PagerDutyConfig, ConfigError> {
        let keys = [
            ("routing_key_env", n.routing_key_env.is_some()),
            ("routing_key_file", n.routing_key_file.is_some()),
            ("routing_key_credential", n.routing_key_credential.is_some()),
        ];
        self.one_secret("notifier", i, &keys, true)?;
        let routing_key = SecretRef::pick(
            &n.routing_key_env,
            &n.routing_key_file,
            &n.routing_key_credential,
        )
        .ok_or_else(|| {
            self.at(
                "notifier",
                i,
                "kind",
                "pagerduty needs routing_key_env, _file or _credential".into(),
            )
        })?;
        Ok(PagerDutyConfig {
            api_base: self.api_base_of(i, n, "https://events.pagerduty.com/v2")?,
            routing_key,
        })
    }

    /// A `kind = "telegram"` notifier.
    pub(super) fn telegram(
        &self,
        i: usize,
        n: &RawNotifier,
    ) -> Result<TelegramConfig, ConfigError> {
        let keys = [
            ("bot_token_env", n.bot_token_env.is_some()),
            ("bot_token_file", n.bot_token_file.is_some()),
            ("bot_token_credential", n.bot_token_credential.is_some()),
        ];
        self.one_secret("notifier", i, &keys, true)?;
        let bot_token =
            SecretRef::pick(&n.bot_token_env, &n.bot_token_file, &n.bot_token_credential)
                .ok_or_else(|| {
                    self.at(
                        "notifier",
                        i,
                        "kind",
                        "telegram needs bot_token_env, _file or _credential".into(),
                    )
                })?;
        let chat_id = match &n.chat_id {
            Some(ChatId::Number(c)) => c.to_string(),
            Some(ChatId::Text(c)) if !c.trim().is_empty() && c.len() <= 128 => c.trim().to_string(),
            _ => {
                return Err(self.at(
                    "notifier",
                    i,
                    "chat_id",
                    "telegram needs a `chat_id` (a number such as -1001234567890, or \"@channel\")"
                        .into(),
                ));
            }
        };
        Ok(TelegramConfig {
            api_base: self.api_base_of(i, n, "https://api.telegram.org")?,
            bot_token,
            chat_id,
        })
    }

    /// A `kind = "http"` notifier: URL, method, headers and a template that compiles.
    pub(super) fn http(&self, i: usize, n: &RawNotifier) -> Result<HttpConfig, ConfigError> {
        let url = match (&n.url, n.url_secret()) {
            (Some(u), _) if matches!(u.scheme(), "http" | "https") => UrlSource::Inline(u.clone()),
            (Some(_), _) => {
                return Err(self.at("notifier", i, "url", "url is not an http(s) URL".into()));
            }
            (None, Some(r)) => UrlSource::Secret(r),
            (None, None) => {
                return Err(self.at(
                    "notifier",
                    i,
                    "kind",
                    "http needs a `url` (or url_env, url_file, url_credential)".into(),
                ));
            }
        };
        let method = n
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(self.at(
                "notifier",
                i,
                "method",
                format!("method {method:?} is not POST, PUT or PATCH"),
            ));
        }
        let mut headers = Vec::new();
        for (k, v) in n.headers.iter().flatten() {
            let ok_name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok();
            let ok_value = reqwest::header::HeaderValue::from_str(v).is_ok();
            if !ok_name || !ok_value || RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str())
            {
                return Err(self.at(
                    "notifier",
                    i,
                    "headers",
                    format!("header {k:?} cannot be sent (a valid name and value, not Host or Content-Length)"),
                ));
            }
            headers.push((k.clone(), v.clone()));
        }
        let (template, origin) = match (&n.body_template, &n.body_template_file) {
            (Some(t), None) => (t.clone(), "body_template".to_string()),
            (None, Some(p)) => (
                read_template(p).map_err(|e| self.at("notifier", i, "body_template_file", e))?,
                p.display().to_string(),
            ),
            _ => {
                return Err(self.at(
                    "notifier",
                    i,
                    "kind",
                    "http needs one of `body_template` or `body_template_file`".into(),
                ));
            }
        };
        Ok(HttpConfig {
            url,
            method,
            headers,
            template,
            template_origin: origin,
        })
    }
}

/// A template file, at most 64 KiB.
fn read_template(p: &PathBuf) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let mut text = String::new();
    f.take(64 * 1024 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if text.len() > 64 * 1024 {
        return Err(format!("{} is larger than 64 KiB", p.display()));
    }
    Ok(text)
}

/// The headers table as written.
pub type Headers = BTreeMap<String, String>;
