//! The e-mail bodies: a text/plain part and an text/html part saying the same thing.

use super::text::html;
use super::{FactKind, Outcome, facts, lead, outcome};
use crate::event::Event;
use crate::notify::render::timestamp;

/// The text/plain part of an e-mail.
pub fn email_text(event: &Event, link: Option<&str>) -> String {
    let facts = facts(event, link);
    let width = facts.iter().map(|f| f.label().len()).max().unwrap_or(0) + 1;
    let mut out = format!("{}\n\n", lead(event));
    for f in &facts {
        out.push_str(&format!(
            "{:<width$} {}\n",
            format!("{}:", f.label()),
            f.value
        ));
    }
    out.push('\n');
    out.push_str(&footer(event));
    out.push('\n');
    out
}

/// The text/html part of an e-mail: the same content as [`email_text`], as a small table.
pub fn email_html(event: &Event, link: Option<&str>) -> String {
    let colour = match outcome(event) {
        Outcome::Good => "#1a7f37",
        Outcome::Bad => "#cf222e",
        Outcome::Neutral => "#57606a",
        Outcome::Info => "#0969da",
    };
    let mut rows = String::new();
    for f in facts(event, link) {
        let value = match f.kind {
            FactKind::Dashboard => format!("<a href=\"{0}\">{0}</a>", html(&f.value)),
            FactKind::FineTunedModel => format!("<code>{}</code>", html(&f.value)),
            _ => html(&f.value),
        };
        rows.push_str(&format!(
            "<tr><th align=\"left\" style=\"padding:2px 12px 2px 0;color:#57606a\">{}</th>\
             <td style=\"padding:2px 0\">{value}</td></tr>\n",
            html(f.label())
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif;font-size:14px\">\n\
         <p style=\"font-size:16px;border-left:4px solid {colour};padding-left:8px\">{}</p>\n\
         <table>\n{rows}</table>\n<p style=\"color:#57606a;font-size:12px\">{}</p>\n</body></html>\n",
        html(&lead(event)),
        html(&footer(event))
    )
}

fn footer(event: &Event) -> String {
    format!(
        "Event {} ({}) observed by tunewatch at {}.",
        event.id,
        event.event_type,
        timestamp(event.created_at)
    )
}
