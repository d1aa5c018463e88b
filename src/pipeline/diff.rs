//! Pure functions that decide: what changed between two snapshots of a job ([`diff`]) and which
//! events that makes ([`classify`]). No I/O, no clock, no randomness; the store calls these inside
//! its transaction.

use serde_json::Value;

use crate::source::JobStatus;
use crate::source::job::Kind;

pub use crate::model::Change;

/// The field-level differences from `prev` to `next`, `status` first, then by path.
///
/// Objects are compared key by key, recursively; arrays and scalars are compared whole. A key that
/// is absent on one side counts as `null`, so the API starting to send `"usage_metrics": null` is
/// no change; `null` against an object counts as `{}`.
pub fn diff(prev: &Value, next: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", prev, next, &mut out);
    out.sort_by(|a, b| (a.field != "status", &a.field).cmp(&(b.field != "status", &b.field)));
    out
}

fn walk(path: &str, prev: &Value, next: &Value, out: &mut Vec<Change>) {
    // `null` (or absent) against an object compares as an empty object, so `error: null` becoming
    // `{code, message}` reports `error.code` and `error.message`.
    let empty = Value::Object(Default::default());
    let (prev, next) = match (prev, next) {
        (Value::Null, Value::Object(_)) => (&empty, next),
        (Value::Object(_), Value::Null) => (prev, &empty),
        _ => (prev, next),
    };
    match (prev, next) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = join(path, key);
                let a = a.get(key).unwrap_or(&Value::Null);
                let b = b.get(key).unwrap_or(&Value::Null);
                walk(&sub, a, b, out);
            }
        }
        (a, b) if a != b => out.push(Change {
            field: path.to_string(),
            from: a.clone(),
            to: b.clone(),
        }),
        _ => {}
    }
}

/// `path.key`, or `path["odd.key"]` for a key that is empty or holds `.`, `[`, `]` or `"`, so that
/// every field has exactly one path (`{"a.b": 1}` and `{"a": {"b": 1}}` must not collide).
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && !key.contains(['.', '[', ']', '"']);
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::from(key)),
    }
}

pub use crate::model::EventDraft;
use crate::model::EventKind;

/// The event for a job (or batch) entering `status`: `fine_tuning.job.<status>`,
/// `batch.<status>`.
pub fn status_event_type(kind: Kind, status: &JobStatus) -> String {
    EventKind::status(kind, status).name()
}

/// `batch.partially_failed`, beside `batch.completed`, when more than `ratio` of a completed
/// batch's requests failed (`request_counts.failed / request_counts.total`).
pub fn partially_failed(raw: &Value, ratio: f64) -> Option<EventDraft> {
    // Every provider's counts, in OpenAI's fields (Anthropic's failed = errored + expired).
    let shaped = crate::source::view::openai_shape(raw);
    let counts = shaped.get("request_counts")?;
    let n = |k: &str| {
        counts
            .get(k)
            .and_then(crate::inert::count)
            .map(|c| c as f64)
    };
    let (failed, total) = (n("failed")?, n("total")?);
    (total > 0.0 && failed / total > ratio).then_some(EventDraft {
        kind: EventKind::PartiallyFailed,
        previous_status: None,
    })
}

/// The events a new observation of a job raises.
///
/// * `baseline`: the source's first completed poll — nothing is raised, whatever is seen.
/// * A job not seen before: one event — the status event when it is already finished (say it
///   failed validation between two polls: one "failed" alert, not "created" and "failed"), with
///   no previous status; else `fine_tuning.job.created`, which carries the status it is in.
/// * A known job whose status differs: one `fine_tuning.job.<status>` event for the status entered,
///   with `previous_status`, however many statuses it went through between two polls.
/// * Anything else (same status, other fields changed): no event; the snapshot is still stored.
pub fn classify(
    kind: Kind,
    prev: Option<&JobStatus>,
    next: &JobStatus,
    baseline: bool,
) -> Vec<EventDraft> {
    match prev {
        _ if baseline => Vec::new(),
        // A job seen for the first time raises one event: the outcome when it is already
        // finished (a "created" beside a "failed" would be two alerts for one fact), else
        // `created`, which carries the status it was found in.
        None if next.is_terminal() => vec![EventDraft {
            kind: EventKind::status(kind, next),
            previous_status: None,
        }],
        None => vec![EventDraft {
            kind: EventKind::Created(kind),
            previous_status: None,
        }],
        Some(p) if p != next => vec![EventDraft {
            kind: EventKind::status(kind, next),
            previous_status: Some(p.as_str().to_string()),
        }],
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(x: &str) -> JobStatus {
        JobStatus::parse(x)
    }

    #[test]
    fn diff_of_equal_values_is_empty() {
        let v = json!({"id": "j", "status": "running", "hyperparameters": {"n_epochs": 3}});
        assert!(diff(&v, &v.clone()).is_empty());
    }

    #[test]
    fn diff_reports_nested_fields_by_path_with_status_first() {
        let a = json!({"status": "running", "fine_tuned_model": null, "trained_tokens": null,
                       "hyperparameters": {"n_epochs": "auto", "batch_size": 1}});
        let b = json!({"status": "succeeded", "fine_tuned_model": "ft:x", "trained_tokens": 5768,
                       "hyperparameters": {"n_epochs": 4, "batch_size": 1}});
        let d = diff(&a, &b);
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "status",
                "fine_tuned_model",
                "hyperparameters.n_epochs",
                "trained_tokens"
            ]
        );
        assert_eq!(d[0].from, json!("running"));
        assert_eq!(d[0].to, json!("succeeded"));
        assert_eq!(d[2].from, json!("auto"));
        assert_eq!(d[2].to, json!(4));
    }

    #[test]
    fn absent_and_null_are_the_same_but_new_values_are_changes() {
        let a = json!({"id": "j"});
        assert!(diff(&a, &json!({"id": "j", "usage_metrics": null})).is_empty());
        let d = diff(&a, &json!({"id": "j", "usage_metrics": {"tokens": 3}}));
        assert_eq!(
            d,
            vec![Change {
                field: "usage_metrics.tokens".into(),
                from: Value::Null,
                to: json!(3)
            }]
        );
    }

    #[test]
    fn odd_keys_get_bracketed_paths_that_cannot_collide() {
        let d = diff(
            &json!({}),
            &json!({"metadata": {"team.name": "x", "": 1, "team": {"name": "y"}}}),
        );
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.team.name",
                "metadata[\"\"]",
                "metadata[\"team.name\"]"
            ]
        );
    }

    #[test]
    fn arrays_and_type_changes_compare_whole() {
        let d = diff(
            &json!({"result_files": [], "error": null}),
            &json!({"result_files": ["file-1"], "error": {"code": "x"}}),
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].field, "error.code");
        assert_eq!(d[1].field, "result_files");
        assert_eq!(d[1].to, json!(["file-1"]));
    }

    #[test]
    fn the_baseline_is_silent() {
        assert!(classify(Kind::FineTuning, None, &s("succeeded"), true).is_empty());
        assert!(classify(Kind::FineTuning, Some(&s("queued")), &s("running"), true).is_empty());
    }

    #[test]
    fn a_new_job_raises_one_event_created_or_its_outcome() {
        let e = classify(Kind::FineTuning, None, &s("validating_files"), false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind.name(), "fine_tuning.job.created");
        assert_eq!(
            classify(Kind::FineTuning, None, &s("queued"), false).len(),
            1
        );
        let e = classify(Kind::FineTuning, None, &s("running"), false);
        let types: Vec<String> = e.iter().map(|e| e.kind.name()).collect();
        assert_eq!(types, ["fine_tuning.job.created"]);
        let e = classify(Kind::FineTuning, None, &s("failed"), false);
        let types: Vec<String> = e.iter().map(|e| e.kind.name()).collect();
        assert_eq!(
            types,
            ["fine_tuning.job.failed"],
            "one alert for a job first seen failed"
        );
        assert_eq!(e[0].previous_status, None);
    }

    #[test]
    fn entering_a_status_raises_one_event_with_the_previous_one() {
        let e = classify(Kind::FineTuning, Some(&s("queued")), &s("succeeded"), false);
        assert_eq!(
            e,
            vec![EventDraft {
                kind: EventKind::Status(Kind::FineTuning, JobStatus::Succeeded),
                previous_status: Some("queued".into()),
            }]
        );
        let e = classify(Kind::FineTuning, Some(&s("running")), &s("paused"), false);
        assert_eq!(e[0].kind.name(), "fine_tuning.job.paused");
        let e = classify(
            Kind::FineTuning,
            Some(&s("paused")),
            &s("defrosting"),
            false,
        );
        assert_eq!(e[0].kind.name(), "fine_tuning.job.defrosting");
        assert!(classify(Kind::FineTuning, Some(&s("running")), &s("running"), false).is_empty());
    }
}
