//! Every provider's batches for the cost-per-poll table ([`crate::clouds::costs`]): 1 000 each
//! from the tests' fixtures, newest first, in the same running/finished mix as the jobs.

use serde_json::{Value, json};

use crate::clouds::{Kind, from, time};
use crate::stand_in::CloudState;
use crate::stand_in::batch_apis::batch_fixture;

fn first(fixture: &str, key: &str) -> Value {
    let v = batch_fixture(fixture);
    if key.is_empty() {
        v[0].clone()
    } else {
        v[key][0].clone()
    }
}

fn put(s: &mut CloudState, provider: &'static str, batches: Vec<Value>) {
    s.batches.insert(provider, batches);
}

pub(crate) fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            label: "anthropic",
            name: "anthropic",
            list: "/messages/batches",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\napi_key_file = \"api.key\"\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = first("anthropic_message_batches.derived.json", "data");
                from(
                    &t,
                    json!({"id": format!("msgbatch_bench{i:06}"),
                    "processing_status": if running { "in_progress" } else { "ended" },
                    "created_at": time(i)}),
                )
            },
            put: |s, b| put(s, "anthropic", b),
        },
        Kind {
            label: "gemini",
            name: "gemini",
            list: "/batches",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\napi_key_file = \"api.key\"\n",
                    c.url("/v1beta")
                )
            },
            job: |i, running| {
                let t = first("gemini_batches.derived.json", "operations");
                from(
                    &t,
                    json!({"name": format!("batches/bench{i:06}"),
                    "metadata": {"model": "models/gemini-2.5-flash", "createTime": time(i),
                                 "state": if running { "BATCH_STATE_RUNNING" } else { "BATCH_STATE_SUCCEEDED" }}}),
                )
            },
            put: |s, b| put(s, "gemini", b),
        },
        Kind {
            label: "mistral batches",
            name: "mistral",
            list: "/batch/jobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\napi_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = first("mistral_batch_jobs.derived.json", "data");
                from(
                    &t,
                    json!({"id": format!("bench-{i:06}"),
                    "status": if running { "RUNNING" } else { "SUCCESS" }}),
                )
            },
            put: |s, b| put(s, "mistral", b),
        },
        Kind {
            label: "together batches",
            name: "together",
            list: "/batches",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\napi_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = first("together_batches.derived.json", "");
                from(
                    &t,
                    json!({"id": format!("bench-{i:06}"), "created_at": time(i),
                    "status": if running { "IN_PROGRESS" } else { "COMPLETED" }}),
                )
            },
            put: |s, b| put(s, "together", b),
        },
        Kind {
            label: "vertex_ai batches",
            name: "vertex_ai",
            list: "/batchPredictionJobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\nproject = \"tunewatch-test\"\nlocation = \"us-central1\"\n\
                 google_credentials_file = \"google.json\"\nwatch = [\"batches\"]\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = first(
                    "vertex_batch_prediction_jobs.derived.json",
                    "batchPredictionJobs",
                );
                from(
                    &t,
                    json!({"name": format!("projects/tunewatch-test/locations/us-central1/batchPredictionJobs/{}", 5_000_000 + i),
                    "state": if running { "JOB_STATE_RUNNING" } else { "JOB_STATE_SUCCEEDED" },
                    "createTime": time(i)}),
                )
            },
            put: |s, b| put(s, "vertex", b),
        },
        Kind {
            label: "bedrock batches",
            name: "bedrock",
            list: "/model-invocation-jobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\nregion = \"us-east-1\"\naws_access_key_id_file = \"aws.id\"\n\
                 aws_secret_access_key_file = \"aws.secret\"\naws_session_token_file = \"aws.session\"\n\
                 watch = [\"batches\"]\n",
                    c.url("")
                )
            },
            job: |i, running| {
                let t = first(
                    "bedrock_model_invocation_jobs.derived.json",
                    "invocationJobSummaries",
                );
                from(
                    &t,
                    json!({"jobArn": format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/bench{i:06}"),
                    "status": if running { "InProgress" } else { "Completed" },
                    "submitTime": time(i)}),
                )
            },
            put: |s, b| {
                s.aws = true;
                put(s, "bedrock", b);
            },
        },
        Kind {
            label: "fireworks batches",
            name: "fireworks",
            list: "/batchInferenceJobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\naccount = \"acme\"\napi_key_file = \"api.key\"\nwatch = [\"batches\"]\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = first(
                    "fireworks_batch_inference_jobs.derived.json",
                    "batchInferenceJobs",
                );
                from(
                    &t,
                    json!({"name": format!("accounts/acme/batchInferenceJobs/bench{i:06}"),
                    "state": if running { "JOB_STATE_RUNNING" } else { "JOB_STATE_COMPLETED" },
                    "createTime": time(i)}),
                )
            },
            put: |s, b| put(s, "fireworks", b),
        },
    ]
}
