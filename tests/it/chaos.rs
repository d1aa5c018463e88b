//! Chaos: the real binary watches 30 jobs moving through their lifecycles on a loopback API while
//! the test SIGKILLs and restarts it at random moments (seeded: `CHAOS_SEED=n` replays a run):
//! one daemon on SQLite, and two daemons sharing a PostgreSQL database, either of which is
//! killed.
//! Afterwards every job's final alert has arrived, no alert describes a transition that did not
//! happen, no transition was raised twice, and every resend carried the same `webhook-id` and
//! body.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const JOBS: usize = 30;

/// One job's script: when it appears and the statuses it then enters, with their times.
struct Script {
    id: String,
    appears_ms: u64,
    steps: Vec<(u64, &'static str)>,
}

impl Script {
    fn history(&self) -> Vec<&'static str> {
        std::iter::once("validating_files")
            .chain(self.steps.iter().map(|(_, s)| *s))
            .collect()
    }
}

fn scripts(rng: &mut fastrand::Rng) -> Vec<Script> {
    (0..JOBS)
        .map(|i| {
            let appears_ms = rng.u64(0..6_000);
            let ending = ["succeeded", "succeeded", "failed", "cancelled"][rng.usize(0..4)];
            let mut path: Vec<&'static str> = match ending {
                // Some fail validation at once; others are cancelled while running.
                "failed" if rng.bool() => vec!["failed"],
                "cancelled" => vec!["queued", "running", "cancelled"],
                other => vec!["queued", "running", other],
            };
            if ending == "succeeded" && rng.bool() {
                path.insert(2, "paused");
                path.insert(3, "resuming");
            }
            let mut t = appears_ms;
            let steps = path
                .into_iter()
                .map(|s| {
                    t += rng.u64(150..1_200);
                    (t, s)
                })
                .collect();
            Script {
                id: format!("ftjob-chaos-{i:02}"),
                appears_ms,
                steps,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_alert_is_lost_or_invented_across_random_sigkills() {
    chaos(Backend::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_alert_is_lost_or_invented_when_either_of_two_daemons_sharing_postgresql_is_killed() {
    chaos(Backend::Postgres, 2).await;
}

async fn chaos(backend: Backend, daemons: usize) {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126);
    let mut rng = fastrand::Rng::with_seed(seed);
    let scripts = scripts(&mut rng);

    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    let setup = Setup::on(backend, &api, &hook.url(), "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("page_size = 2", "page_size = 10")
            .replace("poll_interval = \"200ms\"", "poll_interval = \"100ms\"")
            .replacen(
                "[daemon]\n",
                "[daemon]\nleader_lease = \"3s\"\nclaim_lease = \"5s\"\n",
                usize::from(backend == Backend::Postgres),
            ),
    )
    .unwrap();

    // Each running daemon with its incarnation (its log is `run{incarnation}.log`).
    let mut incarnation = 0;
    let mut running: Vec<(usize, std::process::Child)> = Vec::new();
    running.push((0, setup.spawn_run("run0.log", &[("RUST_LOG", "info")])));
    setup
        .wait_for_log("run0.log", "baseline=true", "the baseline poll")
        .await;
    for _ in 1..daemons {
        incarnation += 1;
        let log = format!("run{incarnation}.log");
        running.push((incarnation, setup.spawn_run(&log, &[("RUST_LOG", "info")])));
    }

    // The API's jobs follow their scripts in real time, in the background.
    let mut timeline: Vec<(u64, usize, Option<&'static str>)> = Vec::new();
    for (i, s) in scripts.iter().enumerate() {
        timeline.push((s.appears_ms, i, None));
        for (t, status) in &s.steps {
            timeline.push((*t, i, Some(*status)));
        }
    }
    timeline.sort();
    let end_ms = timeline.last().unwrap().0;
    let state = api.state.clone();
    let ids: Vec<String> = scripts.iter().map(|s| s.id.clone()).collect();
    let started = Instant::now();
    let driver = tokio::spawn(async move {
        for (at, i, status) in timeline {
            tokio::time::sleep_until((started + Duration::from_millis(at)).into()).await;
            let mut s = state.lock().unwrap();
            match status {
                None => s.jobs.insert(
                    0,
                    job(
                        &ids[i],
                        "validating_files",
                        json!({"created_at": 1735470000 + i as i64}),
                    ),
                ),
                Some(status) => {
                    let j = s
                        .jobs
                        .iter_mut()
                        .find(|j| j["id"] == ids[i].as_str())
                        .unwrap();
                    j["status"] = json!(status);
                    if ["succeeded", "failed", "cancelled"].contains(&status) {
                        j["finished_at"] = json!(1735480000 + i as i64);
                    }
                }
            }
        }
    });

    // Kill at random moments while the jobs move: one of the daemons, picked at random.
    let mut kills = 0;
    let mut leader_kills = 0;
    while started.elapsed() < Duration::from_millis(end_ms + 500) {
        tokio::time::sleep(Duration::from_millis(rng.u64(100..900))).await; // the chaos schedule
        let victim = rng.usize(0..running.len());
        let (_, mut daemon) = running.swap_remove(victim);
        if backend == Backend::Postgres
            && setup
                .store()
                .leader()
                .unwrap()
                .is_some_and(|l| l.holder.ends_with(&format!("-{}", daemon.id())))
        {
            leader_kills += 1;
        }
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
        kills += 1;
        incarnation += 1;
        let log = format!("run{incarnation}.log");
        running.push((incarnation, setup.spawn_run(&log, &[("RUST_LOG", "info")])));
    }
    driver.await.unwrap();

    // Every job's final status must come through; give the last incarnation time to deliver.
    let finals: Vec<(String, String)> = scripts
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                format!("fine_tuning.job.{}", s.steps.last().unwrap().1),
            )
        })
        .collect();
    wait_until("every job's final alert", Duration::from_secs(60), || {
        let got: Vec<(String, String)> = hook
            .delivered()
            .iter()
            .map(|r| {
                (
                    r.body["data"]["id"].as_str().unwrap_or("").to_string(),
                    r.body["type"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        finals.iter().all(|f| got.contains(f))
    })
    .await;
    for (i, daemon) in &mut running {
        setup
            .wait_for_log(
                &format!("run{i}.log"),
                "tunewatch running",
                "the last incarnations to be running",
            )
            .await;
        signal(daemon, "TERM");
        let status = daemon.wait().unwrap();
        assert_eq!(status.code(), Some(0));
    }

    let received = hook.received();
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in &received {
        assert!(r.signature_ok, "every request is signed");
        by_id
            .entry(r.webhook_id.clone())
            .or_default()
            .push(r.body.clone());
    }
    let histories: HashMap<&str, Vec<&str>> = scripts
        .iter()
        .map(|s| (s.id.as_str(), s.history()))
        .collect();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for (id, bodies) in &by_id {
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "every resend of {id} carries the same body"
        );
        let b = &bodies[0];
        assert_eq!(b["id"], id.as_str(), "webhook-id is the event id");
        let job = b["data"]["id"].as_str().unwrap();
        let kind = b["type"].as_str().unwrap();
        let history = &histories[job];
        if let Some(status) = kind
            .strip_prefix("fine_tuning.job.")
            .filter(|s| *s != "created")
        {
            let at = history.iter().position(|h| *h == status);
            assert!(at.is_some(), "{job} never entered {status}: {b}");
            if let Some(prev) = b["previous_status"].as_str() {
                let before = history.iter().position(|h| *h == prev);
                assert!(
                    before.is_some_and(|p| p < at.unwrap()),
                    "{job}: {prev} → {status} did not happen: {b}"
                );
            }
        }
        let again = seen.insert((job.to_string(), kind.to_string()), id.clone());
        assert!(
            again.is_none(),
            "{job} {kind} raised twice: {id} and {}",
            again.unwrap()
        );
    }
    let delivered_ids: std::collections::HashSet<String> =
        hook.delivered().into_iter().map(|r| r.webhook_id).collect();
    assert_eq!(
        delivered_ids.len(),
        by_id.len(),
        "every event attempted was eventually delivered"
    );
    // Each job is announced once: by `created` when it is first seen unfinished, or — when it
    // was first seen already finished (the daemon was down, or a leader was being chosen, for
    // the whole of its unfinished life) — by its outcome with no previous status. Which one
    // depends on when the kills fall, not on behaviour; that one of them arrives does not.
    let delivered = hook.delivered();
    for s in &scripts {
        let announced = delivered.iter().any(|r| {
            r.body["data"]["id"] == s.id.as_str()
                && (r.body["type"] == "fine_tuning.job.created"
                    || r.body["previous_status"].is_null())
        });
        assert!(
            announced,
            "{} was announced (created, or first seen finished)",
            s.id
        );
    }
    let mut logs = String::new();
    for i in 0..=incarnation {
        logs += &std::fs::read_to_string(setup.dir.path().join(format!("run{i}.log")))
            .unwrap_or_default();
    }
    assert!(!logs.contains("panicked"), "{logs}");
    println!(
        "chaos ({backend:?}, {daemons} daemon(s), seed {seed}): {kills} kills ({leader_kills} of \
         the leader), {} alerts delivered ({} distinct events, {} duplicates), {} requests in all",
        hook.delivered().len(),
        by_id.len(),
        received.len() - by_id.len(),
        received.len()
    );
}
