//! The pipeline end to end, in process: a real loopback API whose jobs change between polls, a real
//! receiver checking signatures, and each store: a real SQLite file (`sqlite::…`) and a real
//! PostgreSQL server (`postgres::…`). Every test runs on both.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tunewatch::Daemon;
use tunewatch::store::Table;

fn count(daemon: &Daemon, t: Table) -> i64 {
    daemon.store().count(t).unwrap()
}

async fn the_first_poll_is_silent_and_an_unchanged_poll_writes_no_snapshot(backend: Backend) {
    let api = Api::start(vec![
        job("ftjob-3", "running", json!({})),
        job("ftjob-2", "succeeded", json!({"fine_tuned_model": "ft:x"})),
        job("ftjob-1", "failed", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();

    let report = daemon.once().await.unwrap();
    assert_eq!(report.events, 0);
    assert!(report.failed_sources.is_empty());
    assert_eq!(count(&daemon, Table::Snapshots), 3);
    assert_eq!(count(&daemon, Table::Events), 0);
    // page_size = 2: the three jobs took two pages.
    assert_eq!(api.job_requests().len(), 2);

    daemon.once().await.unwrap();
    daemon.once().await.unwrap();
    assert_eq!(
        count(&daemon, Table::Snapshots),
        3,
        "unchanged polls add no snapshot"
    );
    assert_eq!(count(&daemon, Table::Events), 0);
    assert!(hook.received().is_empty(), "nothing sent for the baseline");
}

async fn each_transition_yields_exactly_its_event_with_the_designed_envelope(backend: Backend) {
    let api = Api::start(vec![
        job("ftjob-c", "running", json!({})),
        job("ftjob-b", "running", json!({"trained_tokens": 100})),
        job("ftjob-a", "queued", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();

    api.update("ftjob-a", json!({"status": "running"}));
    api.update(
        "ftjob-b",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::abc123",
               "trained_tokens": 5768, "finished_at": 1735480000,
               "hyperparameters": {"n_epochs": 3, "batch_size": "auto",
                                   "learning_rate_multiplier": "auto"}}),
    );
    api.add(job("ftjob-d", "validating_files", json!({})));
    api.add(job(
        "ftjob-e",
        "failed",
        json!({"error": {"code": "invalid_n_examples", "message": "Too few examples",
                         "param": "training_file"}}),
    ));
    let report = daemon.once().await.unwrap();
    assert_eq!(report.events, 4, "a job first seen failed raises one event");

    let got = hook.delivered();
    let mut kinds: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["data"]["id"].as_str().unwrap().to_string(),
                r.body["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    let expected = [
        ("ftjob-a", "fine_tuning.job.running"),
        ("ftjob-b", "fine_tuning.job.succeeded"),
        ("ftjob-d", "fine_tuning.job.created"),
        ("ftjob-e", "fine_tuning.job.failed"),
    ];
    assert_eq!(
        kinds,
        expected
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec()
    );

    for r in &got {
        assert!(r.signature_ok, "signature verifies: {:?}", r.body["type"]);
        assert_eq!(
            r.webhook_id,
            r.body["id"].as_str().unwrap(),
            "webhook-id is the event id"
        );
        assert!(r.webhook_id.starts_with("evt_"));
        assert_eq!(r.body["object"], "event");
        assert_eq!(r.body["source"], "prod");
    }
    let b = got
        .iter()
        .find(|r| r.body["type"] == "fine_tuning.job.succeeded")
        .unwrap();
    assert_eq!(b.body["previous_status"], "running");
    assert_eq!(b.body["status"], "succeeded");
    assert_eq!(
        b.body["job"]["fine_tuned_model"],
        "ft:gpt-4o-mini:acme::abc123"
    );
    assert_eq!(b.body["job"]["seed"], 7, "the whole job object is sent");
    let changes = b.body["changes"].as_array().unwrap();
    let fields: Vec<&str> = changes
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "status",
            "fine_tuned_model",
            "finished_at",
            "hyperparameters.n_epochs",
            "trained_tokens"
        ]
    );
    assert_eq!(
        changes[0],
        json!({"field": "status", "from": "running", "to": "succeeded"})
    );
    assert_eq!(
        changes[4],
        json!({"field": "trained_tokens", "from": 100, "to": 5768})
    );
    let e = got
        .iter()
        .find(|r| r.body["type"] == "fine_tuning.job.failed")
        .unwrap();
    assert_eq!(e.body["previous_status"], Value::Null);
    assert_eq!(e.body["job"]["error"]["message"], "Too few examples");

    // ftjob-c did not change: no event, no snapshot beyond its first.
    assert!(got.iter().all(|r| r.body["data"]["id"] != "ftjob-c"));
    assert_eq!(count(&daemon, Table::Snapshots), 3 + 4);

    // A second look at the same state raises nothing more.
    daemon.once().await.unwrap();
    assert_eq!(hook.received().len(), 4);
}

async fn loose_real_payloads_are_accepted_and_unknown_statuses_make_events(backend: Backend) {
    let mut dpo = fixture("ft_create_job_dpo_queued.json");
    dpo["id"] = json!("ftjob-dpo");
    let mut rl = fixture("ft_create_job_reinforcement_validating.json");
    rl["id"] = json!("ftjob-rl");
    let api = Api::start(vec![dpo, rl, fixture("ft_job_failed.derived.json")]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    assert_eq!(
        count(&daemon, Table::Jobs),
        3,
        "error {{}}, hyperparameters null accepted"
    );

    api.update("ftjob-dpo", json!({"status": "paused"}));
    api.update(
        "ftjob-rl",
        json!({"status": "defrosting", "brand_new_field": {"x": 1}}),
    );
    daemon.once().await.unwrap();
    let mut types = hook.delivered_types();
    types.sort();
    assert_eq!(
        types,
        ["fine_tuning.job.defrosting", "fine_tuning.job.paused"]
    );
    let rl = hook
        .delivered()
        .into_iter()
        .find(|r| r.body["type"] == "fine_tuning.job.defrosting")
        .unwrap();
    assert_eq!(
        rl.body["job"]["brand_new_field"]["x"], 1,
        "unknown fields are kept"
    );
    let changed: Vec<&str> = rl.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["status", "brand_new_field.x"]);
}

async fn routes_choose_notifiers_by_event_type_and_source(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let other = Hook::start().await;
    let extra = format!(
        r#"
[[notifier]]
name = "failures-only"
kind = "webhook"
url = "{}"
secret_file = "hook.secret"

[[route]]
events = ["fine_tuning.job.failed"]
sources = ["prod"]
notifiers = ["failures-only", "hook"]
"#,
        other.url()
    );
    let setup = Setup::on(backend, &api, &hook.url(), &extra);
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    daemon.once().await.unwrap();
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.succeeded"]);
    assert!(
        other.received().is_empty(),
        "succeeded is not routed to failures-only"
    );

    api.add(job("ftjob-b", "running", json!({})));
    daemon.once().await.unwrap();
    api.update("ftjob-b", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    assert_eq!(other.delivered_types(), ["fine_tuning.job.failed"]);
    // Two routes name "hook" for a failure: still one delivery.
    let failed_to_hook = hook
        .delivered_types()
        .iter()
        .filter(|t| *t == "fine_tuning.job.failed")
        .count();
    assert_eq!(failed_to_hook, 1);
}

async fn a_receiver_answering_500s_gets_the_alert_again_with_the_same_webhook_id(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[
        Answer::Status(500),
        Answer::Status(503),
        Answer::Status(200),
    ]);
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    let store = daemon.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async {
        let _ = stopped.await;
    }));
    wait_until("the baseline poll", Duration::from_secs(10), || {
        store.sources().unwrap().iter().any(|s| s.baseline_done)
    })
    .await;
    api.update("ftjob-a", json!({"status": "succeeded"}));
    wait_until(
        "a delivery after two failures",
        Duration::from_secs(20),
        || !hook.delivered().is_empty(),
    )
    .await;
    let got = hook.received();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().map(|r| r.answered.unwrap()).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    assert!(
        got.iter()
            .all(|r| r.webhook_id == got[0].webhook_id && r.signature_ok)
    );
    assert!(got.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    wait_until(
        "the outbox to record the delivery",
        Duration::from_secs(5),
        || store.count(Table::PendingDeliveries).unwrap() == 0,
    )
    .await;
    let rows = store.outbox_rows(true).unwrap();
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("delivered", 3));
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

async fn a_receiver_rejecting_with_400_is_not_retried_and_the_row_is_dead(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Status(400)]);
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "cancelled"}));
    daemon.once().await.unwrap();
    daemon.once().await.unwrap();
    assert_eq!(hook.received().len(), 1, "a 400 is not retried");
    let rows = daemon.store().outbox_rows(false).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "dead");
    assert_eq!(rows[0].last_status, Some(400));
    assert!(rows[0].last_error.as_deref().unwrap().contains("HTTP 400"));
}

async fn a_receiver_that_is_down_keeps_the_row_until_it_is_back(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    // A port nobody listens on: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let setup = Setup::on(backend, &api, &format!("http://{closed}/hook"), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(false).unwrap();
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("pending", 1));
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("could not connect")
    );
    let event_id = rows[0].event_id.clone();
    drop(daemon);

    // The receiver comes back (the config now points at it); a new daemon delivers the same event.
    let hook = Hook::start().await;
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace(&format!("http://{closed}/hook"), &hook.url()),
    )
    .unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    wait_until("the retry to fall due", Duration::from_secs(5), || {
        daemon.store().next_due_ms().unwrap().unwrap() <= tunewatch::store::unix_now_ms()
    })
    .await;
    daemon.once().await.unwrap();
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].webhook_id, event_id);
}

async fn api_errors_are_retried_politely_and_the_key_is_sent_as_a_bearer(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    api.fail_next(500, "application/json", r#"{"error": {"message": "boom"}}"#);
    api.script(Scripted {
        delay: Duration::ZERO,
        status: 429,
        content_type: "application/json",
        body: r#"{"error": {"message": "Rate limit reached"}}"#.into(),
        headers: vec![("retry-after-ms", "50".into())],
        ..Scripted::default()
    });
    let daemon = Daemon::new(setup.load()).unwrap();
    let report = daemon.once().await.unwrap();
    assert!(
        report.failed_sources.is_empty(),
        "{:?}",
        report.failed_sources
    );
    assert_eq!(api.job_requests().len(), 3, "500, 429, then the page");
    assert_eq!(
        api.state.lock().unwrap().last_auth.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(daemon.store().count(Table::Jobs).unwrap(), 1);

    // Failures beyond max_retries fail the poll, are recorded, and lose nothing.
    for _ in 0..3 {
        api.fail_next(502, "text/html", "<html><body>Bad gateway</body></html>");
    }
    api.update("ftjob-a", json!({"status": "succeeded"}));
    let report = daemon.once().await.unwrap();
    assert_eq!(report.failed_sources.len(), 1);
    let why = &report.failed_sources[0].1;
    assert!(
        why.contains("HTTP 502") && why.contains("text/html"),
        "{why}"
    );
    assert!(!why.contains(API_KEY));
    let sources = daemon.store().sources().unwrap();
    assert_eq!(sources[0].consecutive_failures, 1);
    daemon.once().await.unwrap();
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.succeeded"]);
}

async fn organization_and_project_headers_are_sent_and_a_slow_api_times_out(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "max_retries = 2",
        "max_retries = 0\norganization = \"org-acme\"\nproject = \"proj_42\"\nrequest_timeout = \"300ms\"",
    );
    std::fs::write(&setup.config, text).unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    {
        let s = api.state.lock().unwrap();
        assert_eq!(s.last_org.as_deref(), Some("org-acme"));
        assert_eq!(s.last_project.as_deref(), Some("proj_42"));
    }
    api.script(Scripted {
        delay: Duration::from_secs(5),
        status: 200,
        content_type: "application/json",
        body: "{}".into(),
        headers: vec![],
        ..Scripted::default()
    });
    let started = std::time::Instant::now();
    let report = daemon.once().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the request timeout applies"
    );
    assert_eq!(report.failed_sources.len(), 1);
    assert!(
        report.failed_sources[0].1.contains("timed out"),
        "{:?}",
        report.failed_sources
    );
}

async fn a_receiver_that_hangs_times_out_and_is_retried_with_the_same_id(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Hang]);
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "retry_initial = \"100ms\"",
        "retry_initial = \"100ms\"\ntimeout = \"300ms\"",
    );
    std::fs::write(&setup.config, text).unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(false).unwrap();
    assert_eq!(rows[0].attempts, 1);
    assert!(
        rows[0].last_error.as_deref().unwrap().contains("timed out"),
        "{rows:?}"
    );
    wait_until("the retry to fall due", Duration::from_secs(5), || {
        daemon.store().next_due_ms().unwrap().unwrap() <= tunewatch::store::unix_now_ms()
    })
    .await;
    daemon.once().await.unwrap();
    let got = hook.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].webhook_id, got[1].webhook_id);
    assert_eq!(got[1].answered, Some(200));
}

async fn an_unsigned_webhook_still_carries_its_id(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("secret_file = \"hook.secret\"\n", "");
    std::fs::write(&setup.config, text).unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].webhook_id, got[0].body["id"].as_str().unwrap());
    assert!(got[0].signature.is_empty() && !got[0].signature_ok);
}

/// The Standard Webhooks reference library (the specification's own Rust crate,
/// `standardwebhooks`) verifies what tunewatch sends: the secret, the id, the timestamp and the
/// exact bytes of the body, and refuses a forged signature.
async fn the_standard_webhooks_reference_library_verifies_the_signature(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:ü-unicode"}),
    );
    daemon.once().await.unwrap();
    let r = hook.delivered().pop().expect("one delivery");
    let verify = |sig: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", r.webhook_id.parse().unwrap());
        headers.insert(
            "webhook-timestamp",
            r.timestamp.to_string().parse().unwrap(),
        );
        headers.insert("webhook-signature", sig.parse().unwrap());
        standardwebhooks::Webhook::new(HOOK_SECRET)
            .unwrap()
            .verify(&r.raw_body, &headers)
    };
    verify(&r.signature).expect("the reference library verifies tunewatch's signature");
    let payload: Value = serde_json::from_slice(&r.raw_body).unwrap();
    assert_eq!(payload["type"], "fine_tuning.job.succeeded");
    assert!(
        verify("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err(),
        "a forged signature is refused"
    );
}

async fn slack_and_discord_formats_post_chat_payloads_with_the_same_retry_rules(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let slack = Hook::start().await;
    let discord = Hook::start().await;
    slack.answer(&[Answer::Status(503)]);
    let extra = format!(
        r#"
[[notifier]]
name = "slack"
kind = "webhook"
format = "slack"
url = "{}"
retry_initial = "100ms"

[[notifier]]
name = "discord"
kind = "webhook"
format = "discord"
url = "{}"
secret_file = "hook.secret"

[[route]]
events = ["fine_tuning.job.succeeded"]
notifiers = ["slack", "discord"]
"#,
        slack.url(),
        discord.url()
    );
    let setup = Setup::on(backend, &api, &hook.url(), &extra);
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::abc123"}),
    );
    daemon.once().await.unwrap();
    wait_until(
        "the slack retry to fall due",
        Duration::from_secs(5),
        || {
            daemon
                .store()
                .next_due_ms()
                .unwrap()
                .is_some_and(|t| t <= tunewatch::store::unix_now_ms())
        },
    )
    .await;
    daemon.once().await.unwrap();

    let s = slack.received();
    assert_eq!(s.len(), 2, "503 then 200");
    assert_eq!(s[0].webhook_id, s[1].webhook_id);
    let body = &s[1].body;
    assert_eq!(
        body["text"],
        "prod: ftjob-a succeeded — ft:gpt-4o-mini:acme::abc123"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert!(
        body["blocks"]
            .to_string()
            .contains("`ft:gpt-4o-mini:acme::abc123`")
    );
    assert!(s[1].signature.is_empty(), "unsigned without a secret");

    let d = discord.delivered();
    assert_eq!(d.len(), 1);
    assert!(
        d[0].signature_ok,
        "signing stays available for chat formats"
    );
    assert_eq!(d[0].body["embeds"][0]["color"], 0x2EB67D);
    assert!(
        d[0].body["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains("ftjob-a succeeded")
    );
    assert!(
        d[0].body.get("content").is_none(),
        "no content repeating the embed's title"
    );
}

async fn a_reload_keeps_pending_deliveries_and_sends_them_with_the_new_config(backend: Backend) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Status(503); 1000]);
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    let store = daemon.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let running = tokio::spawn(daemon.run_with_reload(
        async {
            let _ = stopped.await;
        },
        reloads,
    ));
    wait_until("the baseline poll", Duration::from_secs(10), || {
        store.sources().unwrap().iter().any(|s| s.baseline_done)
    })
    .await;
    api.update("ftjob-a", json!({"status": "succeeded"}));
    wait_until("a failed attempt", Duration::from_secs(10), || {
        hook.received().len() >= 2
    })
    .await;
    let pending = store.outbox_rows(false).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].state, "pending");

    // The receiver moves; the config follows it and is reloaded while the row is pending.
    let moved = Hook::start().await;
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, text.replace(&hook.url(), &moved.url())).unwrap();
    reload.send(()).await.unwrap();
    wait_until(
        "the pending row to reach the new receiver",
        Duration::from_secs(10),
        || moved.delivered().len() == 1,
    )
    .await;
    assert_eq!(
        moved.delivered()[0].webhook_id,
        pending[0].event_id,
        "the same event"
    );
    wait_until(
        "the row to be recorded delivered",
        Duration::from_secs(5),
        || store.count(Table::PendingDeliveries).unwrap() == 0,
    )
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

mod sqlite {
    use super::Backend;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_first_poll_is_silent_and_an_unchanged_poll_writes_no_snapshot() {
        super::the_first_poll_is_silent_and_an_unchanged_poll_writes_no_snapshot(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn each_transition_yields_exactly_its_event_with_the_designed_envelope() {
        super::each_transition_yields_exactly_its_event_with_the_designed_envelope(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn loose_real_payloads_are_accepted_and_unknown_statuses_make_events() {
        super::loose_real_payloads_are_accepted_and_unknown_statuses_make_events(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn routes_choose_notifiers_by_event_type_and_source() {
        super::routes_choose_notifiers_by_event_type_and_source(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_answering_500s_gets_the_alert_again_with_the_same_webhook_id() {
        super::a_receiver_answering_500s_gets_the_alert_again_with_the_same_webhook_id(
            Backend::Sqlite,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_rejecting_with_400_is_not_retried_and_the_row_is_dead() {
        super::a_receiver_rejecting_with_400_is_not_retried_and_the_row_is_dead(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_that_is_down_keeps_the_row_until_it_is_back() {
        super::a_receiver_that_is_down_keeps_the_row_until_it_is_back(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn api_errors_are_retried_politely_and_the_key_is_sent_as_a_bearer() {
        super::api_errors_are_retried_politely_and_the_key_is_sent_as_a_bearer(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn organization_and_project_headers_are_sent_and_a_slow_api_times_out() {
        super::organization_and_project_headers_are_sent_and_a_slow_api_times_out(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_that_hangs_times_out_and_is_retried_with_the_same_id() {
        super::a_receiver_that_hangs_times_out_and_is_retried_with_the_same_id(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unsigned_webhook_still_carries_its_id() {
        super::an_unsigned_webhook_still_carries_its_id(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn the_standard_webhooks_reference_library_verifies_the_signature() {
        super::the_standard_webhooks_reference_library_verifies_the_signature(Backend::Sqlite)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn slack_and_discord_formats_post_chat_payloads_with_the_same_retry_rules() {
        super::slack_and_discord_formats_post_chat_payloads_with_the_same_retry_rules(
            Backend::Sqlite,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_reload_keeps_pending_deliveries_and_sends_them_with_the_new_config() {
        super::a_reload_keeps_pending_deliveries_and_sends_them_with_the_new_config(
            Backend::Sqlite,
        )
        .await;
    }
}

mod postgres {
    use super::Backend;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_first_poll_is_silent_and_an_unchanged_poll_writes_no_snapshot() {
        super::the_first_poll_is_silent_and_an_unchanged_poll_writes_no_snapshot(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn each_transition_yields_exactly_its_event_with_the_designed_envelope() {
        super::each_transition_yields_exactly_its_event_with_the_designed_envelope(
            Backend::Postgres,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn loose_real_payloads_are_accepted_and_unknown_statuses_make_events() {
        super::loose_real_payloads_are_accepted_and_unknown_statuses_make_events(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn routes_choose_notifiers_by_event_type_and_source() {
        super::routes_choose_notifiers_by_event_type_and_source(Backend::Postgres).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_answering_500s_gets_the_alert_again_with_the_same_webhook_id() {
        super::a_receiver_answering_500s_gets_the_alert_again_with_the_same_webhook_id(
            Backend::Postgres,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_rejecting_with_400_is_not_retried_and_the_row_is_dead() {
        super::a_receiver_rejecting_with_400_is_not_retried_and_the_row_is_dead(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_that_is_down_keeps_the_row_until_it_is_back() {
        super::a_receiver_that_is_down_keeps_the_row_until_it_is_back(Backend::Postgres).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn api_errors_are_retried_politely_and_the_key_is_sent_as_a_bearer() {
        super::api_errors_are_retried_politely_and_the_key_is_sent_as_a_bearer(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn organization_and_project_headers_are_sent_and_a_slow_api_times_out() {
        super::organization_and_project_headers_are_sent_and_a_slow_api_times_out(
            Backend::Postgres,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_receiver_that_hangs_times_out_and_is_retried_with_the_same_id() {
        super::a_receiver_that_hangs_times_out_and_is_retried_with_the_same_id(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unsigned_webhook_still_carries_its_id() {
        super::an_unsigned_webhook_still_carries_its_id(Backend::Postgres).await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn the_standard_webhooks_reference_library_verifies_the_signature() {
        super::the_standard_webhooks_reference_library_verifies_the_signature(Backend::Postgres)
            .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn slack_and_discord_formats_post_chat_payloads_with_the_same_retry_rules() {
        super::slack_and_discord_formats_post_chat_payloads_with_the_same_retry_rules(
            Backend::Postgres,
        )
        .await;
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn a_reload_keeps_pending_deliveries_and_sends_them_with_the_new_config() {
        super::a_reload_keeps_pending_deliveries_and_sends_them_with_the_new_config(
            Backend::Postgres,
        )
        .await;
    }
}
