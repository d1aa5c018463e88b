//! Golden tests: the e-mail texts and the Slack and Discord payloads for a succeeded, a failed and
//! a cancelled job built from `tests/fixtures/openai/`. A change in wording shows up as a diff
//! of `tests/golden/`; regenerate with `UPDATE_GOLDEN=1 cargo test --test golden` and review it.

use crate::common;

use std::path::PathBuf;

use common::fixture;
use serde_json::Value;
use tunewatch::diff::diff;
use tunewatch::event::{Event, EventData};
use tunewatch::notify::render;

/// An event for `job` entering its status from `previous`, observed at a fixed time.
fn event(name: &str, job: Value, previous: &str) -> Event {
    let status = job["status"].as_str().unwrap().to_string();
    let mut before = job.clone();
    before["status"] = Value::String(previous.to_string());
    Event {
        id: format!("evt_golden_{name}"),
        object: "event".into(),
        event_type: format!("fine_tuning.job.{status}"),
        created_at: 1_735_480_000,
        data: EventData {
            id: job["id"].as_str().unwrap().to_string(),
        },
        source: "prod".into(),
        previous_status: Some(previous.into()),
        status: Some(status),
        provider: None,
        provider_status: None,
        changes: diff(&before, &job),
        job: Some(job),
        error: None,
        stalled_for: None,
        insight: None,
        loss_curve: Vec::new(),
        model: None,
        evaluation: None,
        reminder: None,
        digest: None,
    }
}

fn check(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run UPDATE_GOLDEN=1 cargo test --test golden",
            path.display()
        )
    });
    assert_eq!(actual, expected, "{file} differs from the golden copy");
}

fn render_all(name: &str, event: &Event, link: Option<&str>) {
    let email = format!(
        "Subject: {}\n\n{}",
        render::subject(event),
        render::email_text(event, link)
    );
    check(&format!("{name}.email.txt"), &email);
    check(
        &format!("{name}.email.html"),
        &render::email_html(event, link, false),
    );
    let pretty = |v: Value| serde_json::to_string_pretty(&v).unwrap() + "\n";
    check(
        &format!("{name}.slack.json"),
        &pretty(render::slack(event, link)),
    );
    check(
        &format!("{name}.discord.json"),
        &pretty(render::discord(event, link)),
    );
}

const LINK: &str = "https://platform.openai.com/finetune/";

#[test]
fn a_succeeded_job() {
    let e = event(
        "succeeded",
        fixture("ft_retrieve_job_succeeded.json"),
        "running",
    );
    render_all("succeeded", &e, Some(&format!("{LINK}{}", e.subject())));
}

#[test]
fn a_failed_job() {
    let e = event(
        "failed",
        fixture("ft_job_failed.derived.json"),
        "validating_files",
    );
    render_all("failed", &e, Some(&format!("{LINK}{}", e.subject())));
}

#[test]
fn a_cancelled_job() {
    let e = event(
        "cancelled",
        fixture("ft_cancel_job_cancelled.json"),
        "running",
    );
    render_all("cancelled", &e, None);
}

#[test]
fn the_webhook_json_body_is_the_event_itself() {
    let e = event(
        "succeeded",
        fixture("ft_retrieve_job_succeeded.json"),
        "running",
    );
    let body = render::webhook_body(&e, tunewatch::config::WebhookFormat::Json, None).unwrap();
    let back: Event = serde_json::from_slice(&body).unwrap();
    assert_eq!(back, e);
}
