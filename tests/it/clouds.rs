//! Vertex AI, Bedrock, Fireworks and Hugging Face through the real binary, against loopback
//! stand-ins in each provider's published shape (DESIGN.md, "Where fine-tuning is going"): every
//! state in the common vocabulary with the provider's word kept, paging as each pages, the
//! failure message, progress and cost; Google's OAuth2 (a token endpoint verifying the JWT, token
//! caching, expiry, a 401 forcing a refresh, the metadata server); SigV4 recomputed by an
//! independent verifier; a refused credential as one sentence while other sources keep polling.

use crate::common;

use std::time::Duration;

use common::clouds::*;
use common::*;
use serde_json::{Value, json};

fn once(setup: &Setup) -> (bool, String) {
    let o = setup.command(&["once"]).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// (type, status, provider, provider_status) of every delivered event.
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

fn slack_hook(hook: &Hook) -> String {
    format!(
        "\n[[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
         retry_initial = \"100ms\"\n\n[[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"chat\"]\n",
        hook.url()
    )
}

fn vertex_source(cloud: &Cloud, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"vertex\"\nkind = \"vertex_ai\"\napi_base = \"{}\"\nproject = \"tunewatch-test\"\n\
         location = \"us-central1\"\npoll_interval = \"200ms\"\nidle_poll_interval = \"200ms\"\npage_size = 1\n{extra}\n",
        cloud.url("/v1")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_jobs_page_by_token_with_google_tokens_cost_checkpoints_and_failures() {
    let cloud = Cloud::start().await;
    let list = cloud_fixture("vertex", "tuning_jobs_list.derived.json");
    cloud.state.lock().unwrap().vertex = list["tuningJobs"].as_array().unwrap().clone();
    let hook = Hook::start().await;
    let chat = Hook::start().await;
    let setup = Setup::with_source(
        &vertex_source(&cloud, "google_credentials_file = \"sa.json\""),
        &hook.url(),
        &format!(
            "{}\n[prices]\n\"gemini-2.0-flash\" = 2.0\n",
            slack_hook(&chat)
        ),
    );
    std::fs::write(
        setup.dir.path().join("sa.json"),
        cloud.service_account_key(),
    )
    .unwrap();
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    assert!(hook.delivered().is_empty(), "the baseline is silent");
    let lists = cloud
        .requests()
        .iter()
        .filter(|r| {
            r.starts_with("GET /v1/projects/tunewatch-test/locations/us-central1/tuningJobs?")
        })
        .count();
    assert_eq!(
        lists,
        2,
        "page size 1, two jobs, paged by token: {:?}",
        cloud.requests()
    );
    assert!(cloud.state.lock().unwrap().jwt_refusals.is_empty());

    let running = "projects/tunewatch-test/locations/us-central1/tuningJobs/7013456789012345678";
    for (word, normal) in [
        ("JOB_STATE_PAUSED", "paused"),
        ("JOB_STATE_RUNNING", "running"),
        ("JOB_STATE_CANCELLING", "cancelling"),
    ] {
        cloud.update(running, json!({"state": word}));
        assert!(once(&setup).0);
        assert_eq!(
            delivered(&hook).pop().unwrap(),
            (
                format!("fine_tuning.job.{normal}"),
                normal.into(),
                "vertex_ai".into(),
                word.into()
            )
        );
    }
    cloud.update(
        running,
        json!({"state": "JOB_STATE_SUCCEEDED", "endTime": "2026-12-01T11:00:00Z",
               "tunedModel": {"model": "projects/1/locations/us-central1/models/77@1",
                              "endpoint": "projects/1/locations/us-central1/endpoints/88",
                              "checkpoints": [{"checkpointId": "3", "epoch": "3", "step": "75",
                                               "endpoint": "projects/1/locations/us-central1/endpoints/88"}]}}),
    );
    assert!(once(&setup).0);
    let succeeded = hook.delivered().pop().unwrap().body;
    assert_eq!(succeeded["type"], "fine_tuning.job.succeeded");
    assert_eq!(
        succeeded["data"]["id"], running,
        "the resource name is the id, whole"
    );
    // 880 000 billable tokens × 3 epochs at $2 per 1M tokens.
    assert_eq!(succeeded["insight"]["cost_usd"], 5.28, "{succeeded}");
    let metrics = setup.command(&["metrics", running]).output().unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("75") && text.contains("endpoints/88"),
        "the checkpoint: {text}"
    );

    cloud
        .state
        .lock()
        .unwrap()
        .vertex
        .insert(0, cloud_fixture("vertex", "tuning_job_failed.derived.json"));
    assert!(once(&setup).0);
    let failed = hook.delivered().pop().unwrap().body;
    assert_eq!(
        (failed["type"].as_str(), failed["provider_status"].as_str()),
        (Some("fine_tuning.job.failed"), Some("JOB_STATE_FAILED"))
    );
    let slack = String::from_utf8_lossy(&chat.delivered().pop().unwrap().raw_body).into_owned();
    assert!(
        slack.contains("Dataset validation failed: line 17"),
        "{slack}"
    );
    let key = cloud_fixture("google", "test_service_account.json")["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for log in [
        &setup.log("run.log"),
        &String::from_utf8_lossy(&setup.command(&["check"]).output().unwrap().stdout).into_owned(),
    ] {
        assert!(
            !log.contains(&key) && !log.contains("ya29."),
            "no key or token shown"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_google_token_is_cached_refreshed_before_expiry_and_after_a_401_and_the_metadata_server_works()
 {
    let cloud = Cloud::start().await;
    cloud.state.lock().unwrap().vertex =
        cloud_fixture("vertex", "tuning_jobs_list.derived.json")["tuningJobs"]
            .as_array()
            .unwrap()
            .clone();
    let hook = Hook::start().await;
    let setup = Setup::with_source(
        &vertex_source(&cloud, "google_credentials_file = \"sa.json\""),
        &hook.url(),
        "",
    );
    std::fs::write(
        setup.dir.path().join("sa.json"),
        cloud.service_account_key(),
    )
    .unwrap();
    let mut daemon = setup.spawn_run("run.log", &[]);
    let polls = |n: usize| {
        let cloud = &cloud;
        move || {
            cloud
                .requests()
                .iter()
                .filter(|r| r.contains("tuningJobs?"))
                .count()
                >= n
        }
    };
    wait_until("ten list requests", Duration::from_secs(20), polls(10)).await;
    assert_eq!(
        cloud.state.lock().unwrap().token_requests,
        1,
        "one token for many polls"
    );
    // A token revoked early (401): a new one at once, and the poll goes on.
    cloud.state.lock().unwrap().revoke_next = true;
    wait_until("a new token after the 401", Duration::from_secs(20), || {
        cloud.state.lock().unwrap().token_requests == 2
    })
    .await;
    let before = cloud.requests().len();
    wait_until("polls after the refresh", Duration::from_secs(20), || {
        cloud.requests().len() > before + 4
    })
    .await;
    assert!(
        !setup.log("run.log").contains("poll failed"),
        "{}",
        setup.log("run.log")
    );
    // Tokens that live 61 s are replaced a minute early: about every second.
    cloud.state.lock().unwrap().token_lifetime = 61;
    cloud.state.lock().unwrap().revoke_next = true;
    wait_until(
        "tokens replaced before they expire",
        Duration::from_secs(20),
        || cloud.state.lock().unwrap().token_requests >= 5,
    )
    .await;
    assert!(
        cloud.state.lock().unwrap().jwt_refusals.is_empty(),
        "every assertion verified"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());

    // The metadata server instead of a key: its host from $GCE_METADATA_HOST.
    let setup = Setup::with_source(
        &vertex_source(&cloud, "google_auth = \"metadata\""),
        &hook.url(),
        "",
    );
    let o = setup
        .command(&["once"])
        .env("GCE_METADATA_HOST", cloud.addr.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        cloud
            .requests()
            .iter()
            .any(|r| r
                .starts_with("GET /computeMetadata/v1/instance/service-accounts/default/token"))
    );
}

fn bedrock_source(cloud: &Cloud, auth: &str) -> String {
    format!(
        "[[source]]\nname = \"bedrock\"\nkind = \"bedrock\"\napi_base = \"{}\"\nregion = \"us-east-1\"\n\
         page_size = 1\n{auth}\n",
        cloud.url("")
    )
}

const AWS_KEYS: &str = "aws_access_key_id_file = \"aws.id\"\naws_secret_access_key_file = \"aws.secret\"\naws_session_token_file = \"aws.session\"";

fn write_aws(setup: &Setup) {
    for (f, v) in [
        ("aws.id", AWS_KEY_ID),
        ("aws.secret", AWS_SECRET),
        ("aws.session", AWS_SESSION),
    ] {
        std::fs::write(setup.dir.path().join(f), v).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_jobs_signed_with_sigv4_page_by_token_and_say_why_they_failed_with_their_losses() {
    let cloud = Cloud::start().await;
    {
        let mut s = cloud.state.lock().unwrap();
        s.aws = true;
        s.bedrock =
            cloud_fixture("bedrock", "jobs_list.derived.json")["modelCustomizationJobSummaries"]
                .as_array()
                .unwrap()
                .clone();
        let done = cloud_fixture("bedrock", "job_completed.derived.json");
        s.bedrock_full
            .insert(done["jobArn"].as_str().unwrap().into(), done);
    }
    let hook = Hook::start().await;
    let chat = Hook::start().await;
    let setup = Setup::with_source(
        &bedrock_source(&cloud, AWS_KEYS),
        &hook.url(),
        &slack_hook(&chat),
    );
    write_aws(&setup);
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    let lists: Vec<String> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /model-customization-jobs?"))
        .collect();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(lists[0].contains("sortBy=CreationTime") && lists[0].contains("sortOrder=Descending"));
    {
        let s = cloud.state.lock().unwrap();
        assert!(s.sigv4_refusals.is_empty(), "{:?}", s.sigv4_refusals);
        assert_eq!(s.sigv4_verified, 2);
    }
    let running = cloud.state.lock().unwrap().bedrock[0]["jobArn"]
        .as_str()
        .unwrap()
        .to_string();
    cloud.update(
        &running,
        json!({"statusDetails": {"validationDetails": {"status": "InProgress"}}}),
    );
    assert!(once(&setup).0);
    assert_eq!(
        delivered(&hook).pop().unwrap().0,
        "fine_tuning.job.validating_files"
    );
    cloud.update(
        &running,
        json!({"statusDetails": {"validationDetails": {"status": "Completed"}}}),
    );
    assert!(once(&setup).0);
    cloud.update(&running, json!({"status": "Stopping"}));
    assert!(once(&setup).0);
    assert_eq!(
        delivered(&hook).pop().unwrap(),
        (
            "fine_tuning.job.cancelling".into(),
            "cancelling".into(),
            "bedrock".into(),
            "Stopping".into()
        )
    );
    // A new job fails: its failure message comes from a read of the job in full, by ARN.
    let failed = cloud_fixture("bedrock", "job_failed.derived.json");
    let failed_arn = failed["jobArn"].as_str().unwrap().to_string();
    {
        let mut s = cloud.state.lock().unwrap();
        // What a list gives of it: the summary's fields only (no failure message).
        let mut summary = json!({});
        for k in [
            "jobArn",
            "baseModelArn",
            "jobName",
            "creationTime",
            "lastModifiedTime",
            "customizationType",
        ] {
            summary[k] = failed[k].clone();
        }
        summary["status"] = json!("InProgress");
        s.bedrock.insert(0, summary);
        s.bedrock_full.insert(failed_arn.clone(), failed);
    }
    assert!(once(&setup).0);
    cloud.update(
        &failed_arn,
        json!({"status": "Failed", "endTime": "2026-12-02T07:09:00Z"}),
    );
    assert!(once(&setup).0);
    let slack = String::from_utf8_lossy(&chat.delivered().pop().unwrap().raw_body).into_owned();
    assert!(
        slack.contains("has 3 records with more than 32000 tokens"),
        "{slack}"
    );
    assert!(
        cloud.requests().iter().any(|r| r.starts_with(
            "GET /model-customization-jobs/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Amodel-customization-job%2F"
        )),
        "the ARN is one encoded segment: {:?}",
        cloud.requests()
    );
    // A job that completes: its final losses come with the full read, into the alert.
    let done = cloud_fixture("bedrock", "job_completed.derived.json");
    let done_arn = done["jobArn"]
        .as_str()
        .unwrap()
        .replace("f6e5d4c3b2a1", "d0d0d0d0d0d0");
    {
        let mut s = cloud.state.lock().unwrap();
        let mut full = done.clone();
        full["jobArn"] = json!(done_arn);
        let mut summary = json!({"jobArn": done_arn, "status": "InProgress",
                                 "baseModelArn": done["baseModelArn"], "jobName": "support-nova-v3",
                                 "creationTime": "2026-12-03T12:00:00Z"});
        s.bedrock_full.insert(done_arn.clone(), full);
        s.bedrock.insert(0, summary.take());
    }
    assert!(once(&setup).0);
    cloud.update(
        &done_arn,
        json!({"status": "Completed", "endTime": "2026-12-03T15:00:00Z"}),
    );
    assert!(once(&setup).0);
    let succeeded = hook.delivered().pop().unwrap().body;
    assert_eq!(succeeded["type"], "fine_tuning.job.succeeded");
    assert_eq!(
        (
            succeeded["insight"]["train_loss"].clone(),
            succeeded["insight"]["valid_loss"].clone()
        ),
        (json!(0.3125), json!(0.4021)),
        "{succeeded}"
    );
    // Unchanged afterwards: the full read and the summary compare the same.
    let before = hook.delivered().len();
    assert!(once(&setup).0);
    assert_eq!(hook.delivered().len(), before);
    let s = cloud.state.lock().unwrap();
    assert!(s.sigv4_refusals.is_empty(), "{:?}", s.sigv4_refusals);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_credential_is_one_sentence_naming_the_source_while_others_keep_polling() {
    let cloud = Cloud::start().await;
    {
        let mut s = cloud.state.lock().unwrap();
        s.aws = true;
        s.aws_error = Some("ExpiredTokenException");
        s.fireworks =
            cloud_fixture("fireworks", "jobs_list.derived.json")["supervisedFineTuningJobs"]
                .as_array()
                .unwrap()
                .clone();
    }
    let hook = Hook::start().await;
    let source = format!(
        "{}\n[[source]]\nname = \"fw\"\nkind = \"fireworks\"\napi_base = \"{}\"\naccount = \"acme\"\napi_key_file = \"api.key\"\n",
        bedrock_source(&cloud, AWS_KEYS),
        cloud.url("/v1")
    );
    let setup = Setup::with_source(&source, &hook.url(), "");
    write_aws(&setup);
    let o = setup.command(&["once"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    let line = err
        .lines()
        .find(|l| l.contains("ExpiredTokenException"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("bedrock") && line.contains("AWS credential"),
        "{line}"
    );
    assert!(
        !err.contains(AWS_SECRET) && !err.contains(AWS_SESSION),
        "no secret shown"
    );
    assert!(
        cloud
            .requests()
            .iter()
            .any(|r| r.contains("supervisedFineTuningJobs")),
        "the other source was polled"
    );
    let status = setup.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("bedrock: FAILING") && text.contains("fw: last poll"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fireworks_progress_crosses_marks_with_an_eta_and_an_estimated_cost() {
    let cloud = Cloud::start().await;
    cloud.state.lock().unwrap().fireworks =
        cloud_fixture("fireworks", "jobs_list.derived.json")["supervisedFineTuningJobs"]
            .as_array()
            .unwrap()
            .clone();
    let hook = Hook::start().await;
    let source = format!(
        "[[source]]\nname = \"fw\"\nkind = \"fireworks\"\napi_base = \"{}\"\naccount = \"acme\"\n\
         api_key_file = \"api.key\"\npage_size = 1\nprogress_marks = [50]\n",
        cloud.url("/v1")
    );
    let setup = Setup::with_source(&source, &hook.url(), "");
    assert!(once(&setup).0);
    let lists = cloud
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v1/accounts/acme/supervisedFineTuningJobs?"))
        .count();
    assert_eq!(lists, 2);
    let running = "accounts/acme/supervisedFineTuningJobs/sftj-7f3a2b";
    cloud.update(
        running,
        json!({"jobProgress": {"percent": 60, "epoch": 2}, "updateTime": "2026-12-01T10:00:00Z"}),
    );
    assert!(once(&setup).0);
    let progress = hook.delivered().pop().expect("a progress event").body;
    assert_eq!(progress["type"], "fine_tuning.job.progress");
    assert_eq!(progress["insight"]["progress"], 0.6);
    // 60 % in the hour since 09:00 (unix 1796115600): done at 09:00 + 100 min.
    assert_eq!(
        progress["insight"]["eta"],
        1_796_115_600 + 6000,
        "{progress}"
    );
    assert_eq!(progress["insight"]["cost_usd"], 4.25);
    assert_eq!(progress["insight"]["cost_estimated"], true);
    // The terminal shows the resource name's last segment, and commands take it back.
    let status = setup
        .command(&["status"])
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("\nsftj-7f3a2b "), "{status}");
    assert!(!status.contains("accounts/acme/"), "{status}");
    let history = setup.command(&["history", "sftj-7f3a2b"]).output().unwrap();
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    assert!(
        history.starts_with(&format!("history of {running}\n")),
        "{history}"
    );
    assert!(history.contains("fine_tuning.job.progress"), "{history}");
    for (word, normal) in [
        ("JOB_STATE_PAUSED", "paused"),
        ("JOB_STATE_RE_QUEUEING", "queued"),
        ("JOB_STATE_CANCELLING", "cancelling"),
        ("JOB_STATE_EARLY_STOPPED", "succeeded"),
    ] {
        cloud.update(running, json!({"state": word}));
        assert!(once(&setup).0);
        assert_eq!(
            delivered(&hook).pop().unwrap(),
            (
                format!("fine_tuning.job.{normal}"),
                normal.into(),
                "fireworks".into(),
                word.into()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hugging_face_jobs_page_by_link_with_labels_and_an_error_says_why() {
    let cloud = Cloud::start().await;
    cloud.state.lock().unwrap().huggingface =
        cloud_fixture("huggingface", "jobs_list.derived.json")
            .as_array()
            .unwrap()
            .clone();
    let hook = Hook::start().await;
    let chat = Hook::start().await;
    let source = format!(
        "[[source]]\nname = \"hf\"\nkind = \"huggingface\"\napi_base = \"{}\"\nnamespace = \"acme-ml\"\n\
         api_key_file = \"api.key\"\nlabels = {{ purpose = \"training\" }}\n",
        cloud.url("/api")
    );
    let setup = Setup::with_source(&source, &hook.url(), &slack_hook(&chat));
    assert!(once(&setup).0);
    let lists: Vec<String> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/jobs/acme-ml?"))
        .collect();
    assert_eq!(
        lists.len(),
        2,
        "three jobs, two a page, the next by Link: {lists:?}"
    );
    assert!(
        lists.iter().all(|l| l.contains("label=purpose%3Dtraining")),
        "{lists:?}"
    );
    let running = "687fb701029421ae5549d998";
    cloud.update(
        running,
        json!({"status": {"stage": "ERROR", "message": "CUDA out of memory"}}),
    );
    assert!(once(&setup).0);
    assert_eq!(
        delivered(&hook).pop().unwrap(),
        (
            "fine_tuning.job.failed".into(),
            "failed".into(),
            "huggingface".into(),
            "ERROR".into()
        )
    );
    let slack = String::from_utf8_lossy(&chat.delivered().pop().unwrap().raw_body).into_owned();
    assert!(slack.contains("CUDA out of memory"), "{slack}");
}

#[test]
fn check_names_missing_keys_keys_of_other_kinds_and_what_each_provider_cannot_give() {
    let dir = tempfile::tempdir().unwrap();
    let write = |body: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("[daemon]\nstate_db = \"t.db\"\n\n{body}\n[[notifier]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\n[[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"h\"]\n")).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
            .args(["--config", path.to_str().unwrap(), "check"])
            .env("K", "key-value")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    for (body, line, needle) in [
        (
            "[[source]]\nname = \"v\"\nkind = \"vertex_ai\"\nproject = \"p\"\ngoogle_auth = \"metadata\"\n",
            6,
            "a vertex_ai source needs `location`",
        ),
        (
            "[[source]]\nname = \"b\"\nkind = \"bedrock\"\napi_key_env = \"K\"\n",
            6,
            "a bedrock source needs `region`",
        ),
        (
            "[[source]]\nname = \"f\"\nkind = \"fireworks\"\napi_key_env = \"K\"\n",
            6,
            "a fireworks source needs `account`",
        ),
        (
            "[[source]]\nname = \"h\"\nkind = \"huggingface\"\napi_key_env = \"K\"\n",
            6,
            "a huggingface source needs `namespace`",
        ),
        (
            "[[source]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"K\"\nregion = \"us-east-1\"\n",
            8,
            "`region` applies only to kind = \"bedrock\"",
        ),
        (
            "[[source]]\nname = \"v\"\nkind = \"vertex_ai\"\nproject = \"p\"\nlocation = \"l\"\napi_key_env = \"K\"\n",
            9,
            "`api_key_env` applies only to kind",
        ),
        (
            "[[source]]\nname = \"b\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id_env = \"K\"\n",
            6,
            "a bedrock source needs a Bedrock API key",
        ),
    ] {
        let (code, out) = write(body);
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains(needle) && out.contains(&format!("line {line}")),
            "{needle} at line {line}: {out}"
        );
    }
    let (code, out) = write(
        "[[source]]\nname = \"f\"\nkind = \"fireworks\"\naccount = \"acme\"\napi_key_env = \"K\"\n\n[[source]]\nname = \"h\"\nkind = \"huggingface\"\nnamespace = \"acme\"\napi_key_env = \"K\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("fireworks gives progress (percent) and an estimated cost, but no losses"),
        "{out}"
    );
    assert!(
        out.contains("huggingface Jobs have a state and nothing else"),
        "{out}"
    );
    assert!(
        out.contains("no webhooks: changes are seen by polling only"),
        "{out}"
    );
    assert!(!out.contains("key-value"), "no secret shown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bedrock_api_key_is_sent_as_a_bearer_token() {
    let cloud = Cloud::start().await;
    cloud.state.lock().unwrap().bedrock =
        cloud_fixture("bedrock", "jobs_list.derived.json")["modelCustomizationJobSummaries"]
            .as_array()
            .unwrap()
            .clone();
    let hook = Hook::start().await;
    let setup = Setup::with_source(
        &bedrock_source(&cloud, "api_key_file = \"api.key\""),
        &hook.url(),
        "",
    );
    let (ok, err) = once(&setup);
    assert!(ok, "{err}");
    let s = cloud.state.lock().unwrap();
    assert_eq!(s.sigv4_verified, 0);
    assert!(s.requests.len() >= 2);
}
