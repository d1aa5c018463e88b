//! One message for many events (DESIGN.md, "Fewer, better alerts"): a title that counts
//! ("12 fine-tuning jobs succeeded on prod (3 failed)"), one line per job with its events
//! collapsed ("queued → running → succeeded"), "+N more" and a link past `max_items`, and for a
//! release of quiet hours "While you were away (nights)". Rendered for e-mail, Slack and Discord
//! within each one's limits, every API string escaped for its channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::text::{html, mrkdwn, no_mentions, truncate};
use crate::config::WebhookFormat;
use crate::event::Event;
use crate::model::EventKind;

/// What a group message says, before it is rendered for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub title: String,
    pub lines: Vec<String>,
    /// Jobs not listed.
    pub more: usize,
    /// The status page, for the rest.
    pub link: Option<String>,
}

/// A group message as sent: stored when the group is first sent, so every retry sends it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rendered {
    Email {
        subject: String,
        text: String,
        html: String,
    },
    Http {
        body: String,
    },
    /// A chat's text (Telegram's HTML).
    Text {
        text: String,
    },
}

/// The noun of what the events are about.
fn noun(kind: Option<&EventKind>, n: usize) -> &'static str {
    match (kind, n == 1) {
        (Some(k), true) if k.is_batch() => "batch",
        (Some(k), false) if k.is_batch() => "batches",
        (Some(k), true) if k.is_model() => "model",
        (Some(k), false) if k.is_model() => "models",
        (Some(k), _) if k.is_source() || k.is_notifier() => "alerts",
        (_, true) => "fine-tuning job",
        (_, false) => "fine-tuning jobs",
    }
}

/// The summary of `events` (oldest first).
pub fn summarize(
    events: &[Event],
    max_items: u32,
    away: Option<&str>,
    page: Option<&str>,
) -> Summary {
    // One line per (source, subject), in order of first appearance; its events collapsed.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut steps: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in events {
        let key = (e.source.clone(), e.subject().to_string());
        if !steps.contains_key(&key) {
            order.push(key.clone());
        }
        let word = e.kind().map_or_else(|| e.event_type.clone(), |k| k.short());
        let list = steps.entry(key.clone()).or_default();
        if list.last() != Some(&word) {
            list.push(word.clone());
        }
        last.insert(key, word);
    }
    let sources: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.source.as_str()).collect();
    let title = title(events, &last, order.len(), &sources, away);
    let shown = (max_items as usize).min(order.len());
    let lines = order[..shown]
        .iter()
        .map(|key| {
            let (source, subject) = key;
            let prefix = if sources.len() > 1 {
                format!("{source} · ")
            } else {
                String::new()
            };
            format!(
                "{prefix}{}: {}",
                truncate(subject, 120),
                steps[key].join(" → ")
            )
        })
        .collect();
    Summary {
        title: truncate(&title, 240),
        lines,
        more: order.len() - shown,
        link: page.map(str::to_string),
    }
}

/// "22 of 25 fine-tuning jobs succeeded on prod (3 failed)": counted by each job's last event.
fn title(
    events: &[Event],
    last: &BTreeMap<(String, String), String>,
    jobs: usize,
    sources: &std::collections::BTreeSet<&str>,
    away: Option<&str>,
) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for w in last.values() {
        *counts.entry(w.as_str()).or_default() += 1;
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let place = match sources.len() {
        1 => format!("on {}", sources.iter().next().copied().unwrap_or_default()),
        n => format!("on {n} sources"),
    };
    let kind = events.first().and_then(Event::kind);
    let mut title = match by_count.first() {
        Some((word, _)) => format!("{jobs} {} {word} {place}", noun(kind.as_ref(), jobs)),
        None => format!("{jobs} alerts {place}"),
    };
    if by_count.len() > 1 {
        let rest: Vec<String> = by_count[1..]
            .iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        title.push_str(&format!(" ({})", rest.join(", ")));
        // "12 … succeeded" would be false when some did not: the count is of all of them.
        if let Some((word, n)) = by_count.first() {
            title = title.replacen(
                &format!("{jobs} {} {word}", noun(kind.as_ref(), jobs)),
                &format!("{n} of {jobs} {} {word}", noun(kind.as_ref(), jobs)),
                1,
            );
        }
    }
    if let Some(window) = away {
        title = format!("While you were away ({window}): {title}");
    }
    title
}

/// `s` rendered for a webhook of `format` (Slack or Discord; JSON webhooks are never grouped).
pub fn chat(s: &Summary, format: WebhookFormat) -> Rendered {
    // Lines that do not fit the channel's limit count as more, like the ones past max_items.
    let fits = |budget: usize, escape: &dyn Fn(&str) -> String| {
        let (mut text, mut shown) = (String::new(), 0);
        for l in &s.lines {
            let line = format!("• {}\n", escape(l));
            if text.chars().count() + line.chars().count() > budget {
                break;
            }
            text.push_str(&line);
            shown += 1;
        }
        (text, s.lines.len() - shown + s.more)
    };
    let more_of = |n: usize| match (n, &s.link) {
        (0, _) => String::new(),
        (n, Some(l)) => format!("+{n} more: {l}"),
        (n, None) => format!("+{n} more"),
    };
    let body = match format {
        WebhookFormat::Teams => super::teams::group(s),
        WebhookFormat::Discord => {
            let (mut text, n) = fits(3800, &no_mentions);
            text.push_str(&more_of(n));
            json!({"embeds": [{"title": truncate(&no_mentions(&s.title), 256),
                               "description": truncate(&text, 4096)}],
                   "allowed_mentions": {"parse": []}})
        }
        _ => {
            let (text, n) = fits(2800, &mrkdwn);
            let more = more_of(n);
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&mrkdwn(&s.title), 150)}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}}),
            ];
            if !more.is_empty() {
                blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&mrkdwn(&more), 2000)}]}));
            }
            json!({"text": truncate(&mrkdwn(&s.title), 3000), "blocks": blocks})
        }
    };
    Rendered::Http {
        body: body.to_string(),
    }
}

/// `s` as an e-mail.
pub fn email(s: &Summary) -> Rendered {
    let mut text = format!("{}\n\n", s.title);
    let mut items = String::new();
    for l in &s.lines {
        text.push_str(&format!("  {l}\n"));
        items.push_str(&format!("<li>{}</li>", html(l)));
    }
    let more = match (s.more, &s.link) {
        (0, _) => String::new(),
        (n, Some(l)) => format!("+{n} more: {l}"),
        (n, None) => format!("+{n} more"),
    };
    if !more.is_empty() {
        text.push_str(&format!("  {more}\n"));
    }
    text.push_str("\n-- \ntunewatch\n");
    let html_body = format!(
        "<!DOCTYPE html><html><body><h2>{}</h2><ul>{items}</ul><p>{}</p></body></html>",
        html(&s.title),
        html(&more)
    );
    Rendered::Email {
        subject: s.title.replace(['\r', '\n'], " "),
        text,
        html: html_body,
    }
}

/// A digest in words: "Digest daily, since 2026-12-05 09:00 UTC: 12 succeeded, 3 failed;
/// 4 running; 1 stalled; cost $12.30; best validation loss 0.4123; 2 models retire within 30
/// days; 1 evaluation (1 improved); 0 dead deliveries."
pub fn digest_sentence(name: &str, d: &serde_json::Value) -> String {
    let since = d["since"]
        .as_i64()
        .map_or_else(String::new, |t| format!(", since {}", super::timestamp(t)));
    let mut parts = Vec::new();
    let finished: Vec<String> = d["finished"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let word = crate::model::EventKind::parse(k).map_or(k.clone(), |k| k.short());
                    format!("{} {word}", v.as_u64().unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default();
    parts.push(if finished.is_empty() {
        "nothing finished".to_string()
    } else {
        finished.join(", ")
    });
    let count = |k: &str| d[k].as_array().map_or(0, Vec::len);
    parts.push(format!("{} running", count("running")));
    parts.push(format!("{} stalled", count("stalled")));
    if let Some(c) = d["cost_usd"].as_f64().filter(|c| *c > 0.0) {
        parts.push(format!("cost ${c:.2}"));
    }
    if let Some(l) = d["best_valid_loss"].as_f64() {
        parts.push(format!("best validation loss {}", super::loss(l)));
    }
    parts.push(format!(
        "{} models retire within 30 days",
        d["models_retiring_30d"].as_i64().unwrap_or(0)
    ));
    let evaluations = d["evaluations"].as_array().map_or(0, Vec::len);
    if evaluations > 0 {
        let improved = d["evaluations"].as_array().map_or(0, |a| {
            a.iter().filter(|e| e["verdict"] == "improved").count()
        });
        parts.push(format!("{evaluations} evaluations ({improved} improved)"));
    }
    parts.push(format!(
        "{} dead deliveries",
        d["dead_deliveries"].as_i64().unwrap_or(0)
    ));
    format!("Digest {name}{since}: {}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::sample_event;

    fn ev(job: &str, kind: &str) -> Event {
        let mut e = sample_event(1_733_000_000);
        e.data.id = job.to_string();
        e.event_type = kind.to_string();
        e.source = "prod".into();
        e
    }

    #[test]
    fn a_sweep_is_counted_collapsed_and_cut_with_more() {
        let mut events = Vec::new();
        for i in 0..25 {
            let j = format!("ftjob-{i:02}");
            events.push(ev(&j, "fine_tuning.job.running"));
            let end = if i < 3 { "failed" } else { "succeeded" };
            events.push(ev(&j, &format!("fine_tuning.job.{end}")));
        }
        let s = summarize(&events, 20, None, Some("http://127.0.0.1:9187/"));
        assert_eq!(
            s.title,
            "22 of 25 fine-tuning jobs succeeded on prod (3 failed)"
        );
        assert_eq!(s.lines.len(), 20);
        assert_eq!(s.lines[0], "ftjob-00: running → failed");
        assert_eq!(s.more, 5);
        let Rendered::Http { body } = chat(&s, WebhookFormat::Slack) else {
            panic!()
        };
        assert!(body.contains("+5 more: http://127.0.0.1:9187/"));
        let away = summarize(&events[..2], 20, Some("nights"), None);
        assert!(
            away.title
                .starts_with("While you were away (nights): 1 fine-tuning job")
        );
    }

    #[test]
    fn hostile_subjects_stay_text_in_every_channel() {
        let events = vec![ev(
            "<https://evil|Click> @everyone",
            "fine_tuning.job.failed",
        )];
        let s = summarize(&events, 20, None, None);
        let Rendered::Http { body } = chat(&s, WebhookFormat::Slack) else {
            panic!()
        };
        assert!(
            !body.contains("<https://evil") && !body.contains("@everyone"),
            "{body}"
        );
        let Rendered::Http { body } = chat(&s, WebhookFormat::Discord) else {
            panic!()
        };
        assert!(!body.contains("@everyone"), "{body}");
        let Rendered::Email { html, .. } = email(&s) else {
            panic!()
        };
        assert!(!html.contains("<https"), "{html}");
    }

    #[test]
    fn every_format_keeps_its_limits_on_extreme_input() {
        let long = "x".repeat(100_000);
        let events: Vec<Event> = (0..1000)
            .map(|i| ev(&format!("{long}{i}"), "fine_tuning.job.succeeded"))
            .collect();
        let s = summarize(&events, 1000, Some(&long), Some("http://127.0.0.1:9187/"));
        assert!(s.title.chars().count() <= 240);
        let count = |v: &serde_json::Value| v.as_str().map_or(0, |t| t.chars().count());
        let Rendered::Http { body } = chat(&s, WebhookFormat::Slack) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(count(&v["text"]) <= 3000);
        assert!(count(&v["blocks"][0]["text"]["text"]) <= 150);
        assert!(count(&v["blocks"][1]["text"]["text"]) <= 3000);
        assert!(v["blocks"].as_array().unwrap().len() <= 50);
        let Rendered::Http { body } = chat(&s, WebhookFormat::Discord) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(count(&v["embeds"][0]["title"]) <= 256);
        assert!(count(&v["embeds"][0]["description"]) <= 4096);
        let Rendered::Email { subject, text, .. } = email(&s) else {
            panic!()
        };
        assert!(!subject.contains('\n') && subject.chars().count() <= 240);
        assert!(text.contains("ftjob") || text.contains("xxx"));
    }
}
