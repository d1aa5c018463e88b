//! OpenAI's webhooks under pressure (DESIGN.md, "Hostile input"): a webhook whose object the API
//! refuses, a flood of webhooks about unknown ids, slow clients holding the listener and forged
//! webhooks by the hundred. Refreshes back off and are given up (and shown), a real job's webhook
//! is not kept waiting, heads must arrive within seconds, and refusals are said once a minute.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tunewatch::config::Secret;
use tunewatch::notify::SigningKey;

const WHSEC: &str = "whsec_Zml4dHVyZS1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmM=";

fn gets_of(api: &Api, id: &str) -> usize {
    let path = format!("/v1/fine_tuning/jobs/{id}");
    api.requests().iter().filter(|r| **r == path).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_the_api_refuses_backs_off_is_given_up_and_is_shown() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    assert!(setup.command(&["once"]).status().unwrap().success());
    let config = Arc::new(setup.load());
    let store = tunewatch::store::Store::open(&setup.db()).unwrap();
    store.acquire_lease(0).unwrap();
    let at = Arc::new(AtomicI64::new(2_000_000_000_000));
    let read = at.clone();
    let clock = tunewatch::clock::Clock::from_fn(move || read.load(Ordering::SeqCst));
    let telemetry = Arc::new(tunewatch::telemetry::Telemetry::default());
    let source = &config.sources[0];
    let poller = Arc::new(tunewatch::scheduler::SourcePoller::new(
        source,
        (
            tunewatch::source::build_all(source, &Secret::new(API_KEY).into()).unwrap(),
            None,
        ),
        store.clone(),
        config.clone(),
        Arc::new(tokio::sync::Notify::new()),
        telemetry.clone(),
        clock.clone(),
    ));
    let wake = Arc::new(tokio::sync::Notify::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let refresher = tokio::spawn(tunewatch::run::refresher::refresher(
        HashMap::from([("prod".to_string(), poller)]),
        store.clone(),
        wake.clone(),
        clock.clone(),
        stop.clone(),
    ));
    // Only the refresher asks the API from here on: every fetch of ftjob-x is refused.
    for _ in 0..tunewatch::store::REFRESH_ATTEMPTS {
        api.fail_next(
            403,
            "application/json",
            r#"{"error": {"message": "You do not have access to this job", "type": "invalid_request_error"}}"#,
        );
    }
    store
        .record_webhook("prod", "wh_x", "ftjob-x", clock.now())
        .unwrap();
    let attempts = tunewatch::store::REFRESH_ATTEMPTS;
    for attempt in 1..attempts {
        wake.notify_one();
        // The failure is recorded (with the time of the next try) before the clock moves on.
        wait_until(
            &format!("fetch {attempt} of ftjob-x to be recorded"),
            Duration::from_secs(15),
            || {
                store
                    .pending_refreshes(i64::MAX, 10)
                    .unwrap()
                    .iter()
                    .any(|r| r.object_id == "ftjob-x" && r.attempts == attempt)
            },
        )
        .await;
        assert_eq!(gets_of(&api, "ftjob-x"), attempt as usize);
        // The longest wait between two tries is 10 minutes: jump past it.
        at.fetch_add(601_000, Ordering::SeqCst);
    }
    wake.notify_one();
    wait_until(
        "the refresh to be given up",
        Duration::from_secs(15),
        || {
            store
                .refresh_trouble()
                .unwrap()
                .first()
                .is_some_and(|t| t.given_up == 1)
        },
    )
    .await;
    // A later webhook is carried out; the given-up one is not tried again.
    api.add(job("ftjob-b", "running", json!({})));
    store
        .record_webhook("prod", "wh_b", "ftjob-b", clock.now())
        .unwrap();
    at.fetch_add(86_400_000, Ordering::SeqCst);
    wake.notify_one();
    wait_until("the next webhook's fetch", Duration::from_secs(15), || {
        gets_of(&api, "ftjob-b") == 1
    })
    .await;
    assert_eq!(
        gets_of(&api, "ftjob-x"),
        tunewatch::store::REFRESH_ATTEMPTS as usize
    );
    stop.cancel();
    refresher.await.unwrap().unwrap();

    let status = setup.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("0 webhook refresh(es) failing, 1 given up")
            && text.contains("You do not have access to this job"),
        "{text}"
    );
    let (addr, server) = tunewatch::http::listener::serve(
        "127.0.0.1:0".parse().unwrap(),
        telemetry,
        store.clone(),
        None,
        None,
    )
    .await
    .unwrap();
    let health: Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["webhook_refreshes"][0]["given_up"], 1, "{health}");
    server.abort();
}

/// A daemon taking webhooks for "prod", polling hourly; its listen port.
async fn webhook_setup(api: &Api) -> (Setup, Hook, u16) {
    let hook = Hook::start().await;
    let setup = Setup::new(api, &hook.url(), "");
    std::fs::write(setup.dir.path().join("openai.whsec"), WHSEC).unwrap();
    let port = free_port();
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
    (setup, hook, port)
}

fn signed(id: &str, object: &str) -> (String, i64, String) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = json!({"id": format!("evt_{id}"), "object": "event",
                      "type": "fine_tuning.job.succeeded", "created_at": ts,
                      "data": {"id": object}})
    .to_string();
    let key = SigningKey::from_secret(&Secret::new(WHSEC)).unwrap();
    let signature = key.sign(id, ts, body.as_bytes());
    (body, ts, signature)
}

async fn post(
    client: &reqwest::Client,
    port: u16,
    id: &str,
    object: &str,
    forge: bool,
) -> reqwest::Result<reqwest::Response> {
    let (body, ts, signature) = signed(id, object);
    let signature = if forge {
        "v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==".to_string()
    } else {
        signature
    };
    client
        .post(format!("http://127.0.0.1:{port}/webhooks/prod"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_jobs_webhook_is_not_kept_waiting_behind_a_flood_of_unknown_ids() {
    let api = Api::start(vec![job("ftjob-real", "running", json!({}))]).await;
    let (setup, hook, port) = webhook_setup(&api).await;
    assert!(setup.command(&["once"]).status().unwrap().success());
    {
        let store = tunewatch::store::Store::open(&setup.db()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for i in 0..600 {
            store
                .record_webhook(
                    "prod",
                    &format!("wh_flood_{i}"),
                    &format!("ftjob-nope-{i}"),
                    now,
                )
                .unwrap();
        }
    }
    // Each unknown id costs 20 ms to be told 404: the flood takes 12 s to work through.
    api.state.lock().unwrap().get_delay = Duration::from_millis(20);
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the first poll")
        .await;
    wait_until("the flood to be under way", Duration::from_secs(15), || {
        api.requests().iter().any(|r| r.contains("ftjob-nope"))
    })
    .await;
    api.update(
        "ftjob-real",
        json!({"status": "succeeded", "fine_tuned_model": "ft:real"}),
    );
    let r = post(
        &reqwest::Client::new(),
        port,
        "wh_real",
        "ftjob-real",
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the real job's alert", Duration::from_secs(30), || {
        !hook.delivered().is_empty()
    })
    .await;
    let unknown = api
        .requests()
        .iter()
        .filter(|r| r.contains("ftjob-nope"))
        .count();
    assert!(
        unknown < 300,
        "{unknown} unknown ids were fetched before the real job's (rounds of 64, known first)"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_cannot_hold_the_listener_and_forgeries_are_said_once_a_minute() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let (setup, hook, port) = webhook_setup(&api).await;
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the first poll")
        .await;
    // 64 clients connect and never finish a request's head: every connection slot is taken.
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"POST /webhooks/prod HTTP/1.1\r\n")
            .await
            .unwrap();
        idle.push(s);
    }
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:a"}),
    );
    // The signed webhook still gets in: the slow heads are cut after 5 s, not 30 s.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let r = post(&client, port, "wh_1", "ftjob-a", false)
        .await
        .expect("answered while 64 slow clients hold the listener");
    assert_eq!(r.status(), 200);
    wait_until("the alert", Duration::from_secs(15), || {
        !hook.delivered().is_empty()
    })
    .await;
    drop(idle);
    // A hundred forgeries: every one refused and counted, one warning line.
    for i in 0..100 {
        let r = post(&client, port, &format!("wh_forged_{i}"), "ftjob-a", true)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "tunewatch_webhooks_received_total{source=\"prod\",outcome=\"bad_signature\"} 100"
        ),
        "{metrics}"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let lines = setup
        .log("run.log")
        .matches("a webhook was refused")
        .count();
    assert_eq!(lines, 1, "said once a minute, not once a webhook");
}
