//! Every provider through the real binary against its own loopback stand-in (DESIGN.md,
//! Sources): the silent baseline, each status transition as a normalised event carrying the
//! provider's own word, paging across pages, a rejected key named with its provider, and
//! malformed entries skipped.

use crate::common;

use std::path::Path;

use common::providers::{Provider, ProviderApi};
use common::*;
use serde_json::{Value, json};

fn fixture(provider: &str, name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn once(setup: &Setup) -> (bool, String) {
    let o = setup.command(&["once"]).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn source(kind: &str, api: &ProviderApi, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{kind}\"\nkind = \"{kind}\"\napi_base = \"{}\"\n\
         api_key_file = \"api.key\"\npage_size = 2\nmax_retries = 0\n{extra}\n",
        api.base()
    )
}

/// (type, status, provider, provider_status) of every delivered event, in order.
fn delivered(hook: &Hook) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    hook.delivered()
        .iter()
        .map(|r| {
            (
                s(&r.body["type"]),
                s(&r.body["status"]),
                s(&r.body["provider"]),
                s(&r.body["provider_status"]),
            )
        })
        .collect()
}

fn mistral_job(id: &str, status: &str, created_at: i64) -> Value {
    let mut j = fixture("mistral", "jobs_list.json")["data"][0].clone();
    j["id"] = json!(id);
    j["status"] = json!(status);
    j["created_at"] = json!(created_at);
    j
}

#[tokio::test(flavor = "multi_thread")]
async fn mistral_jobs_page_by_page_normalised_with_their_own_words() {
    let fixture_jobs = fixture("mistral", "jobs_list.json")["data"]
        .as_array()
        .unwrap()
        .clone();
    let mut jobs = vec![mistral_job("m-3", "QUEUED", 1732700000)];
    jobs.extend(fixture_jobs);
    // A malformed entry (no status) is skipped, the rest of its page kept.
    jobs.push(json!({"id": "m-broken", "object": "job"}));
    let api = ProviderApi::start(Provider::Mistral, jobs).await;
    let hook = Hook::start().await;
    let setup = Setup::with_source(&source("mistral", &api, ""), &hook.url(), "");
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    assert!(err.contains("skipped an entry that is not a job"), "{err}");
    // page_size = 2 and 4 entries: pages 0 and 1, every poll (Mistral promises no order).
    let pages: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("list"))
        .collect();
    assert_eq!(
        pages,
        ["list?page=0&page_size=2", "list?page=1&page_size=2"]
    );
    assert!(hook.delivered().is_empty(), "the baseline is silent");

    for (word, normal) in [
        ("VALIDATING", "validating_files"),
        ("RUNNING", "running"),
        ("CANCELLATION_REQUESTED", "cancelling"),
        ("CANCELLED", "cancelled"),
    ] {
        api.update("m-3", json!({"status": word}));
        assert!(once(&setup).0);
        let last = delivered(&hook).pop().unwrap();
        assert_eq!(
            last,
            (
                format!("fine_tuning.job.{normal}"),
                normal.into(),
                "mistral".into(),
                word.into()
            )
        );
    }
    api.update(
        "a0c1f2de-7a51-4c9b-9a43-3f0d9e6f1b22",
        json!({"status": "FAILED_VALIDATION"}),
    );
    assert!(once(&setup).0);
    let last = delivered(&hook).pop().unwrap();
    assert_eq!(last.0, "fine_tuning.job.failed");
    assert_eq!(last.3, "FAILED_VALIDATION");
    // A new job on the second page is still found: every page is read.
    api.add(mistral_job("m-4", "SUCCESS", 1732800000));
    assert!(once(&setup).0);
    let last = delivered(&hook).pop().unwrap();
    assert_eq!(
        (last.0.as_str(), last.3.as_str()),
        ("fine_tuning.job.succeeded", "SUCCESS")
    );
    let o = setup.command(&["status"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("m-3") && out.contains("cancelled"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn together_lists_everything_at_once_with_iso_times_and_model_output_names() {
    let mut jobs = fixture("together", "fine_tunes_list.json")["data"]
        .as_array()
        .unwrap()
        .clone();
    jobs.push(json!({"id": "ft-c", "status": "pending", "model": "m",
                     "created_at": "2024-11-24T10:00:00Z"}));
    // A malformed entry (no id) is skipped; the rest of the answer is kept.
    jobs.push(json!({"status": "running"}));
    let running = jobs[0]["id"].as_str().unwrap().to_string();
    let api = ProviderApi::start(Provider::Together, jobs).await;
    let hook = Hook::start().await;
    let setup = Setup::with_source(
        &source("together", &api, ""),
        &hook.url(),
        "\n[prices]\n\"meta-llama/Meta-Llama-3.1-8B\" = 0.48\n",
    );
    assert!(once(&setup).0);
    for word in ["uploading", "compressing"] {
        // Still running in normalised words: no event.
        api.update(&running, json!({"status": word}));
        assert!(once(&setup).0);
    }
    assert!(hook.delivered().is_empty(), "{:?}", delivered(&hook));
    api.update(
        &running,
        json!({"status": "completed", "token_count": 3_000_000,
                                "updated_at": "2024-11-26T11:30:00.000Z"}),
    );
    assert!(once(&setup).0);
    let d = hook.delivered();
    assert_eq!(d.len(), 1);
    let e = &d[0].body;
    assert_eq!(
        (e["type"].as_str(), e["provider_status"].as_str()),
        (Some("fine_tuning.job.succeeded"), Some("completed"))
    );
    assert_eq!(
        e["job"]["created_at"], "2024-11-26T10:00:00.000Z",
        "the job is sent as the API sent it"
    );
    // Cost from Together's token_count at the configured price, on the normalised status.
    assert_eq!(e["insight"]["cost_usd"], 1.44, "{}", e["insight"]);
    assert_eq!(e["insight"]["cost_estimated"], false);
    // The alert's subject and facts use the output name and the ISO times.
    api.add(json!({"id": "ft-new", "status": "error", "model": "m", "created_at": "2024-11-27T10:00:00Z",
                   "updated_at": "2024-11-27T10:05:00Z"}));
    assert!(once(&setup).0);
    let last = delivered(&hook).pop().unwrap();
    assert_eq!(
        (last.0.as_str(), last.3.as_str()),
        ("fine_tuning.job.failed", "error")
    );
    // Every other word, on another job: pending and queued are both `queued` (no event).
    for (word, event) in [
        ("queued", None),
        ("running", Some("running")),
        ("cancel_requested", Some("cancelling")),
        ("cancelled", Some("cancelled")),
    ] {
        let before = hook.delivered().len();
        api.update("ft-c", json!({"status": word}));
        assert!(once(&setup).0);
        let d = delivered(&hook);
        match event {
            None => assert_eq!(d.len(), before, "{word}"),
            Some(normal) => assert_eq!(
                d.last().unwrap(),
                &(
                    format!("fine_tuning.job.{normal}"),
                    normal.to_string(),
                    "together".to_string(),
                    word.to_string()
                )
            ),
        }
    }
    // One request per poll: the whole list.
    assert!(
        api.requests().iter().all(|r| r == "list?"),
        "{:?}",
        api.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_sends_its_key_and_api_version_and_pages_with_after() {
    let job = |id: &str, status: &str| {
        let mut j = tunewatch_job(id, status);
        j["created_at"] = json!(1732600000);
        j
    };
    let api = ProviderApi::start(
        Provider::Azure,
        vec![
            job("ftjob-c", "pending"),
            job("ftjob-b", "running"),
            job("ftjob-a", "succeeded"),
        ],
    )
    .await;
    let hook = Hook::start().await;
    let setup = Setup::with_source(
        &source("azure_openai", &api, "insight = false"),
        &hook.url(),
        "",
    );
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    let lists: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("list"))
        .collect();
    assert_eq!(
        lists,
        [
            "list?api-version=2024-10-21&limit=2",
            "list?api-version=2024-10-21&limit=2&after=ftjob-b"
        ]
    );
    api.update("ftjob-c", json!({"status": "running"}));
    assert!(once(&setup).0);
    assert_eq!(
        delivered(&hook),
        [(
            "fine_tuning.job.running".into(),
            "running".into(),
            "azure_openai".into(),
            "running".into()
        )]
    );
    for (id, status) in [("ftjob-c", "succeeded"), ("ftjob-b", "failed")] {
        api.update(id, json!({"status": status}));
        assert!(once(&setup).0);
        let last = delivered(&hook).pop().unwrap();
        assert_eq!(
            (last.0, last.3),
            (format!("fine_tuning.job.{status}"), status.to_string())
        );
    }
    // A malformed entry is skipped, the rest kept.
    api.add(json!({"id": "ftjob-bad", "object": "fine_tuning.job"}));
    let (ok, err) = once(&setup);
    assert!(
        ok && err.contains("skipped an entry that is not a job"),
        "{err}"
    );
    // Azure's `pending` is `queued`: a job found pending raises `created` in status queued.
    api.add(job("ftjob-d", "pending"));
    assert!(once(&setup).0);
    let d = hook.delivered();
    let last = &d.last().unwrap().body;
    assert_eq!(last["type"], "fine_tuning.job.created");
    assert_eq!(
        (last["status"].as_str(), last["provider_status"].as_str()),
        (Some("queued"), Some("pending"))
    );
}

fn tunewatch_job(id: &str, status: &str) -> Value {
    common::job(id, status, json!({}))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_is_one_sentence_naming_the_provider_and_never_the_key() {
    for (provider, kind) in [
        (Provider::Azure, "azure_openai"),
        (Provider::Mistral, "mistral"),
        (Provider::Together, "together"),
    ] {
        let api = ProviderApi::start(provider, vec![]).await;
        api.set_key("another-key");
        let setup = Setup::with_source(&source(kind, &api, ""), "http://127.0.0.1:9/hook", "");
        let (ok, err) = once(&setup);
        assert!(!ok, "{kind}");
        assert!(
            err.contains(&format!(
                "the API key was rejected by {} ({kind}, HTTP 401",
                api.base()
            )),
            "{kind}: {err}"
        );
        assert!(!err.contains(API_KEY), "{kind}: the key leaked: {err}");
        assert_eq!(api.requests().len(), 1, "{kind}: 401 is not retried");
    }
}

#[test]
fn check_refuses_keys_that_do_not_apply_to_a_kind_and_azure_without_api_base() {
    let write = |source: &str| {
        let setup = Setup::with_source(source, "http://127.0.0.1:9/hook", "");
        let o = setup.command(&["check"]).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = write(
        "[[source]]\nname = \"m\"\nkind = \"mistral\"\napi_key_file = \"api.key\"\norganization = \"org-1\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("line 8")
            && err.contains("`organization` applies only to kind = \"openai\", not to \"mistral\""),
        "{err}"
    );
    let (code, err) =
        write("[[source]]\nname = \"a\"\nkind = \"azure_openai\"\napi_key_file = \"api.key\"\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("a azure_openai source needs `api_base`"),
        "{err}"
    );
    let (code, err) = write(
        "[[source]]\nname = \"t\"\nkind = \"together\"\napi_key_file = \"api.key\"\napi_version = \"2024-10-21\"\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("`api_version` applies only to kind = \"azure_openai\""),
        "{err}"
    );
    let (code, err) =
        write("[[source]]\nname = \"t\"\nkind = \"huggingface\"\napi_key_file = \"api.key\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("huggingface"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistral_page_repeated_under_an_inflated_total_stops_the_poll_said_once() {
    let jobs: Vec<Value> = (0..2)
        .map(|i| mistral_job(&format!("m-{i}"), "RUNNING", 1732700000 + i))
        .collect();
    let api = ProviderApi::start(Provider::Mistral, jobs).await;
    {
        let mut s = api.state.lock().unwrap();
        s.claimed_total = Some(1_000_000);
        s.same_page = true;
    }
    let hook = Hook::start().await;
    let setup = Setup::with_source(&source("mistral", &api, ""), &hook.url(), "");
    for poll in 1..=3 {
        let before = api.requests().len();
        let (ok, err) = once(&setup);
        assert!(ok, "{err}");
        assert_eq!(
            api.requests().len() - before,
            2,
            "poll {poll}: the second page repeats the first, and paging stops there"
        );
        assert_eq!(
            err.matches("twice in one poll").count(),
            1,
            "said once per poll: {err}"
        );
        assert!(
            err.contains("a page of nothing but copies stopped the paging"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistral_total_smaller_than_the_jobs_returned_does_not_hide_the_rest() {
    let jobs: Vec<Value> = (0..5)
        .map(|i| mistral_job(&format!("m-{i}"), "RUNNING", 1732700000 + i))
        .collect();
    let api = ProviderApi::start(Provider::Mistral, jobs).await;
    api.state.lock().unwrap().claimed_total = Some(1);
    let hook = Hook::start().await;
    let setup = Setup::with_source(&source("mistral", &api, ""), &hook.url(), "");
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.starts_with("list"))
        .count();
    assert_eq!(
        lists, 3,
        "pages of 2, 2 and 1: the short page ends the list"
    );
    let o = setup.command(&["status"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for i in 0..5 {
        assert!(out.contains(&format!("m-{i}")), "m-{i} is watched: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_words_in_any_case_or_spacing_are_one_status_and_an_empty_one_is_none() {
    let job = |id: &str, status: &str| {
        let mut j = tunewatch_job(id, status);
        j["created_at"] = json!(1732600000);
        j
    };
    let api = ProviderApi::start(
        Provider::Azure,
        vec![job("ftjob-a", "Running"), job("ftjob-b", "running")],
    )
    .await;
    let hook = Hook::start().await;
    // The route names the lower-case words only, as the README tells people to write them.
    let setup = Setup::with_source(
        &source("azure_openai", &api, "insight = false"),
        &hook.url(),
        "",
    );
    setup.edit(|t| {
        t.replace(
            "events = [\"fine_tuning.job.*\"]",
            "events = [\"fine_tuning.job.succeeded\", \"fine_tuning.job.failed\"]",
        )
    });
    assert!(once(&setup).0);
    api.update("ftjob-a", json!({"status": "SUCCEEDED"}));
    api.update("ftjob-b", json!({"status": "failed "}));
    assert!(once(&setup).0);
    let mut got = delivered(&hook);
    got.sort();
    assert_eq!(
        got,
        [
            (
                "fine_tuning.job.failed".into(),
                "failed".into(),
                "azure_openai".into(),
                "failed ".into()
            ),
            (
                "fine_tuning.job.succeeded".into(),
                "succeeded".into(),
                "azure_openai".into(),
                "SUCCEEDED".into()
            ),
        ]
    );
    // An empty status is no status: the entry is skipped, never a `fine_tuning.job.` event.
    api.add(job("ftjob-c", "  "));
    let (ok, err) = once(&setup);
    assert!(ok && err.contains("its status is empty"), "{err}");
    assert_eq!(delivered(&hook).len(), 2);
}
