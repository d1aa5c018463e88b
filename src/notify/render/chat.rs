//! Slack and Discord payloads, each within every documented limit of its API (totals
//! included), with mentions neutralised: an alert can never ping anyone.

use serde_json::{Value, json};

use super::text::{mrkdwn, truncate};
use super::{
    DISCORD_EMBED_TOTAL, FactKind, Outcome, facts, headline, lead, outcome, symbol, timestamp,
};
use crate::event::Event;

/// A Slack incoming-webhook payload: a text fallback and Block Kit blocks.
pub fn slack(event: &Event, link: Option<&str>) -> Value {
    let fields: Vec<Value> = facts(event, None)
        .into_iter()
        .filter(|f| !matches!(f.kind, FactKind::Source | FactKind::Job | FactKind::Batch))
        .take(20)
        .map(|f| {
            let v = truncate(&mrkdwn(&f.value), 1900);
            let v = if f.kind == FactKind::FineTunedModel {
                format!("`{v}`")
            } else {
                v
            };
            json!({"type": "mrkdwn", "text": format!("*{}*\n{v}", f.label())})
        })
        .collect();
    let mut context = truncate(&format!("{} · {}", mrkdwn(&event.source), event.id), 1000);
    if let Some(l) = link.filter(|l| l.len() <= 1000) {
        context = format!("<{}|Open in dashboard> · {context}", slack_url(l));
    }
    // Slack reads `&`, `<` and `>` in every text, plain_text included: every API string is
    // escaped, so none can become a link, a mention or a channel ping.
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text",
               "text": truncate(&mrkdwn(&format!("{} {}", symbol(outcome(event)), headline(event))), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&mrkdwn(&lead(event)), 3000)}}),
    ];
    // A section holds at most 10 fields: the facts take two sections at most.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({"text": truncate(&mrkdwn(&headline(event)), 3000), "blocks": blocks})
}

/// A URL inside Slack's `<URL|text>`: `&`, `<` and `>` escaped as Slack asks, and `|` (which
/// would end the URL and start the link's text) percent-encoded.
fn slack_url(url: &str) -> String {
    url.replace('&', "&amp;")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('|', "%7C")
}

/// A Discord webhook payload: one embed whose colour follows the outcome (no `content`, which
/// would only repeat the title).
pub fn discord(event: &Event, link: Option<&str>) -> Value {
    let colour = match outcome(event) {
        Outcome::Good => 0x2EB67D,
        Outcome::Bad => 0xE01E5A,
        Outcome::Neutral => 0x95A5A6,
        Outcome::Info => 0x3498DB,
    };
    let title = truncate(
        &format!("{} {}", symbol(outcome(event)), headline(event)),
        256,
    );
    let footer = format!("tunewatch · {}", event.id);
    let description = truncate(&lead(event), 2000);
    // Discord refuses a message whose embed texts add up to more than 6 000 characters: the
    // fields take what is left after the title, the description and the footer, in order.
    let mut budget = DISCORD_EMBED_TOTAL
        - title.chars().count()
        - footer.chars().count()
        - description.chars().count();
    let mut fields: Vec<Value> = Vec::new();
    for f in facts(event, None).into_iter().take(25) {
        let (k, v) = (f.label(), f.value);
        let name_len = k.chars().count();
        if budget <= name_len + 16 {
            break;
        }
        let inline = v.chars().count() <= 40;
        let room = (budget - name_len).min(1024) - 2;
        let v = truncate(&v, room);
        let v = if f.kind == FactKind::FineTunedModel {
            format!("`{v}`")
        } else {
            v
        };
        budget -= name_len + v.chars().count();
        fields.push(json!({"name": k, "value": v, "inline": inline}));
    }
    let mut embed = json!({
        "title": title,
        "description": description,
        "color": colour,
        "fields": fields,
        "footer": {"text": footer},
        "timestamp": timestamp(event.created_at),
    });
    if let Some(l) = link.filter(|l| l.len() <= 2000 && url::Url::parse(l).is_ok()) {
        embed["url"] = json!(l);
    }
    // No `content`: it would only repeat the embed's title above it.
    json!({"embeds": [embed],
           // Nothing in an alert may ping anyone: @everyone, @here, <@id> stay text.
           "allowed_mentions": {"parse": []}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every text of a Slack payload, where Slack would read markup.
    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            Value::Object(o) => o.values().for_each(|x| texts(x, out)),
            _ => {}
        }
    }

    #[test]
    fn no_api_string_becomes_a_slack_link_or_a_mention() {
        let evil = "<https://evil.example/login|Click to re-authenticate> <!channel> <@U1>";
        let raw = json!({"id": "ftjob-x|Click>", "object": "fine_tuning.job", "status": "failed",
                         "model": evil, "error": {"code": "bad", "message": evil, "param": evil}});
        let job = crate::source::Job::from_value(raw).unwrap();
        let draft = crate::pipeline::diff::EventDraft {
            kind: crate::model::EventKind::Status(
                crate::model::job::Kind::FineTuning,
                crate::model::job::JobStatus::Failed,
            ),
            previous_status: Some("running".into()),
        };
        let mut event = Event::for_job(draft, &format!("src{evil}"), &job, &[], 1_735_480_000);
        event.provider_status = Some(evil.into());
        let link = crate::notify::render::dashboard_url(
            &url::Url::parse("https://api.openai.com/v1").unwrap(),
            event.subject(),
        );
        let payload = slack(&event, link.as_deref());
        let mut all = Vec::new();
        texts(&payload, &mut all);
        for t in &all {
            // The only link is ours, to the dashboard, with the id escaped inside it.
            let links: Vec<&str> = t.match_indices('<').map(|(i, _)| &t[i..]).collect();
            for l in links {
                assert!(
                    l.starts_with("<https://platform.openai.com/finetune/ftjob-x%7CClick%3E|"),
                    "a link or mention from an API string: {l:?} in {t:?}"
                );
            }
        }
        assert!(
            all.iter()
                .any(|t| t.contains("&lt;https://evil.example/login|Click"))
        );
    }
}
