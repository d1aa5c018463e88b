//! OpenAI's webhooks taken in (DESIGN.md, "OpenAI webhook intake"), through the real binary:
//! a signed webhook brings the alert without waiting for a poll; forged, stale, replayed,
//! oversized and misaddressed webhooks change nothing; a transition seen by webhook and by poll
//! raises one event; a finished job never goes back; a refresh survives SIGKILL.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tunewatch::config::Secret;
use tunewatch::notify::SigningKey;

/// The secret of the fixture vector (tests/fixtures/openai/webhook_signature_vector…).
const WHSEC: &str = "whsec_Zml4dHVyZS1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmM=";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A daemon config taking webhooks for source "prod", polling only hourly (so anything faster
/// came by webhook); returns the listen port.
fn webhook_setup(api: &Api, hook: &Hook) -> (Setup, u16) {
    let setup = Setup::new(api, &hook.url(), "");
    std::fs::write(setup.dir.path().join("openai.whsec"), WHSEC).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
        .replace(
            "poll_interval = \"200ms\"\nidle_poll_interval = \"200ms\"",
            "poll_interval = \"1h\"\nwebhook_secret_file = \"openai.whsec\"\ninsight = false",
        )
    });
    (setup, port)
}

struct Sent {
    status: u16,
}

/// POSTs a webhook about `object` signed with `key` (or unsigned garbage), at `ts`.
async fn post(port: u16, source: &str, id: &str, ts: i64, object: &str, forge: bool) -> Sent {
    let body =
        json!({"id": format!("evt_{id}"), "object": "event", "type": "fine_tuning.job.succeeded",
                      "created_at": ts, "data": {"id": object}})
        .to_string();
    let key = SigningKey::from_secret(&Secret::new(WHSEC)).unwrap();
    let signature = if forge {
        "v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==".to_string()
    } else {
        // Two signatures, the first from an old key: every one is tried.
        format!(
            "v1,b2xkLWtleS1zaWduYXR1cmU= {}",
            key.sign(id, ts, body.as_bytes())
        )
    };
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/{source}"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    Sent {
        status: r.status().as_u16(),
    }
}

fn gets_of(api: &Api, id: &str) -> usize {
    let path = format!("/v1/fine_tuning/jobs/{id}");
    api.requests().iter().filter(|r| **r == path).count()
}

async fn started(setup: &Setup) -> std::process::Child {
    let daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    daemon
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_brings_the_alert_and_bad_ones_change_nothing() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let (setup, port) = webhook_setup(&api, &hook);
    let mut daemon = started(&setup).await;

    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:x"}),
    );
    // Forged, stale, misaddressed and oversized: refused, nothing fetched.
    assert_eq!(
        post(port, "prod", "wh_forged", now(), "ftjob-a", true)
            .await
            .status,
        400
    );
    assert_eq!(
        post(port, "prod", "wh_stale", now() - 600, "ftjob-a", false)
            .await
            .status,
        400
    );
    assert_eq!(
        post(port, "nope", "wh_404", now(), "ftjob-a", false)
            .await
            .status,
        404
    );
    let big = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/prod"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    assert_eq!(
        gets_of(&api, "ftjob-a"),
        0,
        "nothing is fetched for a refused webhook"
    );
    assert!(hook.delivered().is_empty());

    // A good one: 200, one GET, the alert (the next poll is an hour away).
    assert_eq!(
        post(port, "prod", "wh_1", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    wait_until("the succeeded alert", Duration::from_secs(15), || {
        !hook.delivered().is_empty()
    })
    .await;
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.succeeded"]);
    // Replayed: 200, and nothing else.
    assert_eq!(
        post(port, "prod", "wh_1", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    // Out of order: a second webhook about the same job (say, its `running`) after the
    // `succeeded`: fetched, unchanged, nothing raised.
    assert_eq!(
        post(port, "prod", "wh_2", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    wait_until(
        "the second webhook's fetch",
        Duration::from_secs(15),
        || gets_of(&api, "ftjob-a") == 2,
    )
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (outcome, n) in [
        ("accepted", 2),
        ("duplicate", 1),
        ("bad_signature", 1),
        ("stale", 1),
    ] {
        let line = format!(
            "tunewatch_webhooks_received_total{{source=\"prod\",outcome=\"{outcome}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(
        hook.delivered_types(),
        ["fine_tuning.job.succeeded"],
        "one event"
    );
    let status = setup.command(&["status"]).output().unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("last webhook"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_seen_by_poll_and_by_webhook_raises_one_event_and_a_finished_job_never_goes_back()
 {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let (setup, port) = webhook_setup(&api, &hook);
    let once = || assert!(setup.command(&["once"]).status().unwrap().success());
    once();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    once();
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.succeeded"]);
    // The webhook comes after the poll saw it: fetched, nothing new.
    let mut daemon = started(&setup).await;
    assert_eq!(
        post(port, "prod", "wh_late", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    wait_until("the late webhook's fetch", Duration::from_secs(15), || {
        gets_of(&api, "ftjob-a") == 1
    })
    .await;
    // The API now lags and says running: a stale answer about a finished job is ignored.
    api.update("ftjob-a", json!({"status": "running"}));
    assert_eq!(
        post(port, "prod", "wh_stale_state", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    wait_until("the stale fetch", Duration::from_secs(15), || {
        gets_of(&api, "ftjob-a") == 2
    })
    .await;
    setup
        .wait_for_log(
            "run.log",
            "older state of a finished job",
            "the stale answer logged",
        )
        .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(
        hook.delivered_types(),
        ["fine_tuning.job.succeeded"],
        "one event in all"
    );
    let status = setup.command(&["status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("succeeded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_survives_sigkill_between_the_200_and_the_fetch() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let (setup, port) = webhook_setup(&api, &hook);
    let mut daemon = started(&setup).await;
    api.update("ftjob-a", json!({"status": "failed"}));
    // The fetch hangs: the daemon has answered 200 and is waiting on the API when it dies.
    api.script(Scripted {
        delay: Duration::from_secs(60),
        status: 500,
        content_type: "application/json",
        body: "{}".into(),
        ..Scripted::default()
    });
    assert_eq!(
        post(port, "prod", "wh_k", now(), "ftjob-a", false)
            .await
            .status,
        200
    );
    wait_until("the fetch to start", Duration::from_secs(15), || {
        gets_of(&api, "ftjob-a") == 1
    })
    .await;
    signal(&daemon, "KILL");
    let _ = daemon.wait();
    assert!(hook.delivered().is_empty());
    // After the restart the request is carried out: the alert arrives without any poll seeing
    // the change first (the restart's first poll would also see it; either way, one event).
    let mut daemon = setup.spawn_run("run2.log", &[]);
    wait_until(
        "the failed alert after the restart",
        Duration::from_secs(20),
        || !hook.delivered().is_empty(),
    )
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.failed"]);
    let store = tunewatch::store::Store::open_read_only(&setup.db()).unwrap();
    assert!(
        store.pending_refreshes(i64::MAX, 1000).unwrap().is_empty(),
        "the request was carried out"
    );
}

#[test]
fn check_warns_when_a_webhook_secret_has_no_listener() {
    let setup = Setup::with_source(
        "[[source]]\nname = \"prod\"\nkind = \"openai\"\napi_key_file = \"api.key\"\nwebhook_secret_env = \"TW_WHSEC\"\n",
        "http://127.0.0.1:9/hook",
        "",
    );
    let o = setup
        .command(&["check"])
        .env("TW_WHSEC", WHSEC)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("warning: source \"prod\" has a webhook secret but daemon.listen is not set"),
        "{out}"
    );
}

#[test]
fn the_fixture_vector_verifies_and_a_changed_byte_does_not() {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/openai/webhook_signature_vector.synthetic.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let key = SigningKey::from_secret(&Secret::new(v["secret"].as_str().unwrap())).unwrap();
    let h = &v["headers"];
    let (id, ts, sig) = (
        h["webhook-id"].as_str().unwrap(),
        h["webhook-timestamp"].as_str().unwrap().parse().unwrap(),
        h["webhook-signature"].as_str().unwrap(),
    );
    let body = v["body"].as_str().unwrap();
    assert!(key.verify(id, ts, body.as_bytes(), sig));
    assert!(
        key.verify(id, ts, body.as_bytes(), &format!("v1,AAAA {sig}")),
        "any of several"
    );
    assert!(!key.verify(id, ts, body.replace("failed", "fa1led").as_bytes(), sig));
    assert!(!key.verify(id, ts + 1, body.as_bytes(), sig));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_webhooks_for_one_job_is_one_fetch_at_a_time() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let (setup, port) = webhook_setup(&api, &hook);
    let mut daemon = started(&setup).await;
    api.update("ftjob-a", json!({"status": "cancelled"}));
    // The first fetch is slow, so the burst arrives while it is in flight.
    api.script(Scripted {
        delay: Duration::from_millis(700),
        status: 200,
        content_type: "application/json",
        body: job("ftjob-a", "cancelled", json!({})).to_string(),
        ..Scripted::default()
    });
    let burst: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let id = format!("wh_burst_{i}");
                post(port, "prod", &id, now(), "ftjob-a", false).await
            })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap().status, 200);
    }
    wait_until("the cancelled alert", Duration::from_secs(15), || {
        !hook.delivered().is_empty()
    })
    .await;
    let store = tunewatch::store::Store::open_read_only(&setup.db()).unwrap();
    wait_until("every request carried out", Duration::from_secs(15), || {
        store.pending_refreshes(i64::MAX, 1000).unwrap().is_empty()
    })
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let gets = gets_of(&api, "ftjob-a");
    assert!((1..=2).contains(&gets), "20 webhooks, {gets} fetches");
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.cancelled"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_webhook_refreshes_the_batch() {
    let api = Api::start(vec![]).await;
    api.add_batch(batch(
        "batch_w",
        "in_progress",
        json!({"completed_at": null}),
    ));
    let hook = Hook::start().await;
    let (setup, port) = webhook_setup(&api, &hook);
    setup.edit(|t| {
        t.replace(
            "page_size = 2",
            "page_size = 2\nwatch = [\"fine_tuning\", \"batches\"]",
        )
        .replace(
            "events = [\"fine_tuning.job.*\"]",
            "events = [\"fine_tuning.job.*\", \"batch.*\"]",
        )
    });
    let mut daemon = started(&setup).await;
    api.update("batch_w", json!({"status": "completed"}));
    assert_eq!(
        post(port, "prod", "wh_b", now(), "batch_w", false)
            .await
            .status,
        200
    );
    // The fixture's batch has 5 of 100 requests failed: partially_failed beside completed.
    wait_until("the batch alerts", Duration::from_secs(15), || {
        hook.delivered().len() == 2
    })
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let mut types = hook.delivered_types();
    types.sort();
    assert_eq!(types, ["batch.completed", "batch.partially_failed"]);
    assert!(
        api.requests().iter().any(|r| r == "/v1/batches/batch_w"),
        "fetched by its own client"
    );
}
