//! The steady cost per poll of the cloud kinds (Vertex AI, Bedrock, Fireworks, Hugging Face):
//! each against the tests' loopback stand-in of its API (`tests/it/common/clouds.rs`, in the
//! provider's published shapes, with real Google token exchange and SigV4), holding 1 000 jobs
//! newest first: five running among the newest 100, one old one still running at 90 % of the
//! list, every other one finished. `Daemon::once` on a real SQLite file: the first scan, then
//! the average of ten unchanged cycles, in requests (token requests counted).

use serde_json::{Value, json};

use crate::stand_in::{AWS_KEY_ID, AWS_SECRET, AWS_SESSION, Cloud, CloudState, cloud_fixture};

const JOBS: usize = 1_000;
const CYCLES: usize = 10;
/// Positions of the running jobs: five among the newest 100, one deep in the list.
const RUNNING: [usize; 6] = [3, 17, 42, 61, 88, 900];

pub(crate) struct Kind {
    /// The row's name in the table.
    pub label: &'static str,
    /// The source's `kind`.
    pub name: &'static str,
    /// How a list request's path ends (any other request fetches one job).
    pub list: &'static str,
    /// The `[[source]]` keys after `kind` (its `api_base` included).
    pub keys: fn(&Cloud) -> String,
    /// Job `i` of the list, running or finished.
    pub job: fn(usize, bool) -> Value,
    pub put: fn(&mut CloudState, Vec<Value>),
}

pub(crate) fn time(i: usize) -> String {
    // Newest first: job 0 was created last.
    let t = 1_796_000_000 - 60 * i as u64;
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
        .to_string()
}

pub(crate) fn from(template: &Value, patch: Value) -> Value {
    let mut job = template.clone();
    if let (Value::Object(j), Value::Object(p)) = (&mut job, patch) {
        j.extend(p);
    }
    job
}

fn kinds() -> [Kind; 4] {
    [
        Kind {
            label: "vertex_ai",
            name: "vertex_ai",
            list: "/tuningJobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\nproject = \"tunewatch-test\"\nlocation = \"us-central1\"\n\
                     google_credentials_file = \"google.json\"\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = &cloud_fixture("vertex", "tuning_jobs_list.derived.json")["tuningJobs"][0];
                from(
                    t,
                    json!({"name": format!("projects/tunewatch-test/locations/us-central1/tuningJobs/{}", 7_000_000 + i),
                           "state": if running { "JOB_STATE_RUNNING" } else { "JOB_STATE_SUCCEEDED" },
                           "createTime": time(i), "updateTime": time(i)}),
                )
            },
            put: |s, jobs| s.vertex = jobs,
        },
        Kind {
            label: "bedrock",
            name: "bedrock",
            list: "/model-customization-jobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\nregion = \"us-east-1\"\naws_access_key_id_file = \"aws.id\"\n\
                     aws_secret_access_key_file = \"aws.secret\"\n\
                     aws_session_token_file = \"aws.session\"\n",
                    c.url("")
                )
            },
            job: |i, running| {
                let t = &cloud_fixture("bedrock", "jobs_list.derived.json")["modelCustomizationJobSummaries"]
                    [0];
                from(
                    t,
                    json!({"jobArn": format!("arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-micro-v1:0:128k/bench{i:06}"),
                           "status": if running { "InProgress" } else { "Completed" },
                           "creationTime": time(i), "lastModifiedTime": time(i)}),
                )
            },
            put: |s, jobs| {
                s.aws = true;
                s.bedrock = jobs;
            },
        },
        Kind {
            label: "fireworks",
            name: "fireworks",
            list: "/supervisedFineTuningJobs",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\naccount = \"acme\"\napi_key_file = \"api.key\"\n",
                    c.url("/v1")
                )
            },
            job: |i, running| {
                let t = &cloud_fixture("fireworks", "jobs_list.derived.json")["supervisedFineTuningJobs"]
                    [0];
                from(
                    t,
                    json!({"name": format!("accounts/acme/supervisedFineTuningJobs/sftj-bench{i:06}"),
                           "state": if running { "JOB_STATE_RUNNING" } else { "JOB_STATE_COMPLETED" },
                           "createTime": time(i), "updateTime": time(i)}),
                )
            },
            put: |s, jobs| s.fireworks = jobs,
        },
        Kind {
            label: "huggingface",
            name: "huggingface",
            list: "/acme-ml",
            keys: |c| {
                format!(
                    "api_base = \"{}\"\nnamespace = \"acme-ml\"\napi_key_file = \"api.key\"\n",
                    c.url("/api")
                )
            },
            job: |i, running| {
                let t = &cloud_fixture("huggingface", "jobs_list.derived.json")[0];
                from(
                    t,
                    json!({"id": format!("687fb701029421ae{i:08x}"),
                           "status": {"stage": if running { "RUNNING" } else { "COMPLETED" }, "message": null},
                           "createdAt": time(i)}),
                )
            },
            put: |s, jobs| {
                // Its stand-in pages by `Link`, 50 jobs a page.
                s.hf_page = 50;
                s.huggingface = jobs;
            },
        },
    ]
}

/// Requests the first scan and an unchanged cycle cost, per kind.
pub async fn costs() {
    println!(
        "\nsteady cost per poll of the cloud kinds ({JOBS} jobs each, 5 running among the newest \
         100 and one old one still running; token requests counted):"
    );
    println!(
        "  {:<12} {:>11} {:>13}  what one unchanged cycle asks",
        "kind", "first scan", "steady cycle"
    );
    for kind in kinds() {
        let (first, steady, what) = measure(&kind).await;
        println!(
            "  {:<12} {:>11} {:>13.1}  {what}",
            kind.label, first, steady
        );
    }
    println!(
        "\nsteady cost per poll of every provider's batches ({JOBS} batches each, the same mix):"
    );
    println!(
        "  {:<18} {:>11} {:>13}  what one unchanged cycle asks",
        "kind", "first scan", "steady cycle"
    );
    for kind in crate::batches::kinds() {
        let (first, steady, what) = measure(&kind).await;
        println!(
            "  {:<18} {:>11} {:>13.1}  {what}",
            kind.label, first, steady
        );
    }
}

pub(crate) async fn measure(kind: &Kind) -> (usize, f64, String) {
    let cloud = Cloud::start().await;
    let jobs = (0..JOBS)
        .map(|i| (kind.job)(i, RUNNING.contains(&i)))
        .collect();
    (kind.put)(&mut cloud.state.lock().expect("the stand-in"), jobs);
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (file, body) in [
        ("api.key", crate::stand_in::API_KEY.to_string()),
        ("aws.id", AWS_KEY_ID.to_string()),
        ("aws.secret", AWS_SECRET.to_string()),
        ("aws.session", AWS_SESSION.to_string()),
        ("google.json", cloud.service_account_key()),
    ] {
        std::fs::write(dir.path().join(file), body).expect("a credential file");
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[daemon]\nstate_db = \"bench.db\"\n\n[[source]]\nname = \"bench\"\nkind = \"{}\"\n{}",
            kind.name,
            (kind.keys)(&cloud)
        ),
    )
    .expect("a config file");
    let config = tunewatch::config::Config::load(&config_path).expect("a valid config");
    let daemon = tunewatch::Daemon::new(config).expect("a daemon");
    let count =
        || cloud.requests().len() + cloud.state.lock().expect("the stand-in").token_requests;
    let poll = async || {
        let report = daemon.once().await.expect("a poll");
        assert!(
            report.failed_sources.is_empty(),
            "{}: {:?}",
            kind.name,
            report.failed_sources
        );
    };
    poll().await;
    let first = count();
    let mut before_last = 0;
    for _ in 0..CYCLES {
        before_last = cloud.requests().len();
        poll().await;
    }
    let steady = (count() - first) as f64 / CYCLES as f64;
    // What the last cycle asked, by kind of request.
    let last = &cloud.requests()[before_last..];
    let gets = last
        .iter()
        .filter(|r| {
            let path = r.split_whitespace().nth(1).unwrap_or("");
            !path.split('?').next().unwrap_or(path).ends_with(kind.list)
        })
        .count();
    let lists = last.len() - gets;
    (
        first,
        steady,
        format!("{lists} list page(s) + {gets} GET(s) of open jobs off the first page"),
    )
}
