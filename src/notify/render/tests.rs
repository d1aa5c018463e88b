use super::text::html;
use super::*;
use serde_json::json;

/// The facts as (label, value) pairs, as people read them.
fn pairs(facts: Vec<Fact>) -> Vec<(&'static str, String)> {
    facts.into_iter().map(|f| (f.label(), f.value)).collect()
}
use crate::event::EventData;

fn event(event_type: &str, job: Value) -> Event {
    Event {
        id: "evt_1".into(),
        object: "event".into(),
        event_type: event_type.into(),
        created_at: 1_735_480_000,
        data: EventData {
            id: "ftjob-1".into(),
        },
        source: "prod".into(),
        previous_status: Some("running".into()),
        status: job["status"].as_str().map(str::to_string),
        provider: None,
        provider_status: None,
        changes: vec![],
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

#[test]
fn subject_names_source_job_status_and_the_best_model() {
    let e = event(
        "fine_tuning.job.succeeded",
        json!({"status": "succeeded", "model": "gpt-4o-mini", "fine_tuned_model": "ft:x"}),
    );
    assert_eq!(subject(&e), "[tunewatch] prod: ftjob-1 succeeded — ft:x");
    let e = event(
        "fine_tuning.job.failed",
        json!({"status": "failed", "model": "gpt-4o-mini"}),
    );
    assert_eq!(
        subject(&e),
        "[tunewatch] prod: ftjob-1 failed — gpt-4o-mini"
    );
}

#[test]
fn created_stalled_and_source_events_have_their_own_wording() {
    let mut e = event(
        "fine_tuning.job.created",
        json!({"status": "validating_files"}),
    );
    e.previous_status = None;
    assert_eq!(
        lead(&e),
        "A new fine-tuning job ftjob-1 was created (validating_files)."
    );
    let mut e = event("fine_tuning.job.stalled", json!({"status": "queued"}));
    e.stalled_for = Some(6 * 3600 + 120);
    assert_eq!(
        lead(&e),
        "Fine-tuning job ftjob-1 has stayed queued without a status change for 6h 2m."
    );
    let mut e = event("tunewatch.source.failing", json!({}));
    e.job = None;
    e.data.id = "prod".into();
    e.error = Some("GET … answered HTTP 401".into());
    assert_eq!(subject(&e), "[tunewatch] prod: source failing");
    assert_eq!(
        lead(&e),
        "tunewatch cannot poll source prod: GET … answered HTTP 401"
    );
    assert_eq!(
        pairs(facts(&e, None))[1],
        ("Last error", "GET … answered HTTP 401".into())
    );
    e.event_type = "tunewatch.source.recovered".into();
    assert_eq!(subject(&e), "[tunewatch] prod: source recovered");
    assert_eq!(lead(&e), "Polling source prod works again.");
    let e = event("fine_tuning.job.paused", json!({"status": "paused"}));
    assert_eq!(
        lead(&e),
        "Fine-tuning job ftjob-1 is now paused (was running)."
    );
}

#[test]
fn colours_follow_the_outcome() {
    let colour = |t: &str| discord(&event(t, json!({})), None)["embeds"][0]["color"].clone();
    assert_eq!(colour("fine_tuning.job.succeeded"), json!(0x2EB67D));
    assert_eq!(colour("fine_tuning.job.failed"), json!(0xE01E5A));
    assert_eq!(colour("fine_tuning.job.cancelled"), json!(0x95A5A6));
    assert_eq!(colour("fine_tuning.job.running"), json!(0x3498DB));
}

#[test]
fn hyperparameters_fall_back_to_the_method() {
    let e = event(
        "fine_tuning.job.running",
        json!({"status": "running", "hyperparameters": null,
               "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}}),
    );
    let f = pairs(facts(&e, None));
    assert!(f.contains(&("Hyperparameters", "beta=0.1".into())), "{f:?}");
    assert!(f.contains(&("Method", "dpo".into())));
}

#[test]
fn durations_run_to_finish_or_to_now() {
    let mut j = json!({"status": "running", "created_at": 1_735_480_000 - 3_725});
    let e = event("fine_tuning.job.running", j.clone());
    let d = pairs(facts(&e, None))
        .into_iter()
        .find(|f| f.0 == "Duration")
        .unwrap()
        .1;
    assert!(d.starts_with("1h 2m so far"), "{d}");
    j["finished_at"] = json!(1_735_480_000 - 3_725 + 90);
    let e = event("fine_tuning.job.succeeded", j);
    let d = pairs(facts(&e, None))
        .into_iter()
        .find(|f| f.0 == "Duration")
        .unwrap()
        .1;
    assert!(d.starts_with("1m 30s (finished"), "{d}");
}

#[test]
fn numbers_and_markup_are_made_safe_and_readable() {
    assert_eq!(thousands(5768), "5,768");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(999), "999");
    assert_eq!(html("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    assert_eq!(truncate("abcdef", 4), "abc…");
}

#[test]
fn absurd_times_are_shown_raw_instead_of_failing() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(timestamp(-5), "unix time -5");
    assert_eq!(timestamp(i64::MAX), format!("unix time {}", i64::MAX));
    assert!(!human(i64::MAX).is_empty());
}

#[test]
fn a_failed_batch_says_its_error_counts_endpoint_and_files() {
    let mut raw: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/openai/batch_object_completed.derived.json"
    ))
    .unwrap();
    raw["id"] = json!("batch_f");
    raw["endpoint"] = json!("/v1/completions");
    raw["status"] = json!("failed");
    raw["completed_at"] = Value::Null;
    raw["failed_at"] = json!(1711471600);
    raw["errors"] = json!({"object": "list", "data": [{"code": "invalid_json_line",
        "message": "Line 3 is not valid JSON.", "param": null, "line": 3}]});
    let mut e = event("batch.failed", raw);
    e.data.id = "batch_f".into();
    e.previous_status = Some("in_progress".into());
    let text = email_text(&e, None);
    for line in [
        "Batch batch_f failed: invalid_json_line: Line 3 is not valid JSON.",
        "Batch:             batch_f",
        "Status:            failed (was in_progress)",
        "Endpoint:          /v1/completions",
        "Requests:          100 total, 95 completed, 5 failed (5.0 %)",
        "Error:             invalid_json_line: Line 3 is not valid JSON.",
        "Duration:          1m 7s (ended 2024-03-26T16:46:40Z)",
        "Completion window: 24h",
        "Input file:        file-abc123",
        "Output file:       file-cvaTdG",
        "Error file:        file-HOWS94",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert_eq!(
        subject(&e),
        "[tunewatch] prod: batch_f failed — gpt-5-2025-08-07"
    );
    assert_eq!(outcome(&e), Outcome::Bad);
}

#[test]
fn the_dashboard_link_is_only_for_openai() {
    let openai = url::Url::parse("https://api.openai.com/v1").unwrap();
    let other = url::Url::parse("http://127.0.0.1:8080/v1").unwrap();
    assert_eq!(
        dashboard_url(&openai, "ftjob-1").as_deref(),
        Some("https://platform.openai.com/finetune/ftjob-1")
    );
    assert_eq!(dashboard_url(&other, "ftjob-1"), None);
}
