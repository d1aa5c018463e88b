//! Bounded reads (DESIGN.md, "Hostile input": bounded items per job and pages per read) through
//! the real binary: an events list that never ends, one that repeats its page, and a read killed
//! in the middle — twice — that must not leave a hole in the stored series.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tunewatch::run::insight_reader::{MAX_ITEMS_PER_JOB, MAX_ITEMS_PER_READ, MAX_PAGES};
use tunewatch::source::JobList;

fn setup_for(api: &Api, page_size: u32) -> Setup {
    let setup = Setup::new(api, "http://127.0.0.1:9/hook", "");
    setup.edit(|t| {
        t.replace("page_size = 2", &format!("page_size = {page_size}"))
            .replace(
                "max_retries = 2",
                "max_retries = 2\nmetrics_interval = \"1s\"",
            )
    });
    setup
}

fn events_requests(api: &Api) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.split('?').next().unwrap_or(r).ends_with("/events"))
        .count()
}

fn stored(setup: &Setup, id: &str) -> usize {
    let config = setup.load();
    let store = match &config.state_db {
        tunewatch::config::StateDb::Sqlite(path) => {
            tunewatch::store::Store::open_read_only(path).unwrap()
        }
        _ => unreachable!("these tests run on SQLite"),
    };
    store.job_items("prod", id, JobList::Events).unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_events_list_that_never_ends_is_read_in_bounded_reads_up_to_a_bound_per_job() {
    let api = Api::start(vec![job("ftjob-x", "running", json!({}))]).await;
    api.state
        .lock()
        .unwrap()
        .hostile_items
        .insert("ftjob-x".into(), HostileItems::Endless);
    let setup = setup_for(&api, 100);
    // Each read takes at most its bound, goes on where the last one stopped, and the job's
    // items grow to the bound per job and no further.
    let mut kept = 0;
    for read in 1..=2 * MAX_ITEMS_PER_JOB.div_ceil(MAX_ITEMS_PER_READ) {
        let before = events_requests(&api);
        let out = setup.command(&["once"]).output().unwrap();
        assert!(out.status.success());
        let pages = events_requests(&api) - before;
        assert!(
            pages <= MAX_PAGES as usize,
            "read {read} took {pages} pages"
        );
        let now = stored(&setup, "ftjob-x");
        assert!(
            now > kept && now - kept <= MAX_ITEMS_PER_READ,
            "read {read}: {kept} → {now}"
        );
        kept = now;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let said = log
            .matches("has more new items than one read takes")
            .count();
        assert!(
            said <= 1,
            "said once per read at most, not per page: {said}"
        );
        if kept == MAX_ITEMS_PER_JOB {
            break;
        }
    }
    assert_eq!(kept, MAX_ITEMS_PER_JOB);
    // The job keeps the most it may: no more requests, nothing more stored.
    let before = events_requests(&api);
    assert!(setup.command(&["once"]).status().unwrap().success());
    assert_eq!(events_requests(&api), before, "a full job is not read");
    assert_eq!(stored(&setup, "ftjob-x"), MAX_ITEMS_PER_JOB);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_events_list_repeating_its_page_stops_the_read_at_the_repeat() {
    let api = Api::start(vec![job("ftjob-x", "running", json!({}))]).await;
    api.state
        .lock()
        .unwrap()
        .hostile_items
        .insert("ftjob-x".into(), HostileItems::SamePage);
    let setup = setup_for(&api, 10);
    let out = setup.command(&["once"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        events_requests(&api),
        2,
        "the second page repeats the first"
    );
    assert_eq!(stored(&setup, "ftjob-x"), 10);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a second time in one read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn metric(step: u64) -> Value {
    json!({"object": "fine_tuning.job.event", "id": format!("ev-{step:04}"),
           "created_at": 1_735_480_000 + step as i64, "level": "info", "message": "m",
           "type": "metrics", "data": {"step": step, "total_steps": 400, "train_loss": 1.0}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_killed_in_the_middle_twice_leaves_no_hole_in_the_series() {
    let api = Api::start(vec![job("ftjob-y", "running", json!({}))]).await;
    for step in 1..=400 {
        api.add_item("ftjob-y", "events", metric(step));
    }
    api.state.lock().unwrap().items_delay = Duration::from_millis(5);
    let setup = setup_for(&api, 2);
    for kill in 0..2 {
        let before = events_requests(&api);
        let mut daemon = setup.spawn_run(&format!("run{kill}.log"), &[]);
        // Well inside a read of up to 50 pages.
        wait_until(
            "the daemon to be reading the events",
            Duration::from_secs(20),
            || events_requests(&api) >= before + 20 + kill * 7,
        )
        .await;
        daemon.kill().unwrap(); // SIGKILL, mid-read
        daemon.wait().unwrap();
    }
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("all 400 metric points", Duration::from_secs(60), || {
        stored(&setup, "ftjob-y") == 400
    })
    .await;
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    let csv = setup
        .command(&["metrics", "ftjob-y", "--csv"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&csv.stdout);
    let steps: std::collections::BTreeSet<u64> = text
        .lines()
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    assert_eq!(steps.len(), 400, "every step, no hole: {text}");
}
