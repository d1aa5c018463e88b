//! The demo's webhook receiver: it verifies every signature, prints each alert as a person
//! would want to read it, and answers the first attempt at the first failure alert with a 503 to
//! show a retry carrying the same `webhook-id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::event::Event;
use crate::notify::SigningKey;
use crate::store::unix_now;

/// A line cut to the terminal's width: the demo wraps nothing.
fn fit(line: &str) -> String {
    crate::cli::cut(line, crate::cli::terminal_width())
}

/// `job.succeeded` for `fine_tuning.job.succeeded`: the prefix says nothing here.
fn short_kind(event_type: &str) -> &str {
    event_type
        .strip_prefix("fine_tuning.")
        .unwrap_or(event_type)
}

/// What the receiver has seen.
#[derive(Default)]
pub(super) struct Seen {
    /// Distinct events accepted, in order.
    pub(super) accepted: Vec<String>,
    /// Attempts per webhook-id.
    pub(super) attempts: HashMap<String, u32>,
    pub(super) rejected_signatures: u32,
}

pub(super) struct Receiver {
    pub(super) key: SigningKey,
    pub(super) start: Instant,
    pub(super) seen: Mutex<Seen>,
}

/// The receiver: verify, print, answer. The first attempt at the first failure alert gets a 503.
pub(super) async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let t = r.start.elapsed().as_secs_f64();
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|ts| (unix_now() - ts).abs() <= 300);
    let valid = fresh && r.key.verify(id, ts.parse().unwrap_or(0), &body, sig);
    let mut seen = r.seen.lock().unwrap_or_else(|p| p.into_inner());
    if !valid {
        seen.rejected_signatures += 1;
        println!("{t:>6.1}s  ✗ rejected: bad signature for webhook-id {id}");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        println!("{t:>6.1}s  ✗ rejected: body is not an event");
        return StatusCode::BAD_REQUEST;
    };
    let attempt = {
        let n = seen.attempts.entry(id.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let failed = crate::model::EventKind::Status(
        crate::model::job::Kind::FineTuning,
        crate::model::job::JobStatus::Failed,
    );
    let first_failure =
        event.is(&failed) && !seen.accepted.iter().any(|e| e.starts_with(&failed.name()));
    if first_failure && attempt == 1 {
        println!(
            "{}",
            fit(&format!(
                "{t:>6.1}s  ⟳ the receiver answers 503 to {}; tunewatch retries with its id",
                short_kind(&event.event_type)
            ))
        );
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    seen.accepted.push(format!("{} {id}", event.event_type));
    let (change, shown) = heading(&event);
    let mut lines = vec![format!(
        "{t:>6.1}s  ✓ {:<15} {:<16} {change}",
        short_kind(&event.event_type),
        shown
    )];
    if attempt > 1 {
        lines.push(format!("          attempt {attempt}, same id {id}"));
    }
    // A model's alert is its sentence: when it retires and the job that made it.
    if event.model.is_some() || event.evaluation.is_some() {
        lines.extend(wrap(&crate::notify::render::lead(&event), 10));
    } else {
        lines.extend(job_lines(&event));
    }
    let line = lines.iter().map(|l| fit(l)).collect::<Vec<_>>().join("\n");
    println!("{line}");
    StatusCode::OK
}

/// What changed (a status move, or the status an insight is about) and the subject as shown: a
/// long resource name (an ARN) by its provider and last part.
fn heading(event: &Event) -> (String, String) {
    let change = match (&event.previous_status, &event.status) {
        // Insight events are about the training, not a status change.
        (_, Some(s))
            if event.insight.as_ref().is_some_and(|i| {
                i.mark.is_some() || i.overfitting.is_some() || i.diverging.is_some()
            }) =>
        {
            s.clone()
        }
        _ if event.evaluation.is_some() => event
            .evaluation
            .as_ref()
            .map(|e| match e.reason {
                Some(r) => format!("stopped: {r}"),
                None => e.verdict.words().to_string(),
            })
            .unwrap_or_default(),
        (Some(p), Some(s)) => format!("{p} → {s}"),
        (None, Some(s)) => format!("new, {s}"),
        _ => String::new(),
    };
    // A job's id may be a long resource name (an ARN): its provider and the last part say it.
    let subject = event.subject();
    let shown = match event.provider.as_deref() {
        Some(p) if subject.len() > 24 && p != "openai" => {
            format!("{p} …{}", subject.rsplit('/').next().unwrap_or(subject))
        }
        _ => subject.to_string(),
    };
    (change, shown)
}

/// The team chat (Slack's format): prints the message as it would read there.
pub(super) async fn chat(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let t = r.start.elapsed().as_secs_f64();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let title = v["text"].as_str().unwrap_or_default();
    let mut lines = vec![format!("{t:>6.1}s  💬 team chat: {title}")];
    let items = v
        .pointer("/blocks/1/text/text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    lines.extend(items.lines().map(|l| format!("            {l}")));
    println!(
        "{}",
        lines.iter().map(|l| fit(l)).collect::<Vec<_>>().join("\n")
    );
    StatusCode::OK
}

/// `text` in lines that fit the terminal, each indented by `indent` spaces (a word longer than
/// a line is cut by [`fit`]).
fn wrap(text: &str, indent: usize) -> Vec<String> {
    let width = crate::cli::terminal_width().saturating_sub(indent).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(format!("{:indent$}{line}", ""));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{:indent$}{line}", ""));
    }
    lines
}

/// The lines under a job's or batch's alert: model, error, training numbers, request counts,
/// the other fields that changed.
fn job_lines(event: &Event) -> Vec<String> {
    let mut lines = Vec::new();
    // Any provider's job read in OpenAI's field names.
    let shaped = event.job.as_ref().map(crate::source::view::openai_shape);
    let job = shaped.as_deref();
    if let Some(m) = job
        .and_then(|j| j.get("fine_tuned_model"))
        .and_then(Value::as_str)
    {
        lines.push(format!("          model {m}"));
    }
    if let Some(m) = job
        .and_then(|j| j.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        lines.push(format!("          error {m}"));
    }
    if let Some(i) = &event.insight {
        lines.extend(insight_lines(event, i));
    }
    if let Some(c) = job.and_then(|j| j.get("request_counts")) {
        let n = |k: &str| c.get(k).and_then(crate::inert::count).unwrap_or(0);
        let (total, failed) = (n("total"), n("failed"));
        let share = if total > 0 {
            format!("{:.1} %", failed as f64 * 100.0 / total as f64)
        } else {
            "-".into()
        };
        lines.push(format!(
            "          {} of {} requests done, {} failed ({share})",
            crate::notify::render::thousands_u(n("completed")),
            crate::notify::render::thousands_u(total),
            failed
        ));
        if let Some(f) = job
            .and_then(|j| j.get("output_file_id"))
            .and_then(Value::as_str)
        {
            lines.push(format!("          output {f}"));
        }
    }
    let fields: Vec<&str> = event
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .filter(|f| *f != "status")
        .collect();
    if !fields.is_empty() {
        lines.push(format!("          also changed: {}", fields.join(", ")));
    }
    lines
}

/// The training numbers under an alert: step, losses, cost, overfitting, divergence, the best
/// checkpoint.
fn insight_lines(event: &Event, i: &crate::model::insight::Insight) -> Vec<String> {
    let mut lines = Vec::new();
    use crate::notify::render::loss;
    let mut parts = Vec::new();
    if let (Some(s), Some(t), Some(p)) = (i.step, i.total_steps, i.progress) {
        parts.push(format!("step {s}/{t} ({:.0} %)", p * 100.0));
    }
    if let Some(l) = i.train_loss {
        parts.push(format!("train loss {}", loss(l)));
    }
    if let Some(l) = i.valid_loss {
        parts.push(format!("valid loss {}", loss(l)));
    }
    if !parts.is_empty() {
        lines.push(format!("          {}", parts.join(" · ")));
    }
    if let Some(c) = i.cost_usd {
        lines.push(match i.cost_estimated {
            Some(true) => format!("          cost about ${c:.2} (estimated from progress)"),
            _ => format!("          cost ${c:.2}"),
        });
    }
    if let Some(o) = &i.overfitting {
        lines.push(format!(
            "          ⚠ validation loss up from {} (step {}) to {} (step {})",
            loss(o.best_valid_loss),
            o.best_step,
            loss(o.valid_loss),
            o.step
        ));
    }
    if let Some(d) = &i.diverging {
        lines.push(format!("          ⚠ {}", d.reason));
    }
    if let Some(b) = &i.best_checkpoint
        && (i.overfitting.is_some()
            || event.is(&crate::model::EventKind::Status(
                crate::model::job::Kind::FineTuning,
                crate::model::job::JobStatus::Succeeded,
            )))
    {
        lines.push(format!("          best checkpoint, step {}:", b.step));
        lines.push(format!("            {}", b.model));
    }
    lines
}
