//! What a batch alert says: the endpoint, the request counts and the share that failed, how long
//! it ran, when it expires while it runs, and its output and error files.

use crate::model::EventKind;
use serde_json::Value;

use super::text::{human, thousands_u as thousands, timestamp};
use super::{FactKind, Job, LEAD_QUOTE_CHARS, status_fact, truncate};
use crate::event::Event;

/// Whether the event is about a batch.
pub(super) fn is_batch(event: &Event) -> bool {
    event.kind().is_some_and(|k| k.is_batch())
}

/// `request_counts` as (completed, failed, total), each read whole whatever its size.
fn counts(job: &Job<'_>) -> Option<(u128, u128, u128)> {
    let c = job.get("request_counts")?;
    let n = |k: &str| c.get(k).and_then(crate::inert::count).unwrap_or(0);
    Some((n("completed"), n("failed"), n("total")))
}

fn percent(part: u128, total: u128) -> String {
    if total > 0 {
        format!("{:.1} %", part as f64 * 100.0 / total as f64)
    } else {
        "-".into()
    }
}

/// The first error message of a failed batch (`errors.data[0].message`).
fn first_error(job: &Job<'_>) -> Option<String> {
    let e = job.get("errors")?.get("data")?.get(0)?;
    let message = e.get("message").and_then(Value::as_str)?;
    Some(match e.get("code").and_then(Value::as_str) {
        Some(code) => format!("{code}: {message}"),
        None => message.to_string(),
    })
}

/// The opening sentence of a batch alert.
pub(super) fn lead(event: &Event) -> String {
    let shaped = super::shaped(event);
    let job = Job(shaped.as_deref());
    let id = event.subject();
    let requests = counts(&job).map(|(done, failed, total)| {
        format!(
            "{} of {} requests succeeded, {} failed ({})",
            thousands(done),
            thousands(total),
            thousands(failed),
            percent(failed, total)
        )
    });
    let prev = event
        .previous_status
        .as_deref()
        .map(|p| format!(" (was {p})"))
        .unwrap_or_default();
    use crate::model::job::{JobStatus as S, Kind};
    match event.kind() {
        Some(EventKind::Status(Kind::Batch, S::Completed)) => match requests {
            Some(r) => format!("Batch {id} completed: {r}."),
            None => format!("Batch {id} completed."),
        },
        Some(EventKind::PartiallyFailed) => format!(
            "Batch {id} completed, but more of its requests failed than the source allows \
             (batch_failed_ratio): {}.",
            requests.unwrap_or_else(|| "no request counts".into())
        ),
        Some(EventKind::Status(Kind::Batch, S::Failed)) => match first_error(&job) {
            Some(e) => format!("Batch {id} failed: {}", truncate(&e, LEAD_QUOTE_CHARS)),
            None => format!("Batch {id} failed; the API gave no error message."),
        },
        Some(EventKind::Status(Kind::Batch, S::Expired)) => format!(
            "Batch {id} expired before it finished{}.",
            requests.map(|r| format!(": {r}")).unwrap_or_default()
        ),
        Some(EventKind::Created(Kind::Batch)) => format!(
            "A new batch {id} was created ({}){}.",
            event.status.as_deref().unwrap_or("status unknown"),
            job.str("endpoint")
                .map(|e| format!(" for {e}"))
                .unwrap_or_default()
        ),
        Some(EventKind::Stalled(Kind::Batch)) => super::stalled_sentence("Batch", id, event),
        _ => format!(
            "Batch {id} is now {}{prev}.",
            event.status.as_deref().unwrap_or("in a new status")
        ),
    }
}

/// The facts of a batch alert, after the source.
pub(super) fn facts(event: &Event, out: &mut Vec<(FactKind, String)>) {
    let shaped = super::shaped(event);
    let job = Job(shaped.as_deref());
    out.push((FactKind::Batch, event.subject().to_string()));
    if let Some(status) = status_fact(event) {
        out.push((FactKind::Status, status));
    }
    if let Some(m) = job.str("model") {
        out.push((FactKind::Model, m.to_string()));
    }
    if let Some(e) = job.str("endpoint") {
        out.push((FactKind::Endpoint, e.to_string()));
    }
    let finished = event
        .status
        .as_deref()
        .is_some_and(|s| crate::source::job::TERMINAL.contains(&s));
    // While it runs: how far it is, from its counts or the share its provider gives.
    if !finished && let Some(p) = shaped.as_deref().and_then(crate::source::batches::progress) {
        out.push((FactKind::Progress, format!("{:.0} %", p * 100.0)));
    }
    if let Some((done, failed, total)) = counts(&job) {
        out.push((
            FactKind::Requests,
            format!(
                "{} total, {} completed, {} failed ({})",
                thousands(total),
                thousands(done),
                thousands(failed),
                percent(failed, total)
            ),
        ));
    }
    if let Some(e) = first_error(&job) {
        out.push((FactKind::Error, e));
    }
    if let Some(created) = job.int("created_at") {
        let end = [
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelled_at",
            "ended_at",
        ]
        .iter()
        .find_map(|k| job.int(k));
        let d = match end {
            Some(end) if end >= created => {
                format!("{} (ended {})", human(end - created), timestamp(end))
            }
            _ => format!(
                "{} so far (created {})",
                human(event.created_at - created),
                timestamp(created)
            ),
        };
        out.push((FactKind::Duration, d));
        if let (false, Some(expires)) = (finished, job.int("expires_at")) {
            out.push((FactKind::Expires, timestamp(expires)));
        }
    }
    if let Some(f) = job.str("completion_window") {
        out.push((FactKind::Window, f.to_string()));
    }
    for (key, kind) in [
        ("input_file_id", FactKind::InputFile),
        ("output_file_id", FactKind::OutputFile),
        ("error_file_id", FactKind::ErrorFile),
        ("input_uri", FactKind::Input),
        ("output_uri", FactKind::Output),
    ] {
        if let Some(f) = job.str(key) {
            out.push((kind, f.to_string()));
        }
    }
}
