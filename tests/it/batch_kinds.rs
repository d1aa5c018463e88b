//! Batches on every provider through the real binary (DESIGN.md, "Batches on every provider"):
//! Anthropic, Gemini, Mistral, Together, Vertex AI, Bedrock and Fireworks against loopback
//! stand-ins in their published shapes (`tests/fixtures/batches/`, with sources). Every state and
//! spelling in the common vocabulary with the provider's word kept, paging as each pages,
//! `batch.partially_failed` above the ratio and not below it, unknown states kept, an open batch
//! off the first page fetched by the batch client beside the fine-tuning one, the alert's counts,
//! progress and output locations, and `check` refusing what a kind has no API for.

use crate::common;

use common::batch_apis::batch_fixture;
use common::clouds::*;
use common::*;
use serde_json::{Value, json};

fn once(setup: &Setup) {
    let o = setup.command(&["once"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// (type, status, provider, provider_status) of the events delivered since `from`, sorted
/// (deliveries of one round run concurrently).
fn events(hook: &Hook, from: usize) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut got: Vec<_> = hook
        .delivered()
        .iter()
        .skip(from)
        .map(|r| {
            (
                s(&r.body["type"]),
                s(&r.body["status"]),
                s(&r.body["provider"]),
                s(&r.body["provider_status"]),
            )
        })
        .collect();
    got.sort();
    got
}

fn ev(t: &str, status: &str, provider: &str, word: &str) -> (String, String, String, String) {
    (t.into(), status.into(), provider.into(), word.into())
}

/// Batch events to the signed webhook and, as Slack text, to `chat`.
fn routes(chat: &Hook) -> String {
    format!(
        "\n[[route]]\nevents = [\"batch.*\"]\nnotifiers = [\"hook\", \"chat\"]\n\n\
         [[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
         retry_initial = \"100ms\"\n",
        chat.url()
    )
}

/// The Slack text of the last chat message.
fn last_chat(chat: &Hook) -> String {
    chat.delivered()
        .last()
        .map(|r| r.body.to_string())
        .unwrap_or_default()
}

fn data(fixture: &str, key: &str) -> Vec<Value> {
    let v = batch_fixture(fixture);
    if key.is_empty() {
        v.as_array().unwrap().clone()
    } else {
        v[key].as_array().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_batches_page_by_after_id_and_an_ended_batch_is_completed_expired_or_cancelled() {
    let cloud = Cloud::start().await;
    cloud.set_batches(
        "anthropic",
        data("anthropic_message_batches.derived.json", "data"),
    );
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let source = format!(
        "[[source]]\nname = \"claude\"\nkind = \"anthropic\"\napi_base = \"{}\"\n\
         api_key_file = \"api.key\"\npage_size = 1\n",
        cloud.url("/v1")
    );
    let setup = Setup::with_source(&source, &hook.url(), &routes(&chat));
    once(&setup);
    assert!(hook.delivered().is_empty(), "the baseline is silent");
    let lists: Vec<String> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /v1/messages/batches?"))
        .collect();
    assert_eq!(lists.len(), 3, "one batch a page: {lists:?}");
    assert!(lists[1].contains("after_id=msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"));

    // Ended with 100 of 2 000 errored or expired (5 %): completed, and partially failed.
    let running = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d";
    cloud.update_batch(
        "anthropic",
        running,
        json!({"processing_status": "ended", "ended_at": "2026-12-01T12:00:00Z",
               "request_counts": {"processing": 0, "succeeded": 1900, "errored": 60, "expired": 40}}),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 0),
        [
            ev("batch.completed", "completed", "anthropic", "ended"),
            ev("batch.partially_failed", "completed", "anthropic", "ended"),
        ]
    );
    let text = last_chat(&chat);
    assert!(
        text.contains("1,900 of 2,000 requests succeeded, 100 failed (5.0 %)"),
        "{text}"
    );
    // A cancellation that ended: cancelled.
    cloud.update_batch(
        "anthropic",
        "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
        json!({"processing_status": "ended", "ended_at": "2026-12-01T12:01:00Z",
               "request_counts": {"processing": 0, "succeeded": 50, "canceled": 100}}),
    );
    // New ones: every request expired; 5 of 1 000 errored (0.5 %, below the ratio); a state
    // this version does not know.
    let batch = |id: &str, status: &str, counts: Value| {
        json!({"id": id, "type": "message_batch", "processing_status": status,
               "request_counts": counts, "created_at": "2026-12-01T11:00:00Z",
               "expires_at": "2026-12-02T11:00:00Z", "cancel_initiated_at": null})
    };
    cloud.add_batch(
        "anthropic",
        batch(
            "msgbatch_expired",
            "ended",
            json!({"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 30}),
        ),
    );
    cloud.add_batch(
        "anthropic",
        batch(
            "msgbatch_fine",
            "ended",
            json!({"processing": 0, "succeeded": 995, "errored": 5, "canceled": 0, "expired": 0}),
        ),
    );
    cloud.add_batch(
        "anthropic",
        batch("msgbatch_new", "Archiving", json!({"processing": 10})),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 2),
        [
            ev("batch.cancelled", "cancelled", "anthropic", "ended"),
            ev("batch.completed", "completed", "anthropic", "ended"),
            ev("batch.created", "archiving", "anthropic", "Archiving"),
            ev("batch.expired", "expired", "anthropic", "ended"),
        ],
        "a new batch in a state this version does not know is created in it, its word kept"
    );
    let archiving = hook
        .delivered()
        .into_iter()
        .find(|r| r.body["status"] == "archiving")
        .unwrap();
    assert_eq!(
        archiving.body["job"]["processing_status"], "Archiving",
        "the raw batch is sent unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_batches_page_by_token_are_read_whole_and_fail_below_the_ratio_only_as_completed() {
    let cloud = Cloud::start().await;
    cloud.set_batches("gemini", data("gemini_batches.derived.json", "operations"));
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let source = format!(
        "[[source]]\nname = \"gem\"\nkind = \"gemini\"\napi_base = \"{}\"\n\
         api_key_file = \"api.key\"\npage_size = 1\nwatch = [\"batches\"]\n",
        cloud.url("/v1beta")
    );
    let setup = Setup::with_source(&source, &hook.url(), &routes(&chat));
    once(&setup);
    once(&setup);
    let lists = cloud
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v1beta/batches?"))
        .count();
    assert_eq!(lists, 4, "no promised order: two pages, every poll");
    let running = "batches/123456789abc";
    cloud.update_batch(
        "gemini",
        running,
        json!({"metadata": {"state": "BATCH_STATE_SUCCEEDED", "endTime": "2026-12-01T11:00:00Z",
               "batchStats": {"requestCount": "1000", "successfulRequestCount": "995",
                              "failedRequestCount": "5", "pendingRequestCount": "0"},
               "output": {"responsesFile": "files/batch-123456789abc-out"}}, "done": true}),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 0),
        [ev(
            "batch.completed",
            "completed",
            "gemini",
            "BATCH_STATE_SUCCEEDED"
        )],
        "0.5 % failed is below batch_failed_ratio (1 %)"
    );
    let text = last_chat(&chat);
    for want in [
        "995 of 1,000 requests succeeded, 5 failed (0.5 %)",
        "models/gemini-2.5-flash",
        "files/batch-123456789abc-out",
        "1h (ended",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    cloud.add_batch(
        "gemini",
        json!({"name": "batches/failing1", "done": true,
               "error": {"code": 3, "message": "input file has no requests"},
               "metadata": {"model": "models/gemini-2.5-pro", "state": "BATCH_STATE_FAILED",
                            "createTime": "2026-12-01T11:00:00Z"}}),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 1),
        [ev("batch.failed", "failed", "gemini", "BATCH_STATE_FAILED")]
    );
    assert!(
        last_chat(&chat).contains("input file has no requests"),
        "{}",
        last_chat(&chat)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mistral_batches_page_by_number_and_together_batches_come_whole_with_their_progress() {
    let cloud = Cloud::start().await;
    cloud.set_batches("mistral", data("mistral_batch_jobs.derived.json", "data"));
    cloud.set_batches("together", data("together_batches.derived.json", ""));
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let source = format!(
        "[[source]]\nname = \"mist\"\nkind = \"mistral\"\napi_base = \"{url}\"\n\
         api_key_file = \"api.key\"\npage_size = 1\nwatch = [\"batches\"]\n\n\
         [[source]]\nname = \"tog\"\nkind = \"together\"\napi_base = \"{url}\"\n\
         api_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
        url = cloud.url("/v1")
    );
    let setup = Setup::with_source(&source, &hook.url(), &routes(&chat));
    once(&setup);
    let pages: Vec<String> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /v1/batch/jobs?"))
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].contains("page=1") && pages[1].contains("order_by=-created"));
    assert_eq!(
        cloud
            .requests()
            .iter()
            .filter(|r| r.as_str() == "GET /v1/batches")
            .count(),
        1,
        "Together's list is one request"
    );
    let mistral = "b7f3e2c1-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    let together = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
    cloud.update_batch(
        "mistral",
        mistral,
        json!({"status": "TIMEOUT_EXCEEDED", "completed_at": 1796205600}),
    );
    cloud.update_batch("together", together, json!({"status": "CANCELING"}));
    once(&setup);
    assert_eq!(
        events(&hook, 0),
        [
            ev("batch.cancelling", "cancelling", "together", "CANCELING"),
            ev("batch.expired", "expired", "mistral", "TIMEOUT_EXCEEDED"),
        ]
    );
    let texts: Vec<String> = chat
        .delivered()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    let cancelling = texts.iter().find(|t| t.contains("cancelling")).unwrap();
    assert!(
        cancelling.contains("35 %"),
        "progress while it runs: {cancelling}"
    );
    assert!(cancelling.contains("Llama-3.3-70B"), "{cancelling}");
    let expired = texts.iter().find(|t| t.contains("expired")).unwrap();
    assert!(
        expired.contains("118 of 400 requests succeeded, 2 failed"),
        "{expired}"
    );
    cloud.update_batch("together", together, json!({"status": "CANCELLED"}));
    once(&setup);
    assert_eq!(
        events(&hook, 2),
        [ev("batch.cancelled", "cancelled", "together", "CANCELLED")]
    );
}

fn bedrock_both(cloud: &Cloud) -> String {
    format!(
        "[[source]]\nname = \"aws\"\nkind = \"bedrock\"\napi_base = \"{}\"\nregion = \"us-east-1\"\n\
         page_size = 1\nwatch = [\"fine_tuning\", \"batches\"]\n\
         aws_access_key_id_file = \"aws.id\"\naws_secret_access_key_file = \"aws.secret\"\n\
         aws_session_token_file = \"aws.session\"\n",
        cloud.url("")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_batches_beside_its_fine_tuning_jobs_are_each_fetched_by_their_own_client() {
    let cloud = Cloud::start().await;
    {
        let mut s = cloud.state.lock().unwrap();
        s.aws = true;
        s.bedrock =
            cloud_fixture("bedrock", "jobs_list.derived.json")["modelCustomizationJobSummaries"]
                .as_array()
                .unwrap()
                .clone();
    }
    let mut batches = data(
        "bedrock_model_invocation_jobs.derived.json",
        "invocationJobSummaries",
    );
    // Both running: the older one is off the first page of a one-batch page.
    batches[1]["status"] = json!("InProgress");
    cloud.set_batches("bedrock", batches);
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let setup = Setup::with_source(&bedrock_both(&cloud), &hook.url(), &routes(&chat));
    for (f, v) in [
        ("aws.id", AWS_KEY_ID),
        ("aws.secret", AWS_SECRET),
        ("aws.session", AWS_SESSION),
    ] {
        std::fs::write(setup.dir.path().join(f), v).unwrap();
    }
    // In one process, as the daemon runs: the first poll is a full scan, the next incremental.
    let daemon = tunewatch::Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    let older = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/zyxw9876vuts";
    cloud.update_batch(
        "bedrock",
        older,
        json!({"status": "PartiallyCompleted", "endTime": "2026-12-01T11:00:00.000Z",
               "processedRecordCount": 200, "successRecordCount": 180, "errorRecordCount": 20}),
    );
    let before = cloud.requests().len();
    daemon.once().await.unwrap();
    assert_eq!(
        events(&hook, 0),
        [
            ev(
                "batch.completed",
                "completed",
                "bedrock",
                "PartiallyCompleted"
            ),
            ev(
                "batch.partially_failed",
                "completed",
                "bedrock",
                "PartiallyCompleted"
            ),
        ]
    );
    let asked = &cloud.requests()[before..];
    assert!(
        asked
            .iter()
            .any(|r| r.starts_with("GET /model-invocation-job/arn%3Aaws%3Abedrock")),
        "the open batch off the first page is fetched by id, singular path: {asked:?}"
    );
    assert!(
        !asked
            .iter()
            .any(|r| r.contains("model-customization-jobs/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Amodel-invocation-job")),
        "never through the fine-tuning client: {asked:?}"
    );
    assert!(cloud.state.lock().unwrap().sigv4_refusals.is_empty());
    let text = last_chat(&chat);
    for want in [
        "180 of 200 requests succeeded, 20 failed (10.0 %)",
        "s3://acme-batch/out/",
        "amazon.nova-lite-v1:0",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    for (word, normal) in [("Stopping", "cancelling"), ("Stopped", "cancelled")] {
        cloud.update_batch(
            "bedrock",
            "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcd1234efgh",
            json!({"status": word}),
        );
        let seen = hook.delivered().len();
        daemon.once().await.unwrap();
        assert_eq!(
            events(&hook, seen),
            [ev(&format!("batch.{normal}"), normal, "bedrock", word)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_and_fireworks_batches_give_counts_progress_locations_and_finalizing() {
    let cloud = Cloud::start().await;
    cloud.set_batches(
        "vertex",
        data(
            "vertex_batch_prediction_jobs.derived.json",
            "batchPredictionJobs",
        ),
    );
    cloud.set_batches(
        "fireworks",
        data(
            "fireworks_batch_inference_jobs.derived.json",
            "batchInferenceJobs",
        ),
    );
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let source = format!(
        "[[source]]\nname = \"vtx\"\nkind = \"vertex_ai\"\napi_base = \"{v}\"\nproject = \"tunewatch-test\"\n\
         location = \"us-central1\"\ngoogle_credentials_file = \"sa.json\"\nwatch = [\"batches\"]\n\n\
         [[source]]\nname = \"fw\"\nkind = \"fireworks\"\napi_base = \"{v}\"\naccount = \"acme\"\n\
         api_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
        v = cloud.url("/v1")
    );
    let setup = Setup::with_source(&source, &hook.url(), &routes(&chat));
    std::fs::write(
        setup.dir.path().join("sa.json"),
        cloud.service_account_key(),
    )
    .unwrap();
    once(&setup);
    assert!(
        cloud.requests().iter().any(
            |r| r.starts_with("GET /v1/accounts/acme/batchInferenceJobs?")
                && r.contains("orderBy=createTime+desc")
        ),
        "{:?}",
        cloud.requests()
    );
    let vertex =
        "projects/tunewatch-test/locations/us-central1/batchPredictionJobs/4455667788990011223";
    cloud.update_batch(
        "vertex",
        vertex,
        json!({"state": "JOB_STATE_PARTIALLY_SUCCEEDED", "endTime": "2026-12-01T12:00:00Z",
               "completionStats": {"successfulCount": "900", "failedCount": "100", "incompleteCount": "0"},
               "outputInfo": {"gcsOutputDirectory": "gs://acme-batch/eval/out/prediction-2026-12-01"}}),
    );
    let fireworks = "accounts/acme/batchInferenceJobs/bij-5c6d7e";
    cloud.update_batch(
        "fireworks",
        fireworks,
        json!({"state": "JOB_STATE_WRITING_RESULTS",
               "jobProgress": {"percent": 99, "totalProcessedRequests": 800,
                               "successfullyProcessedRequests": 799, "failedRequests": 1}}),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 0),
        [
            ev(
                "batch.completed",
                "completed",
                "vertex_ai",
                "JOB_STATE_PARTIALLY_SUCCEEDED"
            ),
            ev(
                "batch.finalizing",
                "finalizing",
                "fireworks",
                "JOB_STATE_WRITING_RESULTS"
            ),
            ev(
                "batch.partially_failed",
                "completed",
                "vertex_ai",
                "JOB_STATE_PARTIALLY_SUCCEEDED"
            ),
        ]
    );
    let texts: Vec<String> = chat
        .delivered()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert!(
        texts.iter().any(
            |t| t.contains("gs://acme-batch/eval/out/prediction-2026-12-01")
                && t.contains("900 of 1,000 requests succeeded")
        ),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("finalizing") && t.contains("100 %")),
        "a finalizing batch shows how far it is: {texts:?}"
    );
    cloud.update_batch(
        "fireworks",
        fireworks,
        json!({"state": "JOB_STATE_COMPLETED", "jobProgress": {"percent": 100}}),
    );
    once(&setup);
    assert_eq!(
        events(&hook, 3),
        [ev(
            "batch.completed",
            "completed",
            "fireworks",
            "JOB_STATE_COMPLETED"
        )],
        "1 failed of 800 is below the ratio"
    );
}

#[test]
fn check_refuses_batches_on_hugging_face_and_fine_tuning_on_batch_only_kinds_with_their_line() {
    let case = |source: &str| {
        let setup = Setup::with_source(source, "http://127.0.0.1:9/hook", "");
        let o = setup.command(&["check"]).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = case(
        "[[source]]\nname = \"hf\"\nkind = \"huggingface\"\nnamespace = \"acme\"\n\
         api_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("line 9")
            && out.contains("`watch` \"batches\": kind = \"huggingface\" has no batch API"),
        "{out}"
    );
    let (code, out) = case(
        "[[source]]\nname = \"claude\"\nkind = \"anthropic\"\napi_key_file = \"api.key\"\n\
         watch = [\"fine_tuning\", \"batches\"]\n",
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("`watch` \"fine_tuning\": kind = \"anthropic\" has no fine-tuning API"),
        "{out}"
    );
    let (code, out) = case(
        "[[source]]\nname = \"claude\"\nkind = \"anthropic\"\napi_key_file = \"api.key\"\n\n\
         [[source]]\nname = \"tog\"\nkind = \"together\"\napi_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
    );
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "(anthropic: batches)",
        "anthropic counts a batch's requests only when it ends",
        "together gives a batch's progress but no request counts",
        "its batch list promises no order",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
}
