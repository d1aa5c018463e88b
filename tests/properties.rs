//! Property tests: whatever JSON an API sends, parsing, diffing, classifying and rendering never
//! panic, and the diff and classification keep their promises. Run in CI with proptest's default
//! 256 cases per property; `PROPTEST_CASES=100000 cargo test --test properties` digs deeper.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tunewatch::config::WebhookFormat;
use tunewatch::diff::{classify, diff};
use tunewatch::event::{Event, EventData};
use tunewatch::notify::render;
use tunewatch::source::{Job, JobStatus};

/// Keys real jobs have, so generated objects often look like (broken) jobs.
const KEYS: &[&str] = &[
    "id",
    "status",
    "model",
    "fine_tuned_model",
    "created_at",
    "finished_at",
    "trained_tokens",
    "error",
    "code",
    "message",
    "param",
    "hyperparameters",
    "n_epochs",
    "method",
    "type",
    "supervised",
    "dpo",
    "result_files",
    "training_file",
    "validation_file",
];
const STATUSES: &[&str] = &[
    "validating_files",
    "queued",
    "running",
    "paused",
    "succeeded",
    "failed",
    "cancelled",
    "",
    "thawing",
    "ünïcødé_status",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::from),
        prop::sample::select(STATUSES).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object with an id and a status, otherwise arbitrary.
fn job_json() -> impl Strategy<Value = Value> {
    (json(), "\\PC{1,20}", prop::sample::select(STATUSES)).prop_map(|(v, id, status)| {
        let mut o = match v {
            Value::Object(o) => o,
            other => Map::from_iter([("extra".to_string(), other)]),
        };
        o.insert("id".into(), Value::from(id));
        o.insert("status".into(), Value::from(status));
        Value::Object(o)
    })
}

fn event_for(job: &Job, event_type: &str, previous: Option<&str>) -> Event {
    Event {
        id: "evt_prop".into(),
        object: "event".into(),
        event_type: event_type.into(),
        created_at: 1_735_480_000,
        data: EventData { id: job.id.clone() },
        source: "prod".into(),
        previous_status: previous.map(str::to_string),
        status: Some(job.status.as_str().to_string()),
        changes: Vec::new(),
        job: Some(job.raw.clone()),
        error: Some("boom".into()),
        stalled_for: Some(3600),
    }
}

proptest! {
    #[test]
    fn parsing_any_json_never_panics(v in json()) {
        let _ = Job::from_value(v);
    }

    #[test]
    fn a_job_keeps_its_raw_json_and_its_hash_ignores_key_order(v in job_json()) {
        let job = Job::from_value(v.clone()).expect("id and status are set");
        prop_assert_eq!(&job.raw, &v);
        let reparsed: Value = serde_json::from_str(&job.canonical_json()).unwrap();
        prop_assert_eq!(Job::from_value(reparsed).unwrap().content_hash(), job.content_hash());
    }

    #[test]
    fn diff_never_panics_and_a_value_never_differs_from_itself(a in json(), b in json()) {
        prop_assert!(diff(&a, &a).is_empty());
        let changes = diff(&a, &b);
        let mut fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        let n = fields.len();
        fields.sort_unstable();
        fields.dedup();
        prop_assert_eq!(fields.len(), n, "each field at most once");
        for c in &changes {
            prop_assert_ne!(&c.from, &c.to);
        }
        prop_assert_eq!(diff(&b, &a).len(), n, "symmetric");
    }

    #[test]
    fn classification_raises_exactly_the_designed_events(
        prev in prop::option::of(prop::sample::select(STATUSES)),
        next in prop::sample::select(STATUSES),
        baseline in any::<bool>(),
    ) {
        let prev = prev.map(JobStatus::parse);
        let next = JobStatus::parse(next);
        let events = classify(prev.as_ref(), &next, baseline);
        let entered = format!("fine_tuning.job.{}", next.as_str());
        match (&prev, baseline) {
            (_, true) => prop_assert!(events.is_empty()),
            (None, false) => {
                prop_assert_eq!(events[0].event_type.as_str(), "fine_tuning.job.created");
                prop_assert_eq!(events.len(), if next.is_initial() { 1 } else { 2 });
            }
            (Some(p), false) if *p == next => prop_assert!(events.is_empty()),
            (Some(p), false) => {
                prop_assert_eq!(events.len(), 1);
                prop_assert_eq!(&events[0].event_type, &entered);
                prop_assert_eq!(events[0].previous_status.as_deref(), Some(p.as_str()));
            }
        }
    }

    #[test]
    fn rendering_any_job_never_panics(v in job_json(), kind in prop::sample::select(&[
        "fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled",
        "fine_tuning.job.created", "fine_tuning.job.stalled", "fine_tuning.job.thawing",
        "tunewatch.source.failing", "tunewatch.source.recovered",
    ][..])) {
        let job = Job::from_value(v).unwrap();
        let event = event_for(&job, kind, Some("running"));
        let link = Some("https://platform.openai.com/finetune/x");
        prop_assert!(render::subject(&event).starts_with("[tunewatch] prod"));
        let _ = render::email_text(&event, link);
        let _ = render::email_html(&event, link);
        for format in [WebhookFormat::Json, WebhookFormat::Slack, WebhookFormat::Discord] {
            let body = render::webhook_body(&event, format, link).unwrap();
            let _: Value = serde_json::from_slice(&body).unwrap();
        }
        let discord = render::discord(&event, link);
        for f in discord["embeds"][0]["fields"].as_array().unwrap() {
            prop_assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
        }
    }
}
