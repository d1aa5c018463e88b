//! Telegram: a bot's message to one chat, in Telegram's HTML subset (`<b>`, `<code>`, `<a>`),
//! every API string escaped (`&`, `<`, `>`), at most 4 096 characters of text after entities,
//! link previews off. The bot token is part of the URL: it is never shown (`bot***`) and never put
//! into an error. A 429 waits `parameters.retry_after`; a 400 is final.

use std::time::Duration;

use serde_json::{Value, json};

use super::render::group::Summary;
use super::{Attempt, render};
use crate::config::{Secret, TelegramConfig};
use crate::event::Event;
use crate::inert;

/// Telegram's limit on a message's text, counted after entities are parsed.
pub const TEXT_LIMIT: usize = 4096;

/// `s` escaped for Telegram's HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Telegram counts a message's length in UTF-16 code units.
fn units(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `s` cut to at most `max` UTF-16 units, an ellipsis marking the cut.
fn cut(s: &str, max: usize) -> String {
    if units(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + c.len_utf16() + 1 > max {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// A message from parts: a bold title, then lines, cut so the visible text stays within the
/// limit (each part is cut before it is escaped, so no entity is ever split).
fn compose(title: &str, lines: &[String], footer: Option<&str>) -> String {
    let mut budget = TEXT_LIMIT - 16;
    let title = cut(title, 300);
    budget -= units(&title) + 1;
    let mut text = format!("<b>{}</b>\n", escape(&title));
    for l in lines {
        if budget < 8 {
            break;
        }
        let part = cut(l, budget.saturating_sub(1).min(1500));
        budget -= units(&part) + 1;
        text.push_str(&escape(&part));
        text.push('\n');
    }
    if let Some(f) = footer.filter(|_| budget > 8) {
        text.push_str(&format!("<i>{}</i>", escape(&cut(f, budget - 2))));
    }
    text
}

/// One event as a message.
pub fn message(event: &Event) -> String {
    let mut lines = vec![render::lead(event)];
    for f in render::facts(event, None).into_iter().take(12) {
        lines.push(format!("{}: {}", f.label(), f.value));
    }
    compose(&render::headline(event), &lines, Some(&event.id))
}

/// A group as a message.
pub fn group(s: &Summary) -> String {
    let lines: Vec<String> = s.lines.iter().map(|l| format!("• {l}")).collect();
    let more = match (s.more, &s.link) {
        (0, _) => None,
        (n, Some(l)) => Some(format!("+{n} more: {l}")),
        (n, None) => Some(format!("+{n} more")),
    };
    compose(&s.title, &lines, more.as_deref())
}

/// One bot and chat.
pub struct TelegramNotifier {
    http: reqwest::Client,
    url: reqwest::Url,
    shown: String,
    token: Secret,
    chat_id: String,
}

impl std::fmt::Debug for TelegramNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramNotifier")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl TelegramNotifier {
    /// # Errors
    /// [`super::NotifyError`] when the client cannot be built or the token is not a path.
    pub fn new(
        config: &TelegramConfig,
        timeout: Option<Duration>,
        token: Secret,
    ) -> Result<TelegramNotifier, super::NotifyError> {
        let bad = || super::NotifyError::Client("the bot token is not a valid token".into());
        if token.expose().is_empty()
            || !token
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
        {
            return Err(bad());
        }
        let mut url = config.api_base.0.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/bot{}/sendMessage", token.expose()));
        let mut shown_url = config.api_base.0.clone();
        shown_url.set_path(&format!("{base}/bot***/sendMessage"));
        Ok(TelegramNotifier {
            http: super::answer::client(timeout)?,
            shown: inert::redact_url(&shown_url, false),
            url,
            token,
            chat_id: config.chat_id.clone(),
        })
    }

    /// Sends `event` once.
    pub async fn deliver(&self, event: &Event) -> Attempt {
        self.send(&message(event)).await
    }

    /// Sends one message of Telegram HTML.
    pub async fn send(&self, text: &str) -> Attempt {
        let body = json!({"chat_id": self.chat_id, "text": text, "parse_mode": "HTML",
                          "link_preview_options": {"is_disabled": true}});
        let sent = self.http.post(self.url.clone()).json(&body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return self.scrub(super::answer::unsent(&self.shown, e)),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered {
                status: Some(status.as_u16()),
            };
        }
        let text = inert::read_excerpt(response, 16 * 1024).await;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let retry_after = v
            .pointer("/parameters/retry_after")
            .and_then(Value::as_f64)
            .and_then(|s| inert::clamp_delay(s, Duration::ZERO, Duration::from_secs(3600)));
        let description = v["description"]
            .as_str()
            .map_or_else(|| inert::excerpt(&text, 200), |d| inert::excerpt(d, 200));
        let code = status.as_u16();
        self.scrub(Attempt::Failed {
            retryable: code == 429 || status.is_server_error(),
            status: Some(code),
            error: format!("POST {} answered HTTP {code}: {description}", self.shown),
            retry_after,
        })
    }

    /// The token out of any error.
    fn scrub(&self, a: Attempt) -> Attempt {
        a.without(self.token.expose(), "***")
    }
}
