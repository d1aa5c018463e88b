//! Two real daemons on one PostgreSQL database, as two hosts would run them: one leads and polls,
//! both deliver. The leader is SIGKILLed mid-delivery, and later the new leader mid-poll. Each
//! time the other takes over within the lease, every transition is delivered, a resend carries
//! the same event id, and nothing is raised twice.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tunewatch::config::Secret;
use tunewatch::notify::SigningKey;

const WHSEC: &str = "whsec_Zml4dHVyZS1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmM=";

/// `tunewatch --config CONFIG run`, logging to `log` in the setup's folder.
fn spawn_with_config(setup: &Setup, config: &std::path::Path, log: &str) -> std::process::Child {
    let file = std::fs::File::create(setup.dir.path().join(log)).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("TUNEWATCH_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// POSTs OpenAI's webhook about `object` to the daemon on `port`, signed; returns the status.
async fn post_openai_webhook(port: u16, source: &str, id: &str, object: &str) -> u16 {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = json!({"id": format!("evt_{id}"), "object": "event",
                      "type": "fine_tuning.job.succeeded", "created_at": ts,
                      "data": {"id": object}})
    .to_string();
    let key = SigningKey::from_secret(&Secret::new(WHSEC)).unwrap();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/{source}"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", key.sign(id, ts, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get_text(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn get_json(port: u16, path: &str) -> Value {
    serde_json::from_str(&get_text(port, path).await).unwrap()
}

/// The value of this daemon's `tunewatch_leader` series.
fn leader_gauge(metrics: &str) -> Option<&str> {
    metrics
        .lines()
        .find(|l| l.starts_with("tunewatch_leader{instance=\""))
        .and_then(|l| l.rsplit(' ').next())
}

/// `leader_lease` and `claim_lease` of these tests: the smallest the config allows.
const LEASE: Duration = Duration::from_secs(3);

fn two_daemon_setup(api: &Api, hook: &Hook) -> Setup {
    let setup = Setup::on(Backend::Postgres, api, &hook.url(), "");
    setup.edit(|t| {
        t.replacen(
            "[daemon]\n",
            "[daemon]\nleader_lease = \"3s\"\nclaim_lease = \"5s\"\n",
            1,
        )
    });
    setup
}

/// Starts daemon a (`a.log`), waits for it to lead and take its baseline, then starts daemon b
/// (`b.log`) and waits until it follows.
async fn leader_and_follower(setup: &Setup) -> (std::process::Child, std::process::Child) {
    let a = setup.spawn_run("a.log", &[]);
    wait_to_lead(setup, "a.log").await;
    setup
        .wait_for_log("a.log", "baseline=true", "the baseline poll")
        .await;
    let b = setup.spawn_run("b.log", &[]);
    setup
        .wait_for_log("b.log", "following:", "the second daemon to follow")
        .await;
    (a, b)
}

/// Waits until `log` says its daemon leads; returns when it was seen.
async fn wait_to_lead(setup: &Setup, log: &str) -> Instant {
    wait_until("a daemon to lead", Duration::from_secs(30), || {
        setup.log(log).contains("leading: this daemon polls")
    })
    .await;
    Instant::now()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_follower_takes_over_when_the_leader_is_killed_mid_delivery_and_mid_poll() {
    let api = Api::start(vec![
        job("ftjob-b", "running", json!({})),
        job("ftjob-a", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = two_daemon_setup(&api, &hook);
    let (mut a, mut b) = leader_and_follower(&setup).await;
    let leader = setup.store().leader().unwrap().unwrap();
    assert!(
        leader.holder.ends_with(&format!("-{}", a.id())),
        "a leads: {leader:?}"
    );
    assert!(!setup.log("b.log").contains("leading:"), "b follows");

    // Mid-delivery: the first attempt hangs, and its daemon is killed with it in flight.
    hook.answer(&[Answer::Hang]);
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "fine_tuned_model": "ft:a"}),
    );
    wait_until(
        "the delivery to be in flight",
        Duration::from_secs(10),
        || hook.received().len() == 1,
    )
    .await;
    let in_flight = hook.received()[0].webhook_id.clone();
    a.kill().unwrap(); // SIGKILL: no resignation, the lease has to run out
    let killed = Instant::now();
    a.wait().unwrap();
    let took_over = wait_to_lead(&setup, "b.log").await - killed;
    wait_until(
        "the alert in flight to be delivered by the survivor",
        Duration::from_secs(30),
        || hook.delivered().iter().any(|r| r.webhook_id == in_flight),
    )
    .await;
    let redelivered = killed.elapsed();

    // Mid-poll: a restarts and follows; b, now leading, is killed while its request hangs.
    let mut a2 = setup.spawn_run("a2.log", &[]);
    setup
        .wait_for_log("a2.log", "tunewatch running", "a to restart")
        .await;
    api.script(Scripted {
        delay: Duration::from_secs(60),
        status: 500,
        content_type: "application/json",
        body: "{}".into(),
        ..Scripted::default()
    });
    api.update(
        "ftjob-b",
        json!({"status": "failed", "error": {"message": "oom"}}),
    );
    let before = api.requests().len();
    wait_until("b to be mid-poll", Duration::from_secs(10), || {
        api.requests().len() > before && api.state.lock().unwrap().script.is_empty()
    })
    .await;
    b.kill().unwrap();
    let killed = Instant::now();
    b.wait().unwrap();
    let took_over_poll = wait_to_lead(&setup, "a2.log").await - killed;
    wait_until(
        "the transition b was polling to be delivered",
        Duration::from_secs(30),
        || {
            hook.delivered_types()
                .contains(&"fine_tuning.job.failed".to_string())
        },
    )
    .await;

    // One more transition, now that a leads again, to show the pipeline runs on.
    api.add(job("ftjob-c", "queued", json!({"created_at": 1735490000})));
    wait_until("the new job's alert", Duration::from_secs(30), || {
        hook.delivered_types()
            .contains(&"fine_tuning.job.created".to_string())
    })
    .await;
    signal(&a2, "TERM");
    assert_eq!(
        wait_exit(&mut a2, Duration::from_secs(10)).await.code(),
        Some(0)
    );

    // Duplicates only with the same event id and body; each transition raised once.
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in hook.received() {
        assert!(r.signature_ok);
        by_id.entry(r.webhook_id).or_default().push(r.body);
    }
    let mut kinds: Vec<(String, String)> = Vec::new();
    for bodies in by_id.values() {
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "same body: {bodies:?}"
        );
        kinds.push((
            bodies[0]["data"]["id"].as_str().unwrap().to_string(),
            bodies[0]["type"].as_str().unwrap().to_string(),
        ));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (
                "ftjob-a".to_string(),
                "fine_tuning.job.succeeded".to_string()
            ),
            ("ftjob-b".into(), "fine_tuning.job.failed".into()),
            ("ftjob-c".into(), "fine_tuning.job.created".into()),
        ],
        "every transition once, nothing raised twice"
    );
    let store = setup.store();
    assert_eq!(store.count(tunewatch::store::Table::Events).unwrap(), 3);
    assert_eq!(
        store
            .count(tunewatch::store::Table::PendingDeliveries)
            .unwrap(),
        0
    );
    // The lease ran out on the database's clock `LEASE` after the last renewal (at most a third
    // of it before the kill); the follower tries every third.
    let bound = LEASE + LEASE / 3 + Duration::from_secs(2);
    assert!(
        took_over < bound,
        "mid-delivery takeover took {took_over:?}"
    );
    assert!(
        took_over_poll < bound,
        "mid-poll takeover took {took_over_poll:?}"
    );
    let logs = setup.log("a.log") + &setup.log("b.log") + &setup.log("a2.log");
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(
        !logs.contains(pg::PG_PASSWORD),
        "the password is never logged"
    );
    println!(
        "failover (leader_lease 3s, claim_lease 5s): takeover {} ms after SIGKILL mid-delivery \
         (the alert in flight delivered after {} ms), {} ms after SIGKILL mid-poll",
        took_over.as_millis(),
        redelivered.as_millis(),
        took_over_poll.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_taken_by_the_follower_is_refreshed_by_the_leader() {
    let api = Api::start(vec![job("ftjob-w", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = two_daemon_setup(&api, &hook);
    // Slow polling: only the webhook can bring the change in quickly.
    setup.edit(|t| {
        t.replace("poll_interval = \"200ms\"", "poll_interval = \"1h\"")
            .replace(
                "idle_poll_interval = \"200ms\"",
                "idle_poll_interval = \"1h\"",
            )
            .replace(
                "max_retries = 2\n",
                "max_retries = 2\nwebhook_secret_file = \"openai.whsec\"\n",
            )
    });
    std::fs::write(setup.dir.path().join("openai.whsec"), WHSEC).unwrap();
    let ports = [free_port(), free_port()];
    let with_listen = |port: u16| {
        let text = std::fs::read_to_string(&setup.config).unwrap();
        let path = setup.dir.path().join(format!("config-{port}.toml"));
        std::fs::write(
            &path,
            text.replacen(
                "[daemon]\n",
                &format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n"),
                1,
            ),
        )
        .unwrap();
        path
    };
    let (ca, cb) = (with_listen(ports[0]), with_listen(ports[1]));
    let mut a = spawn_with_config(&setup, &ca, "a.log");
    wait_to_lead(&setup, "a.log").await;
    setup
        .wait_for_log("a.log", "baseline=true", "the baseline poll")
        .await;
    let mut b = spawn_with_config(&setup, &cb, "b.log");
    setup
        .wait_for_log("b.log", "tunewatch running", "the follower")
        .await;
    api.update(
        "ftjob-w",
        json!({"status": "succeeded", "fine_tuned_model": "ft:w"}),
    );
    // OpenAI posts to the follower's address.
    let status = post_openai_webhook(ports[1], "prod", "wh_follower_1", "ftjob-w").await;
    assert_eq!(status, 200);
    wait_until(
        "the leader to refresh and alert",
        Duration::from_secs(10),
        || {
            hook.delivered_types()
                .contains(&"fine_tuning.job.succeeded".to_string())
        },
    )
    .await;
    // /healthz and /metrics on each say who leads.
    let health_b: Value = get_json(ports[1], "/healthz").await;
    assert_eq!(health_b["leading"], false, "{health_b}");
    assert!(
        health_b["leader"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{}", a.id()))
    );
    let health_a: Value = get_json(ports[0], "/healthz").await;
    assert_eq!(health_a["leading"], true, "{health_a}");
    let metrics_b = get_text(ports[1], "/metrics").await;
    assert_eq!(leader_gauge(&metrics_b), Some("0"), "{metrics_b}");
    let metrics_a = get_text(ports[0], "/metrics").await;
    assert_eq!(leader_gauge(&metrics_a), Some("1"), "{metrics_a}");
    // The status page (on either daemon) says who leads.
    let page = get_text(ports[1], "/").await;
    assert!(
        page.contains(&format!("-{} leads and polls (epoch", a.id())),
        "{page}"
    );
    // `status` names the leader, in text and JSON.
    let out = setup
        .command(&["status", "--output", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let leader = &json["daemon"]["leader"];
    assert!(
        leader["instance"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{}", a.id()))
            && leader["alive"] == true,
        "{json}"
    );
    let out = setup.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("-{} leads and polls (epoch", a.id())),
        "{text}"
    );
    for d in [&mut a, &mut b] {
        signal(d, "TERM");
        assert_eq!(wait_exit(d, Duration::from_secs(10)).await.code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_wakes_deposed_and_raises_nothing_twice() {
    let api = Api::start(vec![job("ftjob-p", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = two_daemon_setup(&api, &hook);
    let (mut a, mut b) = leader_and_follower(&setup).await;
    // a stops dead (a long GC pause, a frozen VM) with its lease held; the job finishes.
    signal(&a, "STOP");
    api.update(
        "ftjob-p",
        json!({"status": "succeeded", "fine_tuned_model": "ft:p"}),
    );
    wait_to_lead(&setup, "b.log").await;
    wait_until("b's alert", Duration::from_secs(15), || {
        hook.delivered_types()
            .contains(&"fine_tuning.job.succeeded".to_string())
    })
    .await;
    // a wakes up believing it leads: its next write is refused by the epoch, or its lease
    // renewal tells it first; either way it raises nothing.
    signal(&a, "CONT");
    setup
        .wait_for_log(
            "a.log",
            "another daemon leads now",
            "a to learn it was deposed",
        )
        .await;
    api.update("ftjob-p", json!({"trained_tokens": 5}));
    wait_until(
        "b to store the next change",
        Duration::from_secs(10),
        || {
            setup
                .store()
                .history("ftjob-p", &tunewatch::pipeline::Policy::plain(1.0))
                .unwrap()
                .len()
                >= 4
        },
    )
    .await;
    let store = setup.store();
    assert_eq!(
        store.count(tunewatch::store::Table::Events).unwrap(),
        1,
        "the transition was raised once, by b"
    );
    let kinds: Vec<String> = hook
        .received()
        .iter()
        .map(|r| r.body["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["fine_tuning.job.succeeded"]);
    for (d, log) in [(&mut a, "a.log"), (&mut b, "b.log")] {
        signal(d, "TERM");
        let code = wait_exit(d, Duration::from_secs(10)).await.code();
        assert_eq!(code, Some(0), "{log}:\n{}", setup.log(log));
    }
}
