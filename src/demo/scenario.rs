//! The demo's story: which jobs exist before the first poll, which appear during the run, and
//! the statuses each goes through, on the simulated API's clock.

use std::time::Duration;

use serde_json::json;

use super::api::SimJob;
use super::training::Training;

/// The demo's jobs: four that exist before the first poll, three that appear during the run;
/// a batch that runs and completes; and a Bedrock customization job beside them.
// Long by design: the story is one table, read top to bottom.
pub(super) fn scenario(now: i64) -> Vec<SimJob> {
    let s = Duration::from_secs;
    let job = |id: &str, created_ago: i64, status: &str, model: &str| {
        json!({
            "object": "fine_tuning.job", "id": id, "model": model,
            "created_at": now - created_ago, "finished_at": null, "fine_tuned_model": null,
            "organization_id": "org-demo", "result_files": [], "status": status,
            "validation_file": null, "training_file": "file-demo-train", "trained_tokens": null,
            "error": {"code": null, "message": null, "param": null},
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                "learning_rate_multiplier": "auto"},
            "method": {"type": "supervised"}, "seed": 42, "estimated_finish": null,
            "integrations": [], "metadata": null,
        })
    };
    let done = |id: &str, status: &str, ago: i64| {
        let mut j = job(id, ago, status, "gpt-4o-mini-2024-07-18");
        j["finished_at"] = json!(now - ago + 1800);
        if status == "succeeded" {
            j["fine_tuned_model"] = json!(format!("ft:gpt-4o-mini-2024-07-18:demo::{}", &id[6..]));
            j["trained_tokens"] = json!(120_000);
        }
        j
    };
    let at = |secs| now + secs as i64;
    let training = |(from, to): (u64, u64), model: &str, overfits: bool| Training {
        from: s(from),
        to: s(to),
        total_steps: 200,
        every: 10,
        epochs: 3,
        overfits,
        epoch_unix: now,
        model_prefix: model.to_string(),
    };
    let batch = json!({
        "id": "batch_nightly_eval", "object": "batch", "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini-2024-07-18", "errors": null, "input_file_id": "file-demo-batch-in",
        "completion_window": "24h", "status": "validating", "output_file_id": null,
        "error_file_id": null, "created_at": now + 1, "in_progress_at": null,
        "expires_at": now + 86_401, "finalizing_at": null, "completed_at": null,
        "failed_at": null, "expired_at": null, "cancelling_at": null, "cancelled_at": null,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": {"batch_description": "Nightly eval"}
    });
    // A Bedrock customization job beside the OpenAI ones: validated, trained, completed with
    // its final losses (which only a read of the job in full gives).
    let arn = "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-micro-v1:0:128k/demo0nova001";
    let bedrock = json!({
        "jobArn": arn, "jobName": "support-nova", "status": "InProgress",
        "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k",
        "statusDetails": {"validationDetails": {"status": "InProgress"}},
        "creationTime": humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + s(now.max(0) as u64 + 4)).to_string(),
        "customModelName": "support-nova", "customizationType": "FINE_TUNING",
        "roleArn": "arn:aws:iam::123456789012:role/BedrockTuning",
        "trainingDataConfig": {"s3Uri": "s3://acme-demo/support/train.jsonl"},
        "hyperParameters": {"epochCount": "2", "learningRate": "0.00001"}
    });
    let iso = |secs: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + s(now.max(0) as u64 + secs))
            .to_string()
    };
    vec![
        SimJob {
            appear_at: s(4),
            base: bedrock,
            steps: vec![
                (
                    s(6),
                    json!({"statusDetails": {"validationDetails": {"status": "Completed"},
                                             "trainingDetails": {"status": "InProgress"}},
                           "lastModifiedTime": iso(6)}),
                ),
                (
                    s(17),
                    json!({"status": "Completed", "endTime": iso(17), "lastModifiedTime": iso(17),
                           "statusDetails": {"validationDetails": {"status": "Completed"},
                                             "trainingDetails": {"status": "Completed"}},
                           "customModelArn": "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/demo0model01",
                           "outputModelArn": "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.nova-micro-v1:0:128k/demo0model01",
                           "trainingMetrics": {"trainingLoss": 0.3512},
                           "validationMetrics": [{"validationLoss": 0.4127}]}),
                ),
            ],
            training: None,
        },
        SimJob {
            appear_at: s(1),
            base: batch,
            steps: vec![
                (
                    s(3),
                    json!({"status": "in_progress", "in_progress_at": at(3),
                           "request_counts": {"total": 5000, "completed": 1200, "failed": 3}}),
                ),
                (
                    s(12),
                    json!({"status": "finalizing", "finalizing_at": at(12),
                           "request_counts": {"total": 5000, "completed": 4982, "failed": 18}}),
                ),
                (
                    s(13),
                    json!({"status": "completed", "completed_at": at(13),
                           "output_file_id": "file-demo-batch-out",
                           "error_file_id": "file-demo-batch-err",
                           "request_counts": {"total": 5000, "completed": 4982, "failed": 18}}),
                ),
            ],
            training: None,
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0001", "succeeded", 3 * 86_400),
            steps: vec![],
            training: None,
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0002", "failed", 2 * 86_400),
            steps: vec![],
            training: None,
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0003", "succeeded", 86_400),
            steps: vec![],
            training: None,
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: job("ftjob-longrun1", 3600, "running", "gpt-4.1-2025-04-14"),
            steps: vec![(s(11), json!({"status": "cancelled", "finished_at": at(11)}))],
            training: None,
        },
        SimJob {
            appear_at: s(2),
            base: job(
                "ftjob-sentiment",
                -2,
                "validating_files",
                "gpt-4o-mini-2024-07-18",
            ),
            steps: vec![
                (s(4), json!({"status": "queued"})),
                (
                    s(6),
                    json!({"status": "running", "estimated_finish": at(16)}),
                ),
                (s(10), json!({"trained_tokens": 48_000})),
                (
                    s(15),
                    json!({"status": "succeeded", "finished_at": at(15), "trained_tokens": 96_000,
                           "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:demo:sentiment:Ab12Cd34",
                           "result_files": ["file-demo-results"], "estimated_finish": null}),
                ),
            ],
            training: Some(training(
                (6, 14),
                "ft:gpt-4o-mini-2024-07-18:demo:sentiment:Ab12Cd34",
                false,
            )),
        },
        SimJob {
            appear_at: s(3),
            base: job(
                "ftjob-tinyset",
                -3,
                "validating_files",
                "gpt-4o-mini-2024-07-18",
            ),
            steps: vec![(
                s(5),
                json!({"status": "failed", "finished_at": null,
                       "error": {"code": "invalid_n_examples",
                                 "message": "Training file has 7 example(s), but must have at least 10 examples",
                                 "param": "training_file"}}),
            )],
            training: None,
        },
        SimJob {
            appear_at: s(7),
            base: job(
                "ftjob-support",
                -7,
                "validating_files",
                "gpt-4.1-mini-2025-04-14",
            ),
            steps: vec![
                (s(8), json!({"status": "queued"})),
                (s(9), json!({"status": "running"})),
                (s(12), json!({"status": "paused"})),
                (s(13), json!({"status": "running"})),
                (
                    s(21),
                    json!({"status": "succeeded", "finished_at": at(21), "trained_tokens": 210_000,
                           "fine_tuned_model": "ft:gpt-4.1-mini-2025-04-14:demo:support:Zx98Yw76",
                           "result_files": ["file-demo-results-2"]}),
                ),
            ],
            // Its validation loss turns up after 45 % of the steps: one overfitting warning.
            training: Some(training(
                (9, 20),
                "ft:gpt-4.1-mini-2025-04-14:demo:support:Zx98Yw76",
                true,
            )),
        },
        // A small learning-rate sweep: four trials that finish within a second of each
        // other, told to the team chat as one message.
        SimJob {
            appear_at: s(10),
            base: job("ftjob-sweep-lr1", -10, "running", "gpt-4o-mini-2024-07-18"),
            steps: vec![(s(15), json!({"status": "succeeded", "finished_at": at(15)}))],
            training: None,
        },
        SimJob {
            appear_at: s(10),
            base: job("ftjob-sweep-lr2", -10, "running", "gpt-4o-mini-2024-07-18"),
            steps: vec![(s(15), json!({"status": "succeeded", "finished_at": at(15)}))],
            training: None,
        },
        SimJob {
            appear_at: s(10),
            base: job("ftjob-sweep-lr3", -10, "running", "gpt-4o-mini-2024-07-18"),
            steps: vec![(s(16), json!({"status": "succeeded", "finished_at": at(16)}))],
            training: None,
        },
        SimJob {
            appear_at: s(10),
            base: job("ftjob-sweep-lr4", -10, "running", "gpt-4o-mini-2024-07-18"),
            steps: vec![(s(16), json!({"status": "succeeded", "finished_at": at(16)}))],
            training: None,
        },
    ]
}
