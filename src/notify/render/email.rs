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
    let curve = curve_text(event);
    if !curve.is_empty() {
        out.push_str(&curve);
        out.push('\n');
    }
    out.push_str(&footer(event));
    out.push('\n');
    out
}

/// The `Content-ID` of the loss chart beside the HTML part.
pub const CHART_CID: &str = "loss-chart@tunewatch";

/// Points of the loss curve listed in the text part, at most.
const TEXT_CURVE_POINTS: usize = 12;

/// The loss curve in numbers, for the text part: a few evenly spaced points, the last included.
fn curve_text(event: &Event) -> String {
    let c = &event.loss_curve;
    if c.is_empty() {
        return String::new();
    }
    let keep = c.len().min(TEXT_CURVE_POINTS);
    let mut out = String::from("Loss by step:\n");
    out.push_str(&format!(
        "  {:>12}  {:>9}  {:>10}\n",
        "step", "training", "validation"
    ));
    let mut last = None;
    for i in 0..keep {
        let idx = if keep == 1 {
            c.len() - 1
        } else {
            i * (c.len() - 1) / (keep - 1)
        };
        if last == Some(idx) {
            continue;
        }
        last = Some(idx);
        let (step, t, v) = c[idx];
        let f = |x: Option<f64>| x.map_or_else(|| "-".to_string(), super::insight::loss);
        out.push_str(&format!("  {step:>12}  {:>9}  {:>10}\n", f(t), f(v)));
    }
    out
}

/// The text/html part of an e-mail: the same content as [`email_text`], as a small table, with
/// the loss chart (by `cid:`) when `chart` is attached beside it.
pub fn email_html(event: &Event, link: Option<&str>, chart: bool) -> String {
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
    let chart = if chart {
        format!(
            "<p><img src=\"cid:{CHART_CID}\" width=\"600\" style=\"max-width:100%;height:auto\" \
             alt=\"Training and validation loss against step\"></p>\n"
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif;font-size:14px\">\n\
         <p style=\"font-size:16px;border-left:4px solid {colour};padding-left:8px\">{}</p>\n\
         <table>\n{rows}</table>\n{chart}<p style=\"color:#57606a;font-size:12px\">{}</p>\n</body></html>\n",
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
