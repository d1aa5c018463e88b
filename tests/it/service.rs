//! The daemon as a service, through the real binary: systemd notifications on a socket the test
//! binds, the watchdog withheld when a loop is stuck, SIGHUP reload, one daemon per database,
//! `/healthz` and `/metrics`.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A datagram socket standing in for systemd's notify socket; collects what the daemon sends.
struct NotifySocket {
    path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        NotifySocket { path, messages }
    }

    fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.all()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    fn last(&self, line: &str) -> Option<Instant> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| *t)
    }
}

async fn stop(mut child: Child) {
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let notify = NotifySocket::bind(setup.dir.path());
    let socket = notify.path.display().to_string();
    let child = setup.spawn_run(
        "run.log",
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")],
    );
    wait_until("READY=1", Duration::from_secs(10), || {
        notify.count("READY=1") == 1
    })
    .await;
    let ready = notify
        .all()
        .into_iter()
        .find(|m| m.contains("READY=1"))
        .unwrap();
    assert!(
        ready.contains("STATUS=watching") && ready.contains("from 1 sources"),
        "{ready}"
    );
    assert!(setup.db().exists(), "ready only once the database is open");
    wait_until("repeated WATCHDOG=1", Duration::from_secs(10), || {
        notify.count("WATCHDOG=1") >= 3
    })
    .await;

    signal(&child, "HUP");
    wait_until("RELOADING=1 then READY=1", Duration::from_secs(10), || {
        notify.count("READY=1") == 2
    })
    .await;
    let all = notify.all();
    let reloading = all.iter().position(|m| m.contains("RELOADING=1")).unwrap();
    let second_ready = all.iter().rposition(|m| m.contains("READY=1")).unwrap();
    assert!(reloading < second_ready, "{all:?}");
    assert!(all[reloading].contains("MONOTONIC_USEC="), "{all:?}");

    stop(child).await;
    assert_eq!(notify.count("STOPPING=1"), 1, "{:?}", notify.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watchdog_ping_stops_while_a_poll_is_stuck() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace(
            "max_retries = 2",
            "max_retries = 0\nrequest_timeout = \"60s\"",
        )
    });
    let notify = NotifySocket::bind(setup.dir.path());
    let socket = notify.path.display().to_string();
    let child = setup.spawn_run(
        "run.log",
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "600000")],
    );
    wait_until("watchdog pings", Duration::from_secs(10), || {
        notify.count("WATCHDOG=1") >= 2
    })
    .await;
    // The next poll's request gets no answer for a minute: the poll loop is stuck.
    api.script(Scripted {
        delay: Duration::from_secs(60),
        status: 200,
        content_type: "application/json",
        body: "{}".into(),
        headers: vec![],
        ..Scripted::default()
    });
    let requests = api.requests().len();
    wait_until("the hanging request", Duration::from_secs(10), || {
        api.requests().len() > requests
    })
    .await;
    let hung_at = Instant::now();
    wait_until(
        "two watchdog intervals without a ping",
        Duration::from_secs(10),
        || {
            let last = notify.last("WATCHDOG=1").unwrap();
            Instant::now().duration_since(last.max(hung_at)) > Duration::from_millis(1_300)
        },
    )
    .await;
    assert!(
        setup
            .log("run.log")
            .contains("withholding the watchdog ping"),
        "{}",
        setup.log("run.log")
    );
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_route_and_a_broken_config_keeps_the_old_one() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        job("ftjob-b", "running", json!({})),
        job("ftjob-c", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let pager = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace(
            "events = [\"fine_tuning.job.*\"]",
            "events = [\"fine_tuning.job.succeeded\"]",
        )
    });
    let child = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    api.update("ftjob-a", json!({"status": "failed"}));
    setup
        .wait_for_log(
            "run.log",
            "event=fine_tuning.job.failed",
            "the failure to be stored",
        )
        .await;
    assert!(
        hook.received().is_empty() && pager.received().is_empty(),
        "no route for failed yet"
    );

    setup.edit(|t| {
        t + &format!(
            "\n[[notifier]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
             [[route]]\nevents = [\"fine_tuning.job.failed\"]\nnotifiers = [\"pager\"]\n",
            pager.url()
        )
    });
    signal(&child, "HUP");
    setup
        .wait_for_log("run.log", "config reloaded", "the reload")
        .await;
    api.update("ftjob-b", json!({"status": "failed"}));
    wait_until("the new route to be used", Duration::from_secs(10), || {
        pager.delivered().len() == 1
    })
    .await;
    assert_eq!(pager.delivered()[0].body["data"]["id"], "ftjob-b");

    let good = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        good.replace("kind = \"webhook\"", "kind = \"carrier-pigeon\""),
    )
    .unwrap();
    signal(&child, "HUP");
    setup
        .wait_for_log(
            "run.log",
            "config reload failed; keeping the running config",
            "the refused reload",
        )
        .await;
    let logged = setup.log("run.log");
    assert!(
        logged.contains("carrier-pigeon"),
        "the error names the bad value: {logged}"
    );
    api.update("ftjob-c", json!({"status": "failed"}));
    wait_until(
        "the old config to keep working",
        Duration::from_secs(10),
        || pager.delivered().len() == 2,
    )
    .await;
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_database_is_refused() {
    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let first = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "tunewatch running", "the first daemon to start")
        .await;
    for command in ["run", "once"] {
        let o = setup.command(&[command]).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "database {} is in use by another tunewatch (process {})",
                setup.db().display(),
                first.id()
            )),
            "{err}"
        );
    }
    stop(first).await;
    let o = setup.command(&["once"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "free again once the first has stopped"
    );
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_turns_503_while_the_api_fails_and_metrics_tell_the_story() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
        .replace("max_retries = 2", "max_retries = 0")
    });
    let child = setup.spawn_run("run.log", &[]);
    let base = format!("http://127.0.0.1:{port}");
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline poll")
        .await;
    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["sources"][0]["name"], "prod");

    api.update("ftjob-a", json!({"status": "succeeded"}));
    wait_until("the delivery", Duration::from_secs(10), || {
        hook.delivered().len() == 1
    })
    .await;
    for _ in 0..200 {
        api.fail_next(
            500,
            "application/json",
            r#"{"error": {"message": "upstream down"}}"#,
        );
    }
    let unhealthy = eventually("/healthz to turn 503", Duration::from_secs(10), || async {
        let (status, body) = get(&format!("{base}/healthz")).await;
        (status == 503).then_some(body)
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(&unhealthy).expect("a 503 with JSON");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("source \"prod\" has not polled successfully"),
        "{reason}"
    );
    assert!(reason.contains("upstream down"), "{reason}");

    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for needle in [
        "tunewatch_build_info{version=",
        "tunewatch_polls_total{source=\"prod\",outcome=\"ok\"}",
        "tunewatch_polls_total{source=\"prod\",outcome=\"error\"}",
        "tunewatch_api_requests_total{source=\"prod\",code=\"200\"}",
        "tunewatch_api_requests_total{source=\"prod\",code=\"500\"}",
        "tunewatch_api_request_duration_seconds_count{source=\"prod\"}",
        "tunewatch_jobs{source=\"prod\",status=\"succeeded\"} 1",
        "tunewatch_events_total{type=\"fine_tuning.job.succeeded\"} 1",
        "tunewatch_deliveries_total{notifier=\"hook\",outcome=\"delivered\"} 1",
        "tunewatch_outbox_pending 0",
        "tunewatch_outbox_dead 0",
        "tunewatch_last_successful_poll_timestamp_seconds{source=\"prod\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    api.state.lock().unwrap().script.clear();
    eventually(
        "/healthz to be 200 again",
        Duration::from_secs(10),
        || async { (get(&format!("{base}/healthz")).await.0 == 200).then_some(()) },
    )
    .await;
    stop(child).await;
}
