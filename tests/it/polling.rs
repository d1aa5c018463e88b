//! Frugal polling, counted: requests per poll against a loopback API that records them.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tunewatch::Daemon;

/// `n` finished jobs, newest first (`ftjob-0000` is the newest).
fn finished(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            job(
                &format!("ftjob-{i:04}"),
                "succeeded",
                json!({"created_at": 1_735_480_000 - i as i64, "fine_tuned_model": format!("ft:m:{i}")}),
            )
        })
        .collect()
}

fn with_page_size(setup: &Setup, n: usize, extra: &str) {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        text.replace("page_size = 2", &format!("page_size = {n}{extra}")),
    )
    .unwrap();
}

/// Requests for jobs the API received during `f` (training insight's reads of events and
/// checkpoints are counted in tests/insight.rs).
async fn requests_during<F: std::future::Future>(api: &Api, f: F) -> Vec<String> {
    let before = api.job_requests().len();
    f.await;
    api.job_requests()[before..].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_steady_state_makes_one_list_request() {
    let api = Api::start(finished(25)).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    with_page_size(&setup, 10, "");
    let daemon = Daemon::new(setup.load()).unwrap();
    let first = requests_during(&api, daemon.once()).await;
    assert_eq!(first.len(), 3, "the first poll is a full scan: {first:?}");
    for _ in 0..3 {
        let steady = requests_during(&api, daemon.once()).await;
        assert_eq!(steady.len(), 1, "{steady:?}");
        assert!(
            steady[0].contains("after=None"),
            "only the newest page: {steady:?}"
        );
    }
    // A new job on top is still seen at once.
    api.add(job(
        "ftjob-new",
        "validating_files",
        json!({"created_at": 1_735_490_000}),
    ));
    daemon.once().await.unwrap();
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.created"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_unfinished_job_beyond_the_first_page_is_followed_by_get() {
    let mut jobs = finished(1000);
    jobs[7] = job(
        "ftjob-page1",
        "running",
        json!({"created_at": 1_735_480_000 - 7}),
    );
    jobs[795] = job(
        "ftjob-page80",
        "running",
        json!({"created_at": 1_735_480_000 - 795}),
    );
    let api = Api::start(jobs).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    with_page_size(&setup, 10, "");
    let daemon = Daemon::new(setup.load()).unwrap();
    let first = requests_during(&api, daemon.once()).await;
    assert_eq!(first.len(), 100, "full scan of 100 pages");

    let steady = requests_during(&api, daemon.once()).await;
    assert_eq!(
        steady,
        [
            "/v1/fine_tuning/jobs?limit=Some(10)&after=None",
            "/v1/fine_tuning/jobs/ftjob-page80",
        ],
        "page 1 ends in a known job, so it is enough (its running job is on it); the page-80 \
         job is fetched by id"
    );

    api.update("ftjob-page80", json!({"status": "succeeded"}));
    api.update("ftjob-page1", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    let mut got = hook.delivered_types();
    got.sort();
    assert_eq!(
        got,
        ["fine_tuning.job.failed", "fine_tuning.job.succeeded"],
        "page 1 and page 80"
    );
    let idle = requests_during(&api, daemon.once()).await;
    assert_eq!(idle.len(), 1, "nothing left to follow: {idle:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_periodic_full_scan_happens_and_the_idle_interval_applies_when_all_are_finished() {
    let api = Api::start(finished(25)).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    with_page_size(&setup, 10, "\nfull_scan_every = \"600ms\"");
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(
            "poll_interval = \"200ms\"\nidle",
            "poll_interval = \"100ms\"\nidle",
        )
        .replace(
            "idle_poll_interval = \"200ms\"",
            "idle_poll_interval = \"250ms\"",
        );
    std::fs::write(&setup.config, text).unwrap();
    let log = setup.dir.path().join("run.log");
    let mut daemon = setup
        .command(&["run"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("a second full scan", Duration::from_secs(10), || {
        read().matches("scan=\"full\"").count() >= 2
    })
    .await;
    let logged = read();
    assert!(logged.contains("requests=3 scan=\"full\""), "{logged}");
    assert!(
        logged.contains("requests=1 scan=\"incremental\""),
        "{logged}"
    );
    assert!(
        logged.contains("open_jobs=0 next_poll_ms=250"),
        "every job is finished: the idle interval: {logged}"
    );

    // A new job brings the short interval back as soon as it is seen.
    api.add(job(
        "ftjob-new",
        "running",
        json!({"created_at": 1_735_490_000}),
    ));
    wait_until("the short interval again", Duration::from_secs(10), || {
        read().contains("open_jobs=1 next_poll_ms=100")
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

/// The benchmark's scenario in small: many jobs, 50 running among the newest 100, one old
/// running job deep in the list. A steady cycle is one page and one GET: the floor.
#[tokio::test(flavor = "multi_thread")]
async fn a_steady_cycle_is_one_page_and_one_get_per_old_unfinished_job() {
    let mut jobs = finished(1000);
    for i in (0..100).step_by(2) {
        jobs[i] = job(
            &format!("ftjob-{i:04}"),
            "running",
            json!({"created_at": 1_735_480_000 - i as i64}),
        );
    }
    jobs[950] = job(
        "ftjob-deep",
        "running",
        json!({"created_at": 1_735_480_000 - 950}),
    );
    let api = Api::start(jobs).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    with_page_size(&setup, 100, "");
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    for _ in 0..3 {
        let steady = requests_during(&api, daemon.once()).await;
        assert_eq!(
            steady,
            [
                "/v1/fine_tuning/jobs?limit=Some(100)&after=None",
                "/v1/fine_tuning/jobs/ftjob-deep",
            ]
        );
    }
    // Transitions on the first page and deep down are both seen in that one cycle.
    api.update("ftjob-0004", json!({"status": "succeeded"}));
    api.update("ftjob-deep", json!({"status": "failed"}));
    let cycle = requests_during(&api, daemon.once()).await;
    assert_eq!(cycle.len(), 2, "{cycle:?}");
    let mut got = hook.delivered_types();
    got.sort();
    assert_eq!(got, ["fine_tuning.job.failed", "fine_tuning.job.succeeded"]);
    // Once the deep job is finished, a steady cycle is the one page.
    let steady = requests_during(&api, daemon.once()).await;
    assert_eq!(steady, ["/v1/fine_tuning/jobs?limit=Some(100)&after=None"]);
}
