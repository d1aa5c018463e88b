//! The real binary: exit codes, error sentences, the read-only commands, secrets kept out of every
//! output, and delivery surviving SIGKILL.

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use tunewatch::store::Store;

fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_secret(s: &str) {
    assert!(!s.contains(API_KEY), "the API key leaked:\n{s}");
    assert!(
        !s.contains("SECRET-api-key"),
        "part of the API key leaked:\n{s}"
    );
    assert!(!s.contains(HOOK_SECRET), "the webhook secret leaked:\n{s}");
    assert!(
        !s.contains("dGVzdC1ob29r"),
        "part of the webhook secret leaked:\n{s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transition_observed_but_not_delivered_is_delivered_after_sigkill_and_restart() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    // The first delivery attempt hangs: the daemon is killed while it is in flight.
    hook.answer(&[Answer::Hang]);
    let setup = Setup::new(&api, &hook.url(), "");
    let log = setup.dir.path().join("run.log");
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:x"}),
    );
    wait_until(
        "the delivery to be in flight",
        Duration::from_secs(10),
        || hook.received().len() == 1,
    )
    .await;
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let first = hook.received()[0].clone();
    assert!(first.answered.is_none());

    let store = Store::open(&setup.db()).unwrap();
    let rows = store.outbox_rows(false).unwrap();
    assert_eq!(rows.len(), 1, "the undelivered row survived the kill");
    assert_eq!(rows[0].state, "pending");
    drop(store);

    let mut daemon = setup.spawn_run("run2.log", &[]);
    wait_until(
        "the restarted daemon to deliver",
        Duration::from_secs(15),
        || !hook.delivered().is_empty(),
    )
    .await;
    let delivered = hook.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].webhook_id, first.webhook_id,
        "same event id after the restart"
    );
    assert_eq!(delivered[0].body["type"], "fine_tuning.job.succeeded");
    assert!(delivered[0].signature_ok);

    signal(&daemon, "TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let store = Store::open(&setup.db()).unwrap();
    assert_eq!(store.outbox_rows(false).unwrap().len(), 0);
    assert_eq!(
        store
            .history("ftjob-a", &tunewatch::pipeline::Policy::plain(1.0))
            .unwrap()
            .len(),
        3,
        "2 snapshots and 1 event"
    );
    let logs = std::fs::read_to_string(log).unwrap()
        + &std::fs::read_to_string(setup.dir.path().join("run2.log")).unwrap();
    assert_no_secret(&logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_daemon_with_exit_0_and_keeps_pending_rows() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Status(503); 50]);
    let setup = Setup::new(&api, &hook.url(), "");
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    api.update("ftjob-a", json!({"status": "failed"}));
    wait_until("a failed attempt", Duration::from_secs(10), || {
        !hook.received().is_empty()
    })
    .await;
    signal(&daemon, "TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let rows = Store::open(&setup.db())
        .unwrap()
        .outbox_rows(false)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_history_and_outbox_show_what_happened() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        job("ftjob-b", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let strict = Hook::start().await;
    strict.answer(&[Answer::Status(422)]);
    let extra = format!(
        "[[notifier]]\nname = \"strict\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.failed\"]\nnotifiers = [\"strict\"]\n",
        strict.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    let o = run(setup.command(&["status"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("does not exist yet"), "{}", text(&o).1);

    assert_eq!(run(setup.command(&["once"])).status.code(), Some(0));
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "trained_tokens": 5768}),
    );
    api.update("ftjob-b", json!({"status": "failed"}));
    let o = run(setup.command(&["once"]));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains("polled 1 source: 2 events raised, 3 deliveries attempted"),
        "{out}"
    );
    assert_no_secret(&(out + &err));

    let (out, _) = text(&run(setup.command(&["status"])));
    assert!(out.contains("prod: last poll"), "{out}");
    let line = out.lines().find(|l| l.contains("ftjob-a")).unwrap();
    assert!(
        line.contains("gpt-4o-mini-2024-07-18") && line.contains("succeeded"),
        "one source: no SOURCE column: {line}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("ftjob-b") && l.contains("failed")),
        "{out}"
    );

    let (out, _) = text(&run(setup.command(&["history", "ftjob-a"])));
    assert!(out.contains("status running (first seen)"), "{out}");
    assert!(
        out.contains("status: \"running\" -> \"succeeded\""),
        "{out}"
    );
    assert!(out.contains("trained_tokens: null -> 5768"), "{out}");
    assert!(
        out.contains("event fine_tuning.job.succeeded evt_"),
        "{out}"
    );
    assert!(
        out.contains("-> hook: delivered after 1 attempt(s)"),
        "{out}"
    );
    let o = run(setup.command(&["history", "ftjob-nope"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("job ftjob-nope is not in"));

    let (out, _) = text(&run(setup.command(&["outbox"])));
    let dead = out
        .lines()
        .find(|l| l.contains("dead"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        dead.contains("strict") && dead.contains("ftjob-b") && dead.contains("job.failed"),
        "{dead}"
    );
    assert!(
        out.contains("last error: [422]") || out.contains("HTTP 422"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| !l.trim_start().starts_with("last error:"))
            .count(),
        2,
        "delivered rows are hidden without --all: {out}"
    );
    let (out, _) = text(&run(setup.command(&["outbox", "--all"])));
    assert!(out.contains("delivered"), "{out}");
}

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, body).unwrap();
    path
}

const BASE: &str = r#"[daemon]
state_db = "t.db"

[[source]]
name = "prod"
kind = "openai"
api_key_env = "TW_TEST_KEY"
poll_interval = "60s"

[[notifier]]
name = "ops-hook"
kind = "webhook"
url = "https://hooks.example.com/x"

[[route]]
events = ["fine_tuning.job.failed"]
notifiers = ["ops-hook"]
"#;

fn tunewatch(config: &std::path::Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunewatch"));
    c.arg("--config").arg(config).args(args);
    c.env_remove("TUNEWATCH_CONFIG").env("TW_TEST_KEY", API_KEY);
    run(c)
}

/// Checks that `check` and `run` refuse `body` with exit 2 and one sentence naming the file, the
/// line and `key`.
fn refused(body: &str, line: usize, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), body);
    for command in ["check", "run"] {
        let o = tunewatch(&path, &[command]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{command}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
        let want = format!("error: {}, line {line}: ", path.display());
        assert!(err.starts_with(&want), "want {want:?}: {err}");
        assert!(err.contains(key), "want {key:?}: {err}");
    }
}

macro_rules! config_mistake {
    ($name:ident, $body:expr, $line:expr, $key:expr) => {
        #[test]
        fn $name() {
            refused(&$body, $line, $key);
        }
    };
}

const MAIL: &str = "\n[[notifier]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"mail.example.com\"\n\
                    from = \"a@example.com\"\nto = [\"b@example.com\"]\n\n[[route]]\n\
                    events = [\"fine_tuning.job.failed\"]\nnotifiers = [\"mail\"]\n";

config_mistake!(
    an_unknown_key,
    BASE.replace("poll_interval", "poll_intervall"),
    8,
    "unknown field `poll_intervall`"
);
config_mistake!(
    a_wrong_type,
    BASE.replace("poll_interval = \"60s\"", "poll_interval = 60"),
    8,
    "poll_interval"
);
config_mistake!(
    a_bad_duration,
    BASE.replace("\"60s\"", "\"sixty\""),
    8,
    "invalid duration \"sixty\""
);
config_mistake!(
    a_bad_url,
    BASE.replace("url = \"https://hooks.example.com/x\"", "url = \"::\""),
    13,
    "url"
);
config_mistake!(
    a_duplicate_name,
    format!(
        "{BASE}\n[[notifier]]\nname = \"ops-hook\"\nkind = \"webhook\"\nurl = \"https://x.example/\"\n"
    ),
    20,
    "duplicate notifier name \"ops-hook\""
);
config_mistake!(
    a_route_to_a_missing_notifier,
    BASE.replace("notifiers = [\"ops-hook\"]", "notifiers = [\"pager\"]"),
    17,
    "notifier \"pager\", which is not defined"
);
config_mistake!(
    an_empty_to_list,
    format!("{BASE}{MAIL}").replace("to = [\"b@example.com\"]", "to = []"),
    24,
    "empty `to`"
);
config_mistake!(
    plaintext_smtp_to_a_remote_host,
    format!("{BASE}{MAIL}").replace(
        "smtp_host = \"mail.example.com\"",
        "smtp_host = \"mail.example.com\"\ntls = \"none\""
    ),
    23,
    "clear text to mail.example.com"
);
config_mistake!(
    an_unknown_event_type,
    BASE.replace("fine_tuning.job.failed", "fine_tuning.job.failed.twice*x"),
    16,
    "unknown event type"
);
config_mistake!(
    a_notifier_no_route_reaches,
    format!(
        "{BASE}\n[[notifier]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"https://x.example/\"\n"
    ),
    20,
    "no [[route]] or [[digest]] names notifier \"pager\""
);
config_mistake!(
    an_unknown_source_kind,
    BASE.replace("kind = \"openai\"", "kind = \"cohere\""),
    6,
    "kind"
);

#[test]
fn a_missing_secret_stops_run_with_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), BASE);
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunewatch"));
    c.arg("--config")
        .arg(&path)
        .arg("run")
        .env_remove("TW_TEST_KEY");
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("source \"prod\" api key: environment variable $TW_TEST_KEY is not set"),
        "{err}"
    );
    assert!(
        !dir.path().join("t.db").exists(),
        "nothing is created for a config that cannot run"
    );
}

#[test]
fn a_missing_config_file_and_bad_usage_exit_2() {
    let o = tunewatch(
        std::path::Path::new("/nonexistent/tunewatch.toml"),
        &["check"],
    );
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    assert!(
        err.contains("cannot read config file /nonexistent/tunewatch.toml"),
        "{err}"
    );
    assert!(!err.contains("Os {"), "{err}");
    let o = tunewatch(std::path::Path::new("/x"), &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_config_path_comes_from_tunewatch_config_when_no_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), BASE);
    let o = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_tunewatch"));
        c.arg("check")
            .env("TUNEWATCH_CONFIG", &path)
            .env("TW_TEST_KEY", "k");
        c
    });
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains(&path.display().to_string()));
}

#[test]
fn check_summarises_a_good_config_and_names_each_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let body = BASE.replace(
        "url = \"https://hooks.example.com/x\"",
        "url = \"https://hooks.example.com/x\"\nsecret_file = \"missing.secret\"",
    );
    let path = write_config(dir.path(), &body);
    let o = tunewatch(&path, &["check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(out.contains("source    prod"), "{out}");
    assert!(
        err.contains("notifier \"ops-hook\": cannot read secret file")
            && err.contains("missing.secret"),
        "{err}"
    );

    std::fs::write(dir.path().join("missing.secret"), HOOK_SECRET).unwrap();
    let o = tunewatch(&path, &["check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("(signed)") && out.contains("route 1"), "{out}");
    assert_no_secret(&(out + &err));

    let mut c = Command::new(env!("CARGO_BIN_EXE_tunewatch"));
    c.arg("--config")
        .arg(&path)
        .arg("check")
        .env_remove("TW_TEST_KEY");
    let o = run(c);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("$TW_TEST_KEY is not set"),
        "{}",
        text(&o).1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_is_reported_without_the_key() {
    let api = Api::start(vec![]).await;
    for _ in 0..3 {
        api.fail_next(
            401,
            "application/json",
            r#"{"error": {"message": "Incorrect API key provided: sk-test-***6789.", "type": "invalid_request_error"}}"#,
        );
    }
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let o = run(setup.command(&["once"]));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("HTTP 401") && err.contains("Incorrect API key"),
        "{err}"
    );
    assert!(
        err.contains(&format!("the API key was rejected by {}", api.base())),
        "{err}"
    );
    assert_eq!(api.requests().len(), 1, "401 is not retried");
    assert_no_secret(&(out + &err));
}

#[test]
fn secrets_come_from_systemd_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("openai-api-key"), API_KEY).unwrap();
    let path = write_config(
        dir.path(),
        &BASE.replace(
            "api_key_env = \"TW_TEST_KEY\"",
            "api_key_credential = \"openai-api-key\"",
        ),
    );
    let check = |creds_dir: Option<&std::path::Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tunewatch"));
        c.arg("--config").arg(&path).arg("check");
        c.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(d) = creds_dir {
            c.env("CREDENTIALS_DIRECTORY", d);
        }
        run(c)
    };
    let o = check(Some(&creds));
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o)
            .0
            .contains("key from credential \"openai-api-key\""),
        "{}",
        text(&o).0
    );
    assert_no_secret(&(text(&o).0 + &text(&o).1));
    let o = check(None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("needs $CREDENTIALS_DIRECTORY"),
        "{}",
        text(&o).1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_drop_timestamps_under_journald_and_can_be_json_lines() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let once = |env: &[(&str, &str)]| {
        let mut c = setup.command(&["once"]);
        c.env_remove("RUST_LOG").env_remove("JOURNAL_STREAM");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = run(c);
        assert_eq!(o.status.code(), Some(0));
        text(&o).1
    };
    let plain = once(&[]);
    let first = plain.lines().next().unwrap();
    assert!(first.starts_with("20"), "a timestamp first: {first}");
    let journald = once(&[("JOURNAL_STREAM", "8:12345")]);
    assert!(journald.lines().count() >= 1, "{journald}");
    for line in journald.lines() {
        assert!(
            line.trim_start().starts_with("INFO") || line.trim_start().starts_with("WARN"),
            "no timestamp under journald: {line}"
        );
    }
    std::fs::write(
        &setup.config,
        std::fs::read_to_string(&setup.config)
            .unwrap()
            .replace("[daemon]", "[daemon]\nlog_format = \"json\""),
    )
    .unwrap();
    let json_lines = once(&[]);
    for line in json_lines.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(json_lines.contains("\"polled\""), "{json_lines}");
    std::fs::write(
        &setup.config,
        std::fs::read_to_string(&setup.config)
            .unwrap()
            .replace("log_format = \"json\"", "log_level = \"warn\""),
    )
    .unwrap();
    assert!(
        !once(&[]).contains("INFO"),
        "log_level applies without RUST_LOG"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reaches_a_postgresql_store_and_names_a_wrong_password() {
    let api = Api::start(vec![]).await;
    let setup = Setup::on(Backend::Postgres, &api, "http://127.0.0.1:9/hook", "");
    let out = setup.command(&["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(PostgreSQL, shared: instance "), "{text}");
    assert!(
        text.contains("-PID, leader_lease 15s, claim_lease 2m)"),
        "{text}"
    );
    assert!(
        text.contains("reachable: PostgreSQL ") && text.contains("no tunewatch tables yet"),
        "{text}"
    );
    std::fs::write(setup.dir.path().join("pg.password"), "not-it").unwrap();
    let out = setup.command(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("NOT valid (the database cannot be reached; see below)"),
        "{text}"
    );
    assert!(
        err.contains("password authentication failed") && !err.contains("not-it"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_with_a_newer_schema_is_refused_by_every_command_with_one_sentence() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    assert!(run(setup.command(&["once"])).status.success());
    let db = rusqlite::Connection::open(setup.db()).unwrap();
    db.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
        [],
    )
    .unwrap();
    drop(db);
    let mut sentences = Vec::new();
    for args in [
        &["once"][..],
        &["status"],
        &["outbox"],
        &["history", "ftjob-a"],
        &["metrics", "ftjob-a"],
    ] {
        let o = run(setup.command(args));
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} read a newer database");
        let sentence = err
            .lines()
            .find(|l| l.contains("newer than this tunewatch knows"))
            .unwrap_or_else(|| panic!("{args:?}: {err}"))
            .trim_start_matches("error: ")
            .to_string();
        sentences.push(sentence);
    }
    assert!(
        sentences.iter().all(|s| s == &sentences[0]),
        "the same sentence everywhere: {sentences:#?}"
    );
}
