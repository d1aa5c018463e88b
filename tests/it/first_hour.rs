//! The first hour, as a new user lives it, through the binary: outputs that tell the truth and fit
//! an 80-column terminal, alerts that are short and single, commands that say what went wrong.

use crate::common;

use std::process::Output;
use std::time::Duration;

use common::smtp::Smtp;
use common::*;
use serde_json::{Value, json};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn at_width(setup: &Setup, width: &str, args: &[&str]) -> Output {
    setup.command(args).env("COLUMNS", width).output().unwrap()
}

/// Real-looking ids (30 characters) and fine-tuned model names (over 50).
fn real_jobs() -> Vec<Value> {
    (0..4)
        .map(|i| {
            job(
                &format!("ftjob-a308vfcPA0tSNMeqFdkRDuX{i}"),
                "running",
                json!({"created_at": 1_735_480_000 - i}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_whether_a_daemon_watches_and_when_a_source_went_stale() {
    let api = Api::start(real_jobs()).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline")
        .await;
    let (out, _) = text(&at_width(&setup, "80", &["status"]));
    assert!(out.starts_with("a daemon is watching (process "), "{out}");
    assert!(
        out.contains("prod: last poll") && out.contains(", ok"),
        "{out}"
    );
    signal(&daemon, "TERM");
    wait_exit(&mut daemon, Duration::from_secs(10)).await;

    // The daemon polled every 200 ms; three intervals (at least 3 s) later, `status` must not
    // say ok any more — the rule /healthz applies.
    let (out, _) = text(&at_width(&setup, "80", &["status"]));
    assert!(
        out.starts_with("no daemon is running: nothing is being watched now"),
        "{out}"
    );
    let stale = eventually(
        "status to call the source stale",
        Duration::from_secs(10),
        || {
            let (out, _) = text(&at_width(&setup, "80", &["status"]));
            async move { out.contains("prod: STALE, no poll for").then_some(out) }
        },
    )
    .await;
    assert!(stale.contains("(expected every 200ms)"), "{stale}");
    assert!(!stale.contains(", ok"), "{stale}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_outbox_fit_80_columns_and_show_the_fine_tuned_model() {
    let api = Api::start(real_jobs()).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 10"));
    hook.answer(&[Answer::Status(503); 2]);
    assert!(setup.command(&["once"]).status().unwrap().success());
    let model = "ft:gpt-4o-mini-2024-07-18:acme-research-lab:sentiment-v2:Ab12Cd34";
    api.update(
        "ftjob-a308vfcPA0tSNMeqFdkRDuX0",
        json!({"status": "succeeded", "fine_tuned_model": model}),
    );
    api.update(
        "ftjob-a308vfcPA0tSNMeqFdkRDuX1",
        json!({"status": "failed",
        "error": {"code": "invalid_training_file", "message": "x".repeat(300)}}),
    );
    assert!(setup.command(&["once"]).status().unwrap().success());

    for args in [
        &["status"][..],
        &["outbox", "--all"],
        &["history", "ftjob-a308vfcPA0tSNMeqFdkRDuX0"],
    ] {
        let (out, err) = text(&at_width(&setup, "80", args));
        assert!(err.is_empty(), "{args:?}: {err}");
        for line in out.lines() {
            assert!(
                line.chars().count() <= 80,
                "{args:?} wraps at 80 columns: {line:?}"
            );
        }
    }
    let (narrow, _) = text(&at_width(&setup, "80", &["status"]));
    assert!(
        !narrow.contains("SOURCE"),
        "one source, no SOURCE column: {narrow}"
    );
    let row = narrow
        .lines()
        .find(|l| l.contains("succeeded"))
        .unwrap_or_else(|| panic!("{narrow}"));
    assert!(
        row.contains("ft:gpt-4o") && row.contains("Ab12Cd34"),
        "the fine-tuned model, not the base, cut in its middle: {row}"
    );
    // A wider terminal gets whole cells.
    let (wide, _) = text(&at_width(&setup, "200", &["status"]));
    assert!(wide.contains(model), "{wide}");

    let json: Value =
        serde_json::from_slice(&at_width(&setup, "80", &["status", "--output", "json"]).stdout)
            .unwrap();
    assert_eq!(json["daemon"]["running"], false);
    assert_eq!(json["sources"][0]["name"], "prod");
    let job = json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["status"] == "succeeded")
        .unwrap();
    assert_eq!(job["fine_tuned_model"], model);
    let rows: Value = serde_json::from_slice(
        &at_width(&setup, "80", &["outbox", "--all", "--output", "json"]).stdout,
    )
    .unwrap();
    assert!(rows.as_array().unwrap().len() >= 2, "{rows}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_job_is_marked_stalled_in_status() {
    let api = Api::start(vec![job("ftjob-slow", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("max_retries = 2", "max_retries = 2\nstall_after = \"1s\""));
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the stall alert", Duration::from_secs(15), || {
        hook.delivered_types()
            .contains(&"fine_tuning.job.stalled".to_string())
    })
    .await;
    let (out, _) = text(&at_width(&setup, "80", &["status"]));
    signal(&daemon, "TERM");
    wait_exit(&mut daemon, Duration::from_secs(10)).await;
    let row = out.lines().find(|l| l.contains("ftjob-slow")).unwrap();
    assert!(row.contains("running, stalled"), "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_events_changes_cover_everything_since_the_previous_event() {
    let api = Api::start(vec![job(
        "ftjob-a",
        "running",
        json!({"trained_tokens": 100}),
    )])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let once = || setup.command(&["once"]).status().unwrap().success();
    assert!(once());
    api.update("ftjob-a", json!({"metadata": {"owner": "ana"}}));
    assert!(once());
    api.update("ftjob-a", json!({"trained_tokens": 200}));
    assert!(once());
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "trained_tokens": 300}),
    );
    assert!(once());
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    let fields: Vec<&str> = got[0].body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"metadata.owner"), "{fields:?}");
    let tokens = got[0].body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "trained_tokens")
        .unwrap();
    assert_eq!((&tokens["from"], &tokens["to"]), (&json!(100), &json!(300)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_error_is_quoted_briefly_first_and_shown_once() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let smtp = Smtp::start(None);
    let hook = Hook::start().await;
    let extra = format!(
        "[[notifier]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {}\ntls = \"none\"\nfrom = \"tw <tw@example.com>\"\nto = [\"ml@example.com\"]\n\n\
         [[route]]\nevents = [\"fine_tuning.job.failed\"]\nnotifiers = [\"mail\"]\n",
        smtp.addr.port()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    assert!(setup.command(&["once"]).status().unwrap().success());
    let message: String = (0..1000).map(|i| format!("w{i} ")).collect::<String>();
    api.update(
        "ftjob-a",
        json!({"status": "failed", "error": {"code": "bad", "message": message}}),
    );
    assert!(setup.command(&["once"]).status().unwrap().success());
    let raw = smtp.accepted().pop().expect("one message");
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let body = mail.body_text(0).unwrap().to_string();
    let lead = body.lines().next().unwrap();
    assert!(lead.chars().count() <= 260, "the opening sentence: {lead}");
    // Past what the lead quotes, the error appears once, in its fact.
    assert_eq!(body.matches("w100 w101 w102").count(), 1, "{body}");
    assert!(
        body.find("Base model").unwrap() < 1_000,
        "the facts stay above the fold"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_with_a_rejected_key_does_not_report_a_successful_poll() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    api.fail_next(
        401,
        "application/json",
        r#"{"error": {"message": "Incorrect API key"}}"#,
    );
    let o = setup.command(&["once"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.contains("polled 1 source"), "{out}");
    assert!(err.contains("1 of 1 source could not be polled"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reads_systemd_credentials_from_a_folder_before_the_unit_runs() {
    let api = Api::start(vec![]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let creds = setup.dir.path().join("credstore");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("openai-api-key"), API_KEY).unwrap();
    setup.edit(|t| {
        t.replace(
            "api_key_file = \"api.key\"",
            "api_key_credential = \"openai-api-key\"",
        )
    });
    let o = setup
        .command(&["check"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("--credentials-dir"),
        "the way out is named: {err}"
    );
    let dir = creds.display().to_string();
    let o = setup
        .command(&["check", "--credentials-dir", &dir])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains(": valid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn small_things_say_what_they_mean() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    // demo does not silently ignore --config.
    let o = setup.command(&["demo"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("--config is not used"),
        "{:?}",
        text(&o)
    );
    // outbox retry of an id that is not dead: one clear sentence, nothing claimed.
    assert!(setup.command(&["once"]).status().unwrap().success());
    let o = setup.command(&["outbox", "retry", "999"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.is_empty(), "no '0 dead deliveries put back': {out}");
    assert!(
        err.contains("nothing put back: 999 is not in the outbox"),
        "{err}"
    );
    let o = setup.command(&["outbox", "retry"]).output().unwrap();
    assert!(text(&o).1.contains("--all-dead"), "{:?}", text(&o));
    // history shows times as dates, not epoch numbers.
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "finished_at": 1_735_480_000}),
    );
    assert!(setup.command(&["once"]).status().unwrap().success());
    let (out, _) = text(&setup.command(&["history", "ftjob-a"]).output().unwrap());
    assert!(
        out.contains("finished_at: null -> 2024-12-29T13:46:40Z"),
        "{out}"
    );
}

#[test]
fn the_demo_fits_80_columns_and_leaves_the_loss_chart_where_it_ran() {
    let here = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
        .arg("demo")
        .current_dir(here.path())
        // The status page would otherwise stay up a minute after the scenario.
        .env("TUNEWATCH_DEMO_LINGER", "0")
        .env_remove("TUNEWATCH_CONFIG")
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("alerts delivered"), "{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "the demo wraps: {line:?}");
    }
    assert!(
        out.contains("status page         http://127.0.0.1:"),
        "{out}"
    );
    // Training insight: progress, one overfitting warning, and the chart in the folder.
    assert!(out.contains("job.progress"), "{out}");
    assert_eq!(out.matches("job.overfitting").count(), 1, "{out}");
    // One batch alert, with its request counts.
    assert_eq!(out.matches("batch.completed").count(), 1, "{out}");
    assert!(
        out.contains("4,982 of 5,000 requests done, 18 failed (0.4 %)"),
        "{out}"
    );
    // The support fine-tune evaluated against its base model, said in one sentence.
    assert!(
        out.contains("job.evaluated   ftjob-support    improved"),
        "{out}"
    );
    assert!(out.contains("passed 12/12"), "{out}");
    // The sweep reaches the team chat as one message; the JSON webhook still hears every event.
    assert!(
        out.contains("team chat: 5 fine-tuning jobs succeeded on demo"),
        "{out}"
    );
    assert_eq!(
        out.matches("job.succeeded   ftjob-sweep-lr").count(),
        4,
        "{out}"
    );
    assert!(out.contains("./tunewatch-demo-loss.png"), "{out}");
    let png = std::fs::read(here.path().join("tunewatch-demo-loss.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_serves_its_status_page_after_the_scenario_until_ctrl_c() {
    let here = tempfile::tempdir().unwrap();
    let out_path = here.path().join("out.txt");
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
        .arg("demo")
        .current_dir(here.path())
        .env_remove("TUNEWATCH_CONFIG")
        .env("COLUMNS", "100")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait_until(
        "the page to stay up",
        std::time::Duration::from_secs(90),
        || read().contains("The status page stays up for 60 s"),
    )
    .await;
    let out = read();
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.ends_with('/') && !w.contains("/v1"))
        .unwrap()
        .to_string();
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("ftjob-support") && page.contains("batch_nightly_eval"),
        "{page}"
    );
    signal(&demo, "INT");
    let started = std::time::Instant::now();
    let status = demo.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends the demo cleanly");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(read().contains("alerts delivered"));
}
