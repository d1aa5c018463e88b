//! Hostile input at the edge: the limits, redaction and escaping that every boundary applies to
//! what comes from outside (API bodies and headers, receiver answers, strings inside jobs), once,
//! here, so that the middle of the pipeline can trust what it holds.
//!
//! Nothing here does I/O except [`read_body`], which reads an HTTP body up to a limit.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use reqwest::Url;

/// The largest API page read (DESIGN.md: 32 MiB).
pub const API_BODY_LIMIT: usize = 32 << 20;
/// The most read of an error answer or a receiver's answer (DESIGN.md: 64 KiB).
pub const ERROR_BODY_LIMIT: usize = 64 << 10;
/// The characters of an outside message kept in an error, a log line or a stored row.
pub const EXCERPT_CHARS: usize = 300;
/// The characters of one outside string in a log field (ids, statuses).
pub const FIELD_CHARS: usize = 200;

/// `text` as one bounded line: whitespace runs folded to one space, control characters escaped,
/// cut at `max_chars` characters with `…`.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(2)));
    let mut chars = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
        }
        if chars >= max_chars {
            out.push('…');
            return out;
        }
        push_escaped(&mut out, c);
        chars += 1;
    }
    out
}

/// Control characters (newline, ESC, BEL, DEL, C1) written as `\n`, `\u{1b}`…, so that a string
/// from outside can neither forge a log line nor drive a terminal.
pub fn escape_control(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c => out.push(c),
    }
}

/// A string from outside, shown in a log field or a terminal: control characters escaped and at
/// most [`FIELD_CHARS`] characters.
pub struct Inert<'a>(pub &'a str);

impl fmt::Display for Inert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == FIELD_CHARS {
                return f.write_str("…");
            }
            if c.is_control() {
                let mut s = String::new();
                push_escaped(&mut s, c);
                f.write_str(&s)?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Inert<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// `text` with every occurrence of each secret replaced by `***` (secrets shorter than 4
/// characters are left: replacing them would garble the text and hide nothing).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().map(|s| s.trim()).filter(|s| s.len() >= 4) {
        if out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    out
}

/// Whether `url` is a chat webhook whose path is the credential (Slack, Discord).
pub fn is_chat_webhook(url: &Url) -> bool {
    match url.host_str() {
        Some("hooks.slack.com") => true,
        Some(h) if h == "discord.com" || h.ends_with(".discord.com") || h == "discordapp.com" => {
            url.path().starts_with("/api/webhooks/")
        }
        _ => false,
    }
}

/// A URL as it may be shown: `user:pass@` becomes `***@`, a query becomes `?***`, and when
/// `credential_path` is set (or the URL is a known chat webhook) the path after its first two
/// segments becomes `***` (`https://hooks.slack.com/services/T000/***`).
pub fn redact_url(url: &Url, credential_path: bool) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("***@");
    }
    if let Some(host) = url.host_str() {
        shown.push_str(host);
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if credential_path || is_chat_webhook(url) {
        let kept: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let keep = if kept.first() == Some(&"api") { 3 } else { 2 };
        for segment in kept.iter().take(keep) {
            shown.push('/');
            shown.push_str(segment);
        }
        if kept.len() > keep {
            shown.push_str("/***");
        }
    } else {
        shown.push_str(url.path());
    }
    if url.query().is_some() {
        shown.push_str("?***");
    }
    shown
}

/// Every URL found in `text` (`http://` or `https://` up to white space or a quote) redacted with
/// [`redact_url`]: for messages that embed a URL the program did not build, like a client error.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = [rest.find("http://"), rest.find("https://")]
        .into_iter()
        .flatten()
        .min()
    {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<'))
            .unwrap_or(tail.len());
        match Url::parse(&tail[..end]) {
            Ok(u) => out.push_str(&redact_url(&u, false)),
            Err(_) => out.push_str("***"),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A delay a server asked for (in seconds, possibly fractional or absurd) as a [`Duration`]
/// within `[min, max]`; `None` when it is not a finite non-negative number.
pub fn clamp_delay(seconds: f64, min: Duration, max: Duration) -> Option<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let d = Duration::try_from_secs_f64(seconds).unwrap_or(max);
    Some(d.clamp(min, max.max(min)))
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// The body is longer than the limit; reading stopped there.
    TooLarge { limit: usize },
    /// The connection broke while reading.
    Transport(reqwest::Error),
}

/// Reads a response body up to `limit` bytes. Over the limit it stops reading (the connection
/// is dropped) and returns [`BodyError::TooLarge`], so memory stays bounded whatever a server
/// sends.
///
/// # Errors
/// [`BodyError`] as above.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `limit` bytes of a body and returns them as (lossy) text, never failing: for
/// error answers, of which only an excerpt is kept anyway.
pub async fn read_excerpt(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// "32 MiB", "64 KiB": a limit as people say it.
/// A count from outside (requests, records, tokens): a whole number however it came — a JSON
/// integer of any size up to 2^128, a float that is a whole number, or a string of digits (as
/// Google sends int64) — else `None`. Never wrapped, never negative.
pub fn count(v: &serde_json::Value) -> Option<u128> {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_u64().map(u128::from).or_else(|| {
            let f = n.as_f64()?;
            (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 3.4e38).then_some(f as u128)
        }),
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty() && s.len() <= 38 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        }
        _ => None,
    }
}

pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_any_size_and_shape_are_read_whole_or_not_at_all() {
        use serde_json::json;
        assert_eq!(count(&json!(18)), Some(18));
        assert_eq!(count(&json!(u64::MAX)), Some(u128::from(u64::MAX)));
        assert_eq!(count(&json!(1e20)), Some(100_000_000_000_000_000_000));
        assert_eq!(count(&json!("9223372036854775808")), Some(1 << 63));
        assert_eq!(count(&json!(" 42 ")), Some(42));
        for bad in [
            json!(-1),
            json!(1.5),
            json!("NaN"),
            json!("-3"),
            json!(1e308),
            json!(null),
        ] {
            assert_eq!(count(&bad), None, "{bad}");
        }
    }

    #[test]
    fn excerpts_are_one_bounded_escaped_line() {
        assert_eq!(excerpt("  a\n\n b\tc  ", 10), "a b c");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("a\u{1b}[31mb", 20), "a\\u{1b}[31mb");
        let huge = "x".repeat(5 << 20);
        assert_eq!(
            excerpt(&huge, EXCERPT_CHARS).chars().count(),
            EXCERPT_CHARS + 1
        );
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_drive_terminals() {
        assert_eq!(escape_control("ok"), "ok");
        assert_eq!(
            escape_control("ftjob-1\nERROR forged\u{7}"),
            "ftjob-1\\nERROR forged\\u{7}"
        );
        assert_eq!(Inert("a\u{1b}b").to_string(), "a\\u{1b}b");
        assert_eq!(
            Inert(&"y".repeat(1000)).to_string().chars().count(),
            FIELD_CHARS + 1
        );
    }

    #[test]
    fn secrets_are_redacted_wherever_they_are_echoed() {
        assert_eq!(
            redact(
                "Incorrect API key provided: sk-live-123456. Find it",
                &["sk-live-123456"]
            ),
            "Incorrect API key provided: ***. Find it"
        );
        assert_eq!(redact("a b", &["", "a"]), "a b");
    }

    #[test]
    fn urls_lose_their_credentials() {
        let u = |s| Url::parse(s).unwrap();
        assert_eq!(
            redact_url(&u("https://user:pass@api.example.com/v1"), false),
            "https://***@api.example.com/v1"
        );
        assert_eq!(
            redact_url(
                &u("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
                false
            ),
            "https://hooks.slack.com/services/T000/***"
        );
        assert_eq!(
            redact_url(&u("https://discord.com/api/webhooks/123/tok-SECRET"), false),
            "https://discord.com/api/webhooks/123/***"
        );
        assert_eq!(
            redact_url(&u("http://127.0.0.1:9/hook?token=SECRET"), false),
            "http://127.0.0.1:9/hook?***"
        );
        assert_eq!(
            redact_url(&u("http://127.0.0.1:9/a/b/c"), true),
            "http://127.0.0.1:9/a/b/***"
        );
        assert_eq!(
            redact_urls_in("error sending request for url (https://u:p@x.example/v1/jobs?after=1)"),
            "error sending request for url (https://***@x.example/v1/jobs?***)"
        );
    }

    #[test]
    fn server_delays_are_clamped() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(120));
        assert_eq!(clamp_delay(1e20, min, max), Some(max));
        assert_eq!(clamp_delay(0.0, min, max), Some(min));
        assert_eq!(
            clamp_delay(2.5, min, max),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(clamp_delay(f64::NAN, min, max), None);
        assert_eq!(clamp_delay(-1.0, min, max), None);
        assert_eq!(clamp_delay(f64::INFINITY, min, max), None);
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size(API_BODY_LIMIT), "32 MiB");
        assert_eq!(size(ERROR_BODY_LIMIT), "64 KiB");
    }
}
