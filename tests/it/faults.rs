//! Every fault tunewatch will meet, each answered with a clear sentence, no panic, and no event
//! lost: API failures of every class, bad jobs, vanished jobs, dead receivers, and storage that
//! fails under the daemon.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use tunewatch::Daemon;
use tunewatch::store::{Store, Table, unix_now_ms};

fn scripted(status: u16, content_type: &'static str, body: &str) -> Scripted {
    Scripted {
        status,
        content_type,
        body: body.into(),
        ..Scripted::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_failure_class_is_survived_reported_and_recovered_from() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace(
            "max_retries = 2",
            "max_retries = 0\nrequest_timeout = \"1s\"",
        )
        .replace(
            "events = [\"fine_tuning.job.*\"]",
            "events = [\"fine_tuning.job.*\", \"tunewatch.source.*\"]",
        )
    });
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;

    let job_body = serde_json::to_string(&json!({"object": "list", "has_more": false,
        "data": [job("ftjob-a", "running", json!({}))]}))
    .unwrap();
    api.fail_next(
        500,
        "application/json",
        r#"{"error": {"message": "The server had an error"}}"#,
    );
    api.script(Scripted {
        headers: vec![("retry-after-ms", "20".into())],
        ..scripted(
            429,
            "application/json",
            r#"{"error": {"message": "Rate limit reached"}}"#,
        )
    });
    api.fail_next(
        200,
        "application/json",
        "{\"object\": \"list\", \"data\": [{\"id\": ",
    );
    api.fail_next(
        502,
        "text/html",
        "<html><head><title>502 Bad Gateway</title></head></html>",
    );
    api.script(Scripted {
        truncate_at: Some(20),
        ..scripted(200, "application/json", &job_body)
    });
    api.fail_next(
        401,
        "application/json",
        r#"{"error": {"message": "Incorrect API key provided"}}"#,
    );
    api.fail_next(
        200,
        "application/json",
        r#"{"object": "list", "data": {"id": "x"}}"#,
    );
    api.script(Scripted {
        delay: Duration::from_secs(3),
        ..scripted(200, "application/json", &job_body)
    });
    // Meanwhile the job finishes; the first good poll must still deliver it.
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:x"}),
    );

    wait_until(
        "failing, the transition and recovered",
        Duration::from_secs(30),
        || hook.delivered_types().len() >= 3,
    )
    .await;
    // Failing comes first; the transition and the recovery are raised by the same good poll
    // and delivered concurrently.
    let mut types = hook.delivered_types();
    assert_eq!(types.remove(0), "tunewatch.source.failing");
    types.sort();
    assert_eq!(
        types,
        ["fine_tuning.job.succeeded", "tunewatch.source.recovered"]
    );
    let failing = hook.delivered()[0].body.clone();
    assert_eq!(failing["source"], "prod");
    // The third failure in a row (the invalid JSON) made the source count as failing.
    assert!(
        failing["error"].as_str().unwrap().contains("invalid JSON"),
        "{failing}"
    );
    assert!(daemon.try_wait().unwrap().is_none(), "still running");

    let logged = setup.log("run.log");
    for (class, needle) in [
        (
            "5xx",
            "answered HTTP 500 Internal Server Error: The server had an error",
        ),
        (
            "429",
            "answered HTTP 429 Too Many Requests: Rate limit reached",
        ),
        (
            "invalid JSON",
            "invalid JSON: EOF while parsing a value at line 1 column",
        ),
        (
            "HTML error page",
            "HTTP 502 Bad Gateway (text/html): <html><head><title>502 Bad Gateway",
        ),
        (
            "truncated body",
            "connection closed before message completed",
        ),
        ("401", "the API key was rejected by"),
        (
            "wrong shape",
            "the answer is not a job list (no `data` array)",
        ),
        ("read timeout", "timed out"),
    ] {
        assert!(
            logged.contains(needle),
            "no clear line for {class} ({needle}) in:\n{logged}"
        );
    }
    assert!(!logged.contains("panicked"), "{logged}");
    assert_eq!(
        logged.matches("raised tunewatch.source.failing").count(),
        1,
        "once per episode"
    );

    let status = setup.command(&["status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("prod: last poll") && status.contains(", ok"),
        "{status}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_job_in_a_page_is_skipped_and_the_rest_is_stored() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        json!({"id": "ftjob-broken", "object": "fine_tuning.job", "status": 42}),
        json!("not even an object"),
        job("ftjob-c", "queued", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    let report = daemon.once().await.unwrap();
    assert!(report.failed_sources.is_empty());
    let jobs: Vec<String> = daemon
        .store()
        .jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.contains(&"ftjob-a".to_string()) && jobs.contains(&"ftjob-c".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tracked_job_missing_from_the_list_is_fetched_and_a_404_marks_it_gone() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        job("ftjob-b", "running", json!({})),
        job("ftjob-c", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    // b vanishes from the API entirely; c only drops out of the listing, having finished.
    api.state
        .lock()
        .unwrap()
        .jobs
        .retain(|j| j["id"] != "ftjob-b");
    api.update("ftjob-c", json!({"status": "succeeded"}));
    let c = api
        .state
        .lock()
        .unwrap()
        .jobs
        .iter()
        .find(|j| j["id"] == "ftjob-c")
        .cloned()
        .unwrap();
    api.state
        .lock()
        .unwrap()
        .jobs
        .retain(|j| j["id"] != "ftjob-c");
    let report = daemon.once().await.unwrap();
    assert!(
        report.failed_sources.is_empty(),
        "a 404 is not a failed poll"
    );
    let requests = api.requests();
    assert!(
        requests.contains(&"/v1/fine_tuning/jobs/ftjob-b".to_string()),
        "{requests:?}"
    );
    assert_eq!(daemon.store().open_jobs("prod").unwrap(), ["ftjob-a"]);
    let status = tunewatch::cli::status(daemon.store(), daemon.config(), 200).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.contains("ftjob-b") && l.contains("running (gone: the API answers 404)")),
        "{status}"
    );
    assert!(
        hook.delivered_types().is_empty(),
        "the list no longer shows c; its GET did 404 too"
    );

    // c comes back through its own URL (the list is still missing it): the change is seen.
    api.state.lock().unwrap().jobs.push(c);
    api.state
        .lock()
        .unwrap()
        .jobs
        .retain(|j| j["id"] == "ftjob-a" || j["id"] == "ftjob-c");
    daemon.once().await.unwrap();
    let before = api.requests().len();
    daemon.once().await.unwrap();
    assert!(
        api.requests()[before..]
            .iter()
            .all(|r| !r.contains("ftjob-b")),
        "a gone job is not fetched again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_connection_and_a_connect_timeout_are_failed_polls_with_a_reason() {
    // A server that accepts and hangs up at once.
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_addr = closer.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in closer.incoming() {
            drop(stream);
        }
    });
    // A server whose accept queue is full: new connections are never completed.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(Ok(s)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(full_addr),
    )
    .await
    {
        held.push(s);
    }

    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    for (addr, expected) in [(closer_addr, "GET http://"), (full_addr, "timed out")] {
        let setup = Setup::new(&api, &hook.url(), "");
        setup.edit(|t| {
            t.replace(&api.base(), &format!("http://{addr}/v1"))
                .replace(
                    "max_retries = 2",
                    "max_retries = 0\nconnect_timeout = \"300ms\"\nrequest_timeout = \"2s\"",
                )
        });
        let daemon = Daemon::new(setup.load()).unwrap();
        let report = daemon.once().await.unwrap();
        let why = &report.failed_sources[0].1;
        assert!(
            why.contains(expected) && why.contains(&addr.to_string()),
            "{why}"
        );
        assert_eq!(daemon.store().sources().unwrap()[0].consecutive_failures, 1);
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_for_good_ends_dead_reported_and_can_be_retried() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Status(503); 1000]);
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace("give_up_after = \"1h\"", "give_up_after = \"3s\"")
            .replace("retry_max = \"400ms\"", "retry_max = \"200ms\"")
    });
    let daemon = Daemon::new(setup.load()).unwrap();
    let telemetry = daemon.telemetry().clone();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    let store = daemon.store().clone();
    wait_until(
        "the delivery to be given up",
        Duration::from_secs(10),
        || {
            if store
                .next_due_ms()
                .unwrap()
                .is_some_and(|t| t <= unix_now_ms())
            {
                let d = tokio::runtime::Handle::current();
                let _ = tokio::task::block_in_place(|| d.block_on(daemon.once()));
            }
            store.count(Table::DeadDeliveries).unwrap() == 1
        },
    )
    .await;
    let row = store.outbox_rows(false).unwrap().remove(0);
    assert!(row.attempts >= 3, "retried until give_up_after: {row:?}");
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after"),
        "{row:?}"
    );
    assert_eq!(telemetry.metrics.deliveries_of("hook", "dead"), 1);
    let attempts = hook.received().len();
    drop(daemon);

    hook.state.lock().unwrap().script.clear();
    let o = setup
        .command(&["outbox", "retry", "--all-dead"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 dead delivery put back in the outbox"));
    let o = setup
        .command(&["outbox", "retry", "99999"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "an id that is not dead is reported"
    );
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].webhook_id,
        hook.received()[0].webhook_id,
        "the same event id"
    );
    assert_eq!(hook.received().len(), attempts + 1);
}

/// Runs the daemon until its baseline, applies `fault` to the database, changes a job, and
/// returns the daemon's exit status and log.
async fn run_into_storage_fault(
    fault: impl FnOnce(&Setup),
) -> (Setup, std::process::ExitStatus, String) {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    fault(&setup);
    api.update("ftjob-a", json!({"status": "succeeded"}));
    let status = wait_exit(&mut daemon, Duration::from_secs(15)).await;
    let logged = setup.log("run.log");
    std::mem::forget(api);
    (setup, status, logged)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_becomes_read_only_stops_the_daemon_without_corrupting_it() {
    let chattr = |flag: &str, path: &std::path::Path| {
        Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .unwrap()
            .success()
    };
    // The database and its write-ahead log refuse writes (the shared-memory index stays
    // writable, as it would on a read-only remount, which the kernel refuses while it is mapped).
    let (setup, status, logged) = run_into_storage_fault(|s| {
        for suffix in ["", "-wal"] {
            let p = std::path::PathBuf::from(format!("{}{suffix}", s.db().display()));
            assert!(chattr("+i", &p), "chattr +i {}", p.display());
        }
    })
    .await;
    for suffix in ["", "-wal"] {
        chattr(
            "-i",
            &std::path::PathBuf::from(format!("{}{suffix}", setup.db().display())),
        );
    }
    assert_eq!(status.code(), Some(1), "{logged}");
    let last = logged.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: database") && last.contains(&setup.db().display().to_string()),
        "{last}"
    );
    assert!(!logged.contains("panicked"));
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let store = Store::open(&setup.db()).unwrap();
    assert_eq!(
        store.count(Table::Snapshots).unwrap(),
        1,
        "the baseline is intact"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_removed_under_the_daemon_stops_it_with_a_clear_error() {
    let (setup, status, logged) = run_into_storage_fault(|s| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", s.db().display()));
        }
    })
    .await;
    assert_eq!(status.code(), Some(1), "{logged}");
    assert!(
        logged.contains(&format!(
            "database {} was removed or replaced",
            setup.db().display()
        )),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_daemon_with_a_clear_error() {
    // The daemon gets a private 1 MiB tmpfs for its state (a user and mount namespace: no effect
    // on the host); the script fills it once the baseline is stored.
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let state = setup.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (log_path, mark) = (
        setup.dir.path().join("run.log"),
        setup.dir.path().join("filled"),
    );
    let script = format!(
        "set -e
mount -t tmpfs -o size=1m tmpfs '{state}'
RUST_LOG=info '{bin}' --config '{config}' run 2>'{log}' &
pid=$!
n=0
until grep -q baseline=true '{log}'; do n=$((n+1)); [ $n -lt 400 ] || exit 99; sleep 0.05; done
dd if=/dev/zero of='{state}/filler' bs=4k 2>/dev/null || true
touch '{mark}'
wait $pid",
        state = state.display(),
        bin = env!("CARGO_BIN_EXE_tunewatch"),
        config = setup.config.display(),
        log = log_path.display(),
        mark = mark.display(),
    );
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the disk to fill up", Duration::from_secs(20), || {
        mark.exists()
    })
    .await;
    api.update("ftjob-a", json!({"status": "succeeded"}));
    let status = wait_exit(&mut child, Duration::from_secs(15)).await;
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(status.code(), Some(1), "{logged}");
    let last = logged.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: database") && last.contains("full"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_process_is_waited_for() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    // Another process (here: another connection) holds the write lock for two seconds.
    let db = setup.db();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(2)); // the fault: a lock held this long
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    wait_until(
        "the delivery after the lock is released",
        Duration::from_secs(15),
        || hook.delivered().len() == 1,
    )
    .await;
    holder.join().unwrap();
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "{}",
        setup.log("run.log")
    );
    assert!(
        !setup.log("run.log").contains("error"),
        "{}",
        setup.log("run.log")
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
