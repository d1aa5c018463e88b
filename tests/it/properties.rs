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

/// Long strings, mentions and markup: what a hostile API puts in a job's text fields.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        (1usize..12_000, "[a-z@<!>&*_ \n]{1,8}")
            .prop_map(|(n, unit)| unit.repeat(n / unit.len().max(1) + 1)),
        Just("<!channel> @everyone @here <@U123> <script>x</script>".to_string()),
    ]
}

/// A failed job whose every string is hostile.
fn hostile_job() -> impl Strategy<Value = Value> {
    (
        hostile_text(),
        hostile_text(),
        hostile_text(),
        hostile_text(),
        "[A-Za-z0-9-]{1,200}",
    )
        .prop_map(|(message, model, code, file, id)| {
            json!({"id": id, "status": "failed", "model": model, "fine_tuned_model": model,
                   "error": {"code": code, "message": message, "param": message},
                   "created_at": 1_735_400_000, "trained_tokens": 12,
                   "result_files": [file, file, file], "training_file": file,
                   "validation_file": file, "hyperparameters": {"n_epochs": message}})
        })
}

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
    // Any case and spacing is a status (trimmed and lower-cased); an empty one is none.
    " Running",
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
    // Ids that could be a job's (others are refused: see `hostile_ids_are_refused_or_inert`).
    let id = "[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,19}";
    (json(), id, prop::sample::select(STATUSES)).prop_map(|(v, id, status)| {
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
        provider: None,
        provider_status: None,
        changes: Vec::new(),
        job: Some(job.raw.clone()),
        error: Some("boom".into()),
        stalled_for: Some(3600),
        insight: None,
        loss_curve: Vec::new(),
        model: None,
        evaluation: None,
        reminder: None,
        digest: None,
    }
}

/// One generated metric point: step, total steps, time, training and validation loss.
type GenPoint = (u32, Option<u32>, Option<i64>, Option<f64>, Option<f64>);

/// The largest step in `points`, as a token count (any number will do).
fn at_most(points: &[GenPoint]) -> u64 {
    points.iter().map(|p| u64::from(p.0)).max().unwrap_or(0)
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
        let events = classify(tunewatch::source::job::Kind::FineTuning, prev.as_ref(), &next, baseline);
        let entered = format!("fine_tuning.job.{}", next.as_str());
        match (&prev, baseline) {
            (_, true) => prop_assert!(events.is_empty()),
            (None, false) => {
                // One event per first sight: the outcome if finished, else `created`.
                prop_assert_eq!(events.len(), 1);
                let expected = if next.is_terminal() { entered.as_str() } else { "fine_tuning.job.created" };
                prop_assert_eq!(events[0].kind.name(), expected.to_string());
            }
            (Some(p), false) if *p == next => prop_assert!(events.is_empty()),
            (Some(p), false) => {
                prop_assert_eq!(events.len(), 1);
                prop_assert_eq!(&events[0].kind.name(), &entered);
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
        let _ = render::email_html(&event, link, true);
        for format in [WebhookFormat::Json, WebhookFormat::Slack, WebhookFormat::Discord] {
            let body = render::webhook_body(&event, format, link).unwrap();
            let _: Value = serde_json::from_slice(&body).unwrap();
        }
        let discord = render::discord(&event, link);
        for f in discord["embeds"][0]["fields"].as_array().unwrap() {
            prop_assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
        }
    }

    #[test]
    fn hostile_ids_are_refused_or_inert(id in "\\PC{0,30}|[./ \n?#%]{1,3}") {
        match Job::from_value(json!({"id": id, "status": "running"})) {
            Ok(job) => {
                prop_assert!(!job.id.chars().any(|c| c.is_whitespace() || c.is_control()));
                prop_assert!(!job.id.contains(['/', '?', '#', '%', '\\']));
                prop_assert!(job.id != "." && job.id != "..");
            }
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }

    #[test]
    fn no_hostile_job_makes_an_alert_exceed_a_limit(v in hostile_job(), kind in prop::sample::select(&[
        "fine_tuning.job.failed", "fine_tuning.job.succeeded", "fine_tuning.job.created",
        "tunewatch.source.failing",
    ][..])) {
        let job = Job::from_value(v).unwrap();
        let mut event = event_for(&job, kind, Some("running"));
        event.error = job.raw["error"]["message"].as_str().map(str::to_string);
        let link = Some("https://platform.openai.com/finetune/x");
        let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        // E-mail: subject content <= 200 characters on one line, bodies bounded.
        let subject = render::subject(&event);
        prop_assert!(subject.chars().count() <= 200 + "[tunewatch] ".len(), "{}", subject.len());
        prop_assert!(!subject.contains('\n'));
        let text = render::email_text(&event, link);
        let html = render::email_html(&event, link, true);
        prop_assert!(text.len() + html.len() <= 256 * 1024);
        for fact in render::facts(&event, link) {
            prop_assert!(fact.value.chars().count() <= render::FACT_CHARS);
        }
        // Slack: text objects within their limits; no mention survives.
        let slack = render::slack(&event, link);
        prop_assert!(chars(&slack["text"]) <= 3000);
        let blocks = slack["blocks"].as_array().unwrap();
        prop_assert!(blocks.len() <= 50);
        prop_assert!(chars(&blocks[0]["text"]["text"]) <= 150);
        for b in blocks {
            if let Some(t) = b.get("text") { prop_assert!(chars(&t["text"]) <= 3000); }
            for f in b["fields"].as_array().into_iter().flatten() {
                prop_assert!(chars(&f["text"]) <= 2000);
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                prop_assert!(chars(&e["text"]) <= 3000);
            }
        }
        let slack_text = slack.to_string();
        prop_assert!(!slack_text.contains("<!channel>") && !slack_text.contains("<@U123>"));
        prop_assert!(!slack_text.contains("@everyone") && !slack_text.contains("@channel"));
        // Discord: every limit, the 6 000-character total included; mentions off.
        let discord = render::discord(&event, link);
        prop_assert!(chars(&discord["content"]) <= 2000);
        prop_assert_eq!(&discord["allowed_mentions"], &json!({"parse": []}));
        let embed = &discord["embeds"][0];
        prop_assert!(chars(&embed["title"]) <= 256);
        prop_assert!(chars(&embed["description"]) <= 4096);
        let fields = embed["fields"].as_array().unwrap();
        prop_assert!(fields.len() <= 25);
        let mut total = chars(&embed["title"]) + chars(&embed["description"])
            + chars(&embed["footer"]["text"]);
        for f in fields {
            prop_assert!(chars(&f["name"]) <= 256 && chars(&f["value"]) <= 1024);
            total += chars(&f["name"]) + chars(&f["value"]);
        }
        prop_assert!(total <= render::DISCORD_EMBED_TOTAL, "{}", total);
    }

    #[test]
    fn insight_takes_any_series_without_panicking(
        points in prop::collection::vec(
            (any::<u32>(), prop::option::of(any::<u32>()), prop::option::of(any::<i64>()),
             prop::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(1e300)]),
             prop::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(-0.0)])),
            0..60,
        ),
        tolerance in prop_oneof![Just(0.1), any::<f64>()],
        patience in any::<u32>(),
    ) {
        use tunewatch::insight::{self, MetricPoint};
        // Unsorted, repeated and absurd steps, as events can come.
        let events: Vec<Value> = points
            .iter()
            .map(|(step, total, at, train, valid)| json!({"type": "metrics", "created_at": at,
                "data": {"step": step, "total_steps": total,
                         "train_loss": train.map(|t| if t.is_finite() { json!(t) } else { json!(t.to_string()) }),
                         "valid_loss": valid.map(|v| if v.is_finite() { json!(v) } else { json!("NaN") })}}))
            .collect();
        let series: Vec<MetricPoint> = insight::series(&events);
        prop_assert!(series.windows(2).all(|w| w[0].step < w[1].step), "sorted, one per step");
        let _ = insight::overfitting(&series, tolerance, patience);
        let _ = insight::diverging(&series);
        if let Some(p) = insight::progress(&series) {
            prop_assert!((0.0..=1.0).contains(&p.fraction));
        }
        let _ = insight::analysis::signals(&series, &[1, 50, 99], tolerance, patience);
        let job = json!({"status": "running", "model": "gpt-4o-mini", "trained_tokens": at_most(&points)});
        let prices = tunewatch::config::Prices([("gpt-4o-mini".to_string(), 3.0)].into());
        if let Some(i) = insight::summarize(&job, &series, &[], &prices) {
            // Whatever the numbers, the insight travels as JSON and comes back.
            let v = serde_json::to_value(&i).unwrap();
            let _: insight::Insight = serde_json::from_value(v).unwrap();
        }
        let curve = insight::curve(&series);
        prop_assert!(curve.len() <= insight::summary::CURVE_POINTS);
    }
}

proptest! {
    // Drawing takes milliseconds, not microseconds: fewer cases, each a whole chart.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_chart_draws_any_curve_or_says_why_not(
        curve in prop::collection::vec(
            (any::<u64>(),
             prop::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::NEG_INFINITY), Just(1e300), Just(-1e-300)]),
             prop::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(0.0)])),
            0..12,
        ),
    ) {
        match tunewatch::insight::chart::png(&curve, "ftjob-\u{1b}[31m<b>") {
            Ok(png) => prop_assert!(png.starts_with(b"\x89PNG")),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
