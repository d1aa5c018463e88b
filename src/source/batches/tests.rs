use serde_json::json;

use super::*;

/// A provider's state function and its (word, common word) pairs.
type Case = (fn(&str) -> String, &'static [(&'static str, &'static str)]);

#[test]
// Long by design: one table of every provider's spellings.
fn every_providers_states_and_spellings_reach_the_common_words_and_unknown_ones_are_kept() {
    let cases: &[Case] = &[
        (
            gemini::state,
            &[
                ("BATCH_STATE_PENDING", "validating"),
                ("BATCH_STATE_RUNNING", "in_progress"),
                ("BATCH_STATE_SUCCEEDED", "completed"),
                ("BATCH_STATE_FAILED", "failed"),
                ("BATCH_STATE_CANCELLED", "cancelled"),
                ("batch_state_canceled", "cancelled"),
                ("BATCH_STATE_EXPIRED", "expired"),
                ("BATCH_STATE_THAWING", "thawing"),
            ],
        ),
        (
            mistral::state,
            &[
                ("QUEUED", "validating"),
                ("RUNNING", "in_progress"),
                ("SUCCESS", "completed"),
                ("FAILED", "failed"),
                ("TIMEOUT_EXCEEDED", "expired"),
                ("CANCELLATION_REQUESTED", "cancelling"),
                ("CANCELLED", "cancelled"),
                ("Warming_Up", "warming_up"),
            ],
        ),
        (
            together::state,
            &[
                ("VALIDATING", "validating"),
                ("IN_PROGRESS", "in_progress"),
                ("CANCELING", "cancelling"),
                ("COMPLETED", "completed"),
                ("FAILED", "failed"),
                ("EXPIRED", "expired"),
                ("CANCELLED", "cancelled"),
                ("canceled", "cancelled"),
            ],
        ),
        (
            vertex::state,
            &[
                ("JOB_STATE_QUEUED", "validating"),
                ("JOB_STATE_PENDING", "validating"),
                ("JOB_STATE_RUNNING", "in_progress"),
                ("JOB_STATE_UPDATING", "in_progress"),
                ("JOB_STATE_PAUSED", "in_progress"),
                ("JOB_STATE_SUCCEEDED", "completed"),
                ("JOB_STATE_PARTIALLY_SUCCEEDED", "completed"),
                ("JOB_STATE_FAILED", "failed"),
                ("JOB_STATE_CANCELLING", "cancelling"),
                ("JOB_STATE_CANCELLED", "cancelled"),
                ("JOB_STATE_EXPIRED", "expired"),
                ("JOB_STATE_UNSPECIFIED", "unspecified"),
            ],
        ),
        (
            bedrock::state,
            &[
                ("Submitted", "validating"),
                ("Validating", "validating"),
                ("Scheduled", "validating"),
                ("InProgress", "in_progress"),
                ("Stopping", "cancelling"),
                ("Completed", "completed"),
                ("PartiallyCompleted", "completed"),
                ("Failed", "failed"),
                ("Stopped", "cancelled"),
                ("Expired", "expired"),
                ("Paused", "paused"),
            ],
        ),
        (
            fireworks::state,
            &[
                ("JOB_STATE_CREATING", "validating"),
                ("JOB_STATE_VALIDATING", "validating"),
                ("JOB_STATE_PENDING", "validating"),
                ("JOB_STATE_RUNNING", "in_progress"),
                ("JOB_STATE_PAUSED", "in_progress"),
                ("JOB_STATE_WRITING_RESULTS", "finalizing"),
                ("JOB_STATE_CANCELLING", "cancelling"),
                ("JOB_STATE_COMPLETED", "completed"),
                ("JOB_STATE_FAILED", "failed"),
                ("JOB_STATE_CANCELLED", "cancelled"),
                ("JOB_STATE_EXPIRED", "expired"),
                ("JOB_STATE_DELETING", "deleting"),
            ],
        ),
    ];
    for (state, words) in cases {
        for (word, common) in *words {
            assert_eq!(state(word), *common, "{word}");
        }
    }
}

#[test]
fn anthropics_ended_is_completed_expired_or_cancelled_by_its_counts() {
    let ended = |counts: serde_json::Value, cancel: serde_json::Value| {
        json!({"id": "msgbatch_1", "type": "message_batch", "processing_status": "ended",
               "request_counts": counts, "cancel_initiated_at": cancel})
    };
    let c = |s: u64, e: u64, x: u64, k: u64| json!({"processing": 0, "succeeded": s, "errored": e, "expired": x, "canceled": k});
    for (raw, common) in [
        (ended(c(90, 10, 0, 0), json!(null)), "completed"),
        (ended(c(0, 0, 50, 0), json!(null)), "expired"),
        (ended(c(10, 0, 40, 0), json!(null)), "completed"),
        (
            ended(c(5, 0, 0, 45), json!("2026-12-01T10:00:00Z")),
            "cancelled",
        ),
    ] {
        assert_eq!(anthropic::state("ended", &raw), common, "{raw}");
    }
    assert_eq!(anthropic::state("canceling", &json!({})), "cancelling");
    let v = view(&ended(c(90, 6, 4, 0), json!(null))).unwrap();
    assert_eq!(
        v["request_counts"],
        json!({"total": 100, "completed": 90, "failed": 10})
    );
    let running = json!({"id": "msgbatch_1", "type": "message_batch", "processing_status": "in_progress",
                         "request_counts": c(0, 0, 0, 0)});
    assert_eq!(
        view(&running).unwrap()["request_counts"],
        json!(null),
        "no counts mid-run"
    );
}

#[test]
fn every_batch_reads_in_openai_fields_with_counts_progress_and_locations() {
    let gemini = json!({"name": "batches/abc", "metadata": {"model": "models/gemini-2.5-flash",
        "state": "BATCH_STATE_SUCCEEDED", "createTime": "2026-12-01T10:00:00Z",
        "batchStats": {"requestCount": "100", "successfulRequestCount": "97", "failedRequestCount": "3"},
        "output": {"responsesFile": "files/out-1"}}});
    let v = view(&gemini).unwrap();
    assert_eq!(
        v["request_counts"],
        json!({"total": 100, "completed": 97, "failed": 3})
    );
    assert_eq!(v["output_file_id"], "files/out-1");
    assert_eq!(v["created_at"], 1_796_119_200);
    let vertex = json!({"name": "projects/p/locations/l/batchPredictionJobs/9", "model": "publishers/google/models/gemini-2.0-flash-001",
        "completionStats": {"successfulCount": "8", "failedCount": "1", "incompleteCount": "1"},
        "outputInfo": {"gcsOutputDirectory": "gs://b/out"}});
    let v = view(&vertex).unwrap();
    assert_eq!(
        v["request_counts"],
        json!({"total": 10, "completed": 8, "failed": 1})
    );
    assert_eq!(v["output_uri"], "gs://b/out");
    let bedrock = json!({"jobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/x1",
        "totalRecordCount": 1000, "successRecordCount": 990, "errorRecordCount": 10,
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://b/out/"}}});
    let v = view(&bedrock).unwrap();
    assert_eq!(v["request_counts"]["failed"], 10);
    assert_eq!(v["output_uri"], "s3://b/out/");
    let together = json!({"id": "b1", "user_id": "u", "job_deadline": "2026-12-02T10:00:00Z",
        "status": "IN_PROGRESS", "progress": 42.0});
    assert_eq!(view(&together).unwrap()["progress"], 0.42);
    let fireworks = json!({"name": "accounts/a/batchInferenceJobs/j", "jobProgress": {"percent": 30,
        "totalInputRequests": 10, "successfullyProcessedRequests": 3}});
    assert_eq!(view(&fireworks).unwrap()["progress"], 0.3);
    let mistral = json!({"id": "u", "object": "batch", "total_requests": 2, "succeeded_requests": 2, "failed_requests": 0});
    assert_eq!(view(&mistral).unwrap()["request_counts"]["total"], 2);
    let openai = json!({"id": "batch_1", "object": "batch", "request_counts": {"total": 1}});
    assert_eq!(
        view(&openai),
        None,
        "OpenAI's own batches are read as they are"
    );
    let huge = json!({"name": "batches/h", "metadata": {"batchStats": {"requestCount": "18446744073709551617"}}});
    assert_eq!(
        view(&huge).unwrap()["request_counts"]["total"],
        "18446744073709551617",
        "a count above 2^64 is kept whole"
    );
}
