//! Text helpers every format shares: escaping (HTML, Slack mrkdwn, mentions), cutting to a
//! limit, and the numbers and times people read.

use std::time::{Duration, UNIX_EPOCH};

/// "2h 14m", "45s": a duration in seconds, to the minute once past an hour.
pub fn human(secs: i64) -> String {
    let s = secs.max(0) as u64;
    let s = if s >= 3600 { s - s % 60 } else { s };
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// "5,768".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let out = group(&digits);
    if n < 0 { format!("-{out}") } else { out }
}

/// A count of any size from outside, "18,446,744,073,709,551,616".
pub fn thousands_u(n: u128) -> String {
    group(&n.to_string())
}

/// Digits with a comma every three from the right.
fn group(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// RFC 3339 for times humans can have meant (1970 to 9999); the raw number otherwise, because an
/// API may send anything and formatting must not fail.
pub fn timestamp(t: i64) -> String {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    if (0..=LAST_SECOND_OF_9999).contains(&t) {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t as u64)).to_string()
    } else {
        format!("unix time {t}")
    }
}

pub(super) fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped (which also turns `<!channel>` and `<@U1>`
/// into text); `@channel`, `@here` and `@everyone` get a zero-width space after the `@` so
/// that no setting of the receiving app can make them ping.
pub(super) fn mrkdwn(s: &str) -> String {
    no_mentions(
        &s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}

/// Mentions broken with a zero-width space, for text that is not escaped (Slack's plain_text).
pub(super) fn no_mentions(s: &str) -> String {
    s.replace("<!", "<\u{200b}!")
        .replace("<@", "<\u{200b}@")
        .replace("@channel", "@\u{200b}channel")
        .replace("@here", "@\u{200b}here")
        .replace("@everyone", "@\u{200b}everyone")
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else if max == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
