//! Microsoft Teams through a Workflows webhook (Office 365 connectors are retired): a message
//! whose one attachment is an Adaptive Card 1.4 — the headline, the lead sentence, the facts, a
//! dashboard button — valid against the card's schema plus Teams' `msteams` key, the whole body
//! under Teams' 28 KB. Every API string is escaped for the card's markdown, and `<at>` mentions
//! are broken, so no job string can format, link or ping.

use serde_json::{Value, json};

use super::group::Summary;
use super::text::truncate;
use super::{facts, headline, lead, outcome, symbol};
use crate::event::Event;

/// The largest body Teams takes (28 KB), with room for the envelope.
const BODY_LIMIT: usize = 27 * 1024;

/// Text for a TextBlock or a fact: the characters of the card's markdown that format (emphasis,
/// links, code) escaped everywhere, a list or heading marker escaped at a line's start, mentions
/// broken; ids stay readable (`ftjob-ok`).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        match c {
            '\\' | '*' | '_' | '[' | ']' | '`' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '#' | '>' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("<\u{200b}"),
            '@' => out.push_str("@\u{200b}"),
            '\n' => out.push('\n'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
        line_start = c == '\n' || (line_start && c == ' ');
    }
    out
}

fn message(card_body: Vec<Value>, actions: Vec<Value>) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": card_body,
        "msteams": {"width": "Full"},
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": null,
        "content": card,
    }]})
}

fn open_url(link: Option<&str>, title: &str) -> Vec<Value> {
    link.filter(|l| l.len() <= 2000 && url::Url::parse(l).is_ok())
        .map(|l| json!({"type": "Action.OpenUrl", "title": title, "url": l}))
        .into_iter()
        .collect()
}

/// One event as a Teams message.
pub fn teams(event: &Event, link: Option<&str>) -> Value {
    let title = json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
        "text": truncate(&text(&format!("{} {}", symbol(outcome(event)), headline(event))), 300)});
    let sentence =
        json!({"type": "TextBlock", "wrap": true, "text": truncate(&text(&lead(event)), 3000)});
    let mut shown: Vec<Value> = facts(event, None)
        .into_iter()
        .take(20)
        .map(|f| json!({"title": truncate(&text(f.label()), 100), "value": truncate(&text(&f.value), 1000)}))
        .collect();
    let actions = open_url(link, "Open in dashboard");
    // Facts give way first when the body would pass Teams' limit.
    loop {
        let body = vec![
            title.clone(),
            sentence.clone(),
            json!({"type": "FactSet", "facts": shown}),
        ];
        let m = message(body, actions.clone());
        if m.to_string().len() <= BODY_LIMIT || shown.is_empty() {
            return m;
        }
        shown.pop();
    }
}

/// A group as a Teams message: the title, one line per job, "+N more" with the page's link.
pub fn group(s: &Summary) -> Value {
    let mut lines = String::new();
    let mut shown = 0;
    for l in &s.lines {
        let line = format!("- {}\n", text(l));
        if lines.len() + line.len() > BODY_LIMIT - 4096 {
            break;
        }
        lines.push_str(&line);
        shown += 1;
    }
    let more = s.lines.len() - shown + s.more;
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": truncate(&text(&s.title), 300)}),
        json!({"type": "TextBlock", "wrap": true, "text": lines}),
    ];
    if more > 0 {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true, "text": format!("+{more} more")}));
    }
    message(body, open_url(s.link.as_deref(), "Open the status page"))
}
