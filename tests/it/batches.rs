//! Batches (DESIGN.md, Sources: batches) through the real binary: `watch = ["fine_tuning",
//! "batches"]` lists both, a batch's transitions raise `batch.<status>` (OpenAI's own event
//! names), a completed batch with too many failed requests also raises `batch.partially_failed`,
//! a batch stuck in one status raises `batch.stalled`, and routes take `batch.*`.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn once(setup: &Setup) {
    let o = setup.command(&["once"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Batches and jobs go to different notifiers: `batch.*` to "batches", jobs to "hook".
fn setup(api: &Api, hook: &Hook, batches: &Hook, extra_source: &str) -> Setup {
    let setup = Setup::new(
        api,
        &hook.url(),
        &format!(
            r#"
[[notifier]]
name = "batches"
kind = "webhook"
url = "{}"
secret_file = "hook.secret"
retry_initial = "100ms"

[[route]]
events = ["batch.*"]
notifiers = ["batches"]
"#,
            batches.url()
        ),
    );
    setup.edit(|t| {
        t.replace(
            "page_size = 2",
            &format!("page_size = 2\nwatch = [\"fine_tuning\", \"batches\"]\n{extra_source}"),
        )
    });
    setup
}

fn types(hook: &Hook) -> Vec<String> {
    hook.delivered_types()
}

/// Two finished batches on the first page (page size 2), and an old one still in progress
/// beyond it.
fn add_two_new_and_one_old_running(api: &Api) {
    for (id, status) in [
        ("batch_new1", "completed"),
        ("batch_new2", "completed"),
        ("batch_old", "in_progress"),
    ] {
        api.state
            .lock()
            .unwrap()
            .batches
            .push(batch(id, status, json!({})));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_s_life_raises_batch_events_on_their_own_route() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    add_two_new_and_one_old_running(&api);
    let (hook, batches) = (Hook::start().await, Hook::start().await);
    let setup = setup(&api, &hook, &batches, "");
    once(&setup);
    assert!(
        batches.delivered().is_empty(),
        "the baseline is silent for batches too"
    );

    api.add_batch(batch(
        "batch_x",
        "validating",
        json!({"completed_at": null,
        "request_counts": {"total": 0, "completed": 0, "failed": 0}}),
    ));
    once(&setup);
    api.update(
        "batch_x",
        json!({"status": "in_progress",
        "request_counts": {"total": 1000, "completed": 10, "failed": 0}}),
    );
    once(&setup);
    api.update("batch_x", json!({"status": "finalizing"}));
    once(&setup);
    // 20 of 1000 failed: 2 %, above the default batch_failed_ratio of 1 %.
    api.update(
        "batch_x",
        json!({"status": "completed", "completed_at": 1711493163,
        "request_counts": {"total": 1000, "completed": 980, "failed": 20}}),
    );
    api.update(
        "batch_old",
        json!({"status": "expired", "expired_at": 1711557933}),
    );
    once(&setup);
    let mut got = types(&batches);
    got.sort();
    assert_eq!(
        got,
        [
            "batch.completed",
            "batch.created",
            "batch.expired",
            "batch.finalizing",
            "batch.in_progress",
            "batch.partially_failed"
        ]
    );
    assert!(
        hook.delivered().is_empty(),
        "the jobs' route does not get batch events: {:?}",
        types(&hook)
    );
    let d = batches.delivered();
    let completed = d
        .iter()
        .find(|r| r.body["type"] == "batch.completed")
        .unwrap();
    assert_eq!(completed.body["status"], "completed");
    assert_eq!(completed.body["previous_status"], "finalizing");
    assert_eq!(completed.body["job"]["request_counts"]["failed"], 20);
    // Both lists are paged, each with its own cursor.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.starts_with("/v1/batches?limit=Some(2)&after=Some("))
    );
    // A completed batch with few failures raises no partially_failed.
    api.add_batch(batch("batch_ok", "in_progress", json!({})));
    once(&setup);
    api.update(
        "batch_ok",
        json!({"status": "completed",
        "request_counts": {"total": 1000, "completed": 1000, "failed": 0}}),
    );
    once(&setup);
    assert_eq!(
        types(&batches)
            .iter()
            .filter(|t| *t == "batch.partially_failed")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_alerts_show_endpoint_counts_and_files_and_a_failed_batch_its_error() {
    let api = Api::start(vec![]).await;
    api.add_batch(batch(
        "batch_f",
        "in_progress",
        json!({"completed_at": null}),
    ));
    let (hook, batches) = (Hook::start().await, Hook::start().await);
    let setup = setup(&api, &hook, &batches, "");
    setup.edit(|t| {
        t.replace(
            &format!("url = \"{}\"", batches.url()),
            &format!("url = \"{}\"\nformat = \"slack\"", batches.url()),
        )
    });
    once(&setup);
    api.update(
        "batch_f",
        json!({"status": "failed", "failed_at": 1711471600,
        "errors": {"object": "list", "data": [{"code": "invalid_json_line",
            "message": "Line 3 is not valid JSON.", "param": null, "line": 3}]}}),
    );
    once(&setup);
    let d = batches.delivered();
    assert_eq!(d.len(), 1);
    let text = d[0].body.to_string();
    for needle in [
        "batch_f failed",
        "Batch batch_f failed: invalid_json_line: Line 3 is not valid JSON.",
        "/v1/completions",
        "100 total, 95 completed, 5 failed (5.0 %)",
        "file-cvaTdG",
        "file-HOWS94",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_stuck_in_one_status_raises_batch_stalled_once() {
    let api = Api::start(vec![]).await;
    api.add_batch(batch(
        "batch_s",
        "validating",
        json!({"completed_at": null}),
    ));
    let (hook, batches) = (Hook::start().await, Hook::start().await);
    let setup = setup(&api, &hook, &batches, "stall_after = \"1s\"");
    once(&setup);
    wait_until("batch.stalled", Duration::from_secs(15), || {
        once(&setup);
        !batches.delivered().is_empty()
    })
    .await;
    once(&setup);
    assert_eq!(types(&batches), ["batch.stalled"]);
    let e: &Value = &batches.delivered()[0].body;
    assert_eq!(e["status"], "validating");
}

#[test]
fn batches_are_refused_for_a_kind_without_a_batches_api() {
    let setup = Setup::with_source(
        "[[source]]\nname = \"hf\"\nkind = \"huggingface\"\nnamespace = \"acme\"\napi_key_file = \"api.key\"\nwatch = [\"fine_tuning\", \"batches\"]\n",
        "http://127.0.0.1:9/hook",
        "",
    );
    let o = setup.command(&["check"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("line 9")
            && err.contains("`watch` \"batches\": kind = \"huggingface\" has no batch API"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_unfinished_batch_beyond_the_first_page_is_followed_by_id() {
    let api = Api::start(vec![]).await;
    add_two_new_and_one_old_running(&api);
    let (hook, batches) = (Hook::start().await, Hook::start().await);
    let setup = setup(&api, &hook, &batches, "");
    let daemon = tunewatch::Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update(
        "batch_old",
        json!({"status": "cancelled", "cancelled_at": 1711557000}),
    );
    let before = api.requests().len();
    daemon.once().await.unwrap();
    let during: Vec<String> = api.requests()[before..].to_vec();
    assert_eq!(
        during,
        [
            "/v1/fine_tuning/jobs?limit=Some(2)&after=None",
            "/v1/batches?limit=Some(2)&after=None",
            "/v1/batches/batch_old"
        ],
        "the first page ends in known batches; the old one is fetched by id"
    );
    assert_eq!(types(&batches), ["batch.cancelled"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_above_2_pow_63_are_shown_whole_and_still_raise_partially_failed() {
    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    let batches = Hook::start().await;
    let setup = setup(&api, &hook, &batches, "");
    setup.edit(|t| {
        t.replace(
            "name = \"batches\"\nkind = \"webhook\"",
            "name = \"batches\"\nkind = \"webhook\"\nformat = \"slack\"",
        )
    });
    api.add_batch(batch("batch_big", "in_progress", json!({})));
    once(&setup);
    api.update(
        "batch_big",
        json!({"status": "completed",
               "request_counts": {"total": 18446744073709551616u128 as f64,
                                  "completed": 9223372036854775808u64,
                                  "failed": "9223372036854775808"}}),
    );
    once(&setup);
    let got = batches.delivered();
    let partially = got
        .iter()
        .find(|r| String::from_utf8_lossy(&r.raw_body).contains("partially"))
        .map(|r| String::from_utf8_lossy(&r.raw_body).into_owned());
    let text: String = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw_body).into_owned())
        .collect();
    assert!(
        partially.is_some(),
        "half failed is partially failed: {text}"
    );
    assert!(
        text.contains("9,223,372,036,854,775,808 failed"),
        "the failed count whole, not 0: {text}"
    );
    assert!(!text.contains(" 0 failed"), "{text}");
}
