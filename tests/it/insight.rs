//! Training insight (DESIGN.md, "Training insight"): a job's events and checkpoints read from a
//! loopback API page by page, newest first; the `insight` in alerts, the insight events, the
//! cost of reading, and the `metrics` command, through the real binary.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tunewatch::source::{JobList, OpenAiClient};

fn metrics(id: &str, step: u64, train: f64, valid: &str) -> Value {
    json!({"object": "fine_tuning.job.event", "id": id, "created_at": 1_735_480_000 + step as i64,
           "level": "info", "message": format!("Step {step}/100"), "type": "metrics",
           "data": {"step": step, "total_steps": 100, "train_loss": train, "valid_loss": valid,
                    "train_mean_token_accuracy": "0.5"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_checkpoints_are_read_newest_first_and_page_by_page() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    for step in 1..=5u64 {
        api.add_item(
            "ftjob-a",
            "events",
            metrics(
                &format!("ftevent-{step}"),
                step * 10,
                2.0 / step as f64,
                "1.5",
            ),
        );
    }
    let fixture = fixture("ft_list_checkpoints.json");
    for c in fixture["data"].as_array().unwrap().iter().rev() {
        api.add_item("ftjob-a", "checkpoints", c.clone());
    }
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let config = setup.load();
    let client =
        OpenAiClient::new(&config.sources[0], &tunewatch::config::Secret::new(API_KEY)).unwrap();
    let ignore = |_: Option<u16>, _: Duration| {};

    // page_size is 2 in the test config: three pages, newest first.
    let mut after: Option<String> = None;
    let mut events = Vec::new();
    loop {
        let (page, _) = client
            .list_job_items("ftjob-a", JobList::Events, after.as_deref(), &ignore)
            .await
            .unwrap();
        events.extend(page.items);
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "ftevent-5",
            "ftevent-4",
            "ftevent-3",
            "ftevent-2",
            "ftevent-1"
        ]
    );
    let series = tunewatch::insight::series(&events);
    assert_eq!(series.len(), 5);
    let p = tunewatch::insight::progress(&series).unwrap();
    assert_eq!((p.step, p.total_steps), (50, 100));

    let (page, _) = client
        .list_job_items("ftjob-a", JobList::Checkpoints, None, &ignore)
        .await
        .unwrap();
    let checkpoints: Vec<_> = page
        .items
        .iter()
        .filter_map(tunewatch::insight::Checkpoint::from_value)
        .collect();
    assert_eq!(checkpoints.len(), 2);
    let best = tunewatch::insight::best_checkpoint(&checkpoints).unwrap();
    assert!(best.model.ends_with(":ckpt-step-2000"), "{best:?}");
    assert!(
        api.requests()
            .iter()
            .all(|r| r.starts_with("/v1/fine_tuning/jobs/ftjob-a/")),
        "{:?}",
        api.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_stores_what_is_new_and_stops_at_the_first_known_item() {
    use tunewatch::run::insight_reader::{Read, read_new};
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    for step in 1..=5u64 {
        api.add_item(
            "ftjob-a",
            "events",
            metrics(&format!("ftevent-{step}"), step * 10, 1.0, "1.0"),
        );
    }
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let config = setup.load();
    let client =
        OpenAiClient::new(&config.sources[0], &tunewatch::config::Secret::new(API_KEY)).unwrap();
    let store = tunewatch::store::Store::open(&setup.db()).unwrap();
    let ignore = |_: Option<u16>, _: Duration| {};
    let read = |list| read_new(&client, &store, "prod", "ftjob-a", list, &ignore);

    // Page size 2: everything is new, three pages.
    let r = read(JobList::Events).await.unwrap().unwrap();
    assert_eq!(
        r,
        Read {
            new: 5,
            requests: 3
        }
    );
    // Nothing new: the first page reaches a known event, one request.
    let r = read(JobList::Events).await.unwrap().unwrap();
    assert_eq!(
        r,
        Read {
            new: 0,
            requests: 1
        }
    );
    // One new event on top: still one request.
    api.add_item("ftjob-a", "events", metrics("ftevent-6", 60, 0.9, "1.1"));
    let r = read(JobList::Events).await.unwrap().unwrap();
    assert_eq!(
        r,
        Read {
            new: 1,
            requests: 1
        }
    );
    let stored = store.job_items("prod", "ftjob-a", JobList::Events).unwrap();
    assert_eq!(tunewatch::insight::series(&stored).len(), 6);
    // An empty list is one request and nothing stored.
    let r = read(JobList::Checkpoints).await.unwrap().unwrap();
    assert_eq!(
        r,
        Read {
            new: 0,
            requests: 1
        }
    );
}

/// The checkpoints of the fixture (OpenAI's published example) on top of `id`'s list.
fn add_fixture_checkpoints(api: &Api, id: &str) {
    let fixture = fixture("ft_list_checkpoints.json");
    for c in fixture["data"].as_array().unwrap().iter().rev() {
        api.add_item(id, "checkpoints", c.clone());
    }
}

fn once(setup: &Setup) -> std::process::Output {
    let o = setup.command(&["once"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

const PRICES: &str = "\n[prices]\n\"gpt-4o-mini\" = 3.00\n\"gpt-4o\" = 25.00\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_job_s_alert_carries_the_final_numbers_the_best_checkpoint_and_the_cost() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), PRICES);
    once(&setup);
    // Between two polls the job trains to the end and succeeds: its alert is built after a
    // final read of the events and checkpoints, so it has the last numbers.
    for step in 1..=10u64 {
        let id = format!("ftevent-{step}");
        api.add_item(
            "ftjob-a",
            "events",
            metrics(&id, step * 10, 2.0 / step as f64, "1.5"),
        );
    }
    add_fixture_checkpoints(&api, "ftjob-a");
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "trained_tokens": 2_000_000,
               "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:96olL566"}),
    );
    let before = api.requests().len();
    once(&setup);
    let reads: Vec<String> = api.requests()[before..]
        .iter()
        .filter(|r| r.contains("/ftjob-a/"))
        .cloned()
        .collect();
    // One read of each list: page size 2 holds 2 of the 10 new events, so the events take
    // 5 pages; the 2 checkpoints, 1 page.
    assert_eq!(
        reads.iter().filter(|r| r.contains("/events")).count(),
        5,
        "{reads:?}"
    );
    assert_eq!(
        reads.iter().filter(|r| r.contains("/checkpoints")).count(),
        1,
        "{reads:?}"
    );

    let delivered = hook.delivered();
    let succeeded = delivered
        .iter()
        .find(|r| r.body["type"] == "fine_tuning.job.succeeded")
        .expect("the succeeded alert");
    let i = &succeeded.body["insight"];
    assert_eq!(i["step"], 100);
    assert_eq!(i["total_steps"], 100);
    assert_eq!(i["progress"], 1.0);
    assert_eq!(i["train_loss"], 0.2);
    assert_eq!(
        i["valid_loss"], 1.5,
        "numbers sent as strings are read as numbers"
    );
    assert_eq!(i["train_mean_token_accuracy"], 0.5);
    assert_eq!(i["best_checkpoint"]["step"], 2000);
    assert_eq!(
        i["best_checkpoint"]["model"],
        "ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:96olL566:ckpt-step-2000"
    );
    assert_eq!(i["best_checkpoint"]["full_valid_loss"], 0.134);
    assert_eq!(i["cost_usd"], 6.0, "2M tokens at $3 per 1M");
    assert_eq!(i["cost_estimated"], false);
    assert!(i.get("eta").is_none(), "a finished job has no ETA: {i}");
    assert!(
        succeeded.body.get("loss_curve").is_none(),
        "the chart's curve is for e-mail only"
    );
    assert!(succeeded.signature_ok);

    // Finished jobs are not read again.
    let before = api.requests().len();
    once(&setup);
    assert!(
        api.requests()[before..]
            .iter()
            .all(|r| !r.contains("/ftjob-a/")),
        "{:?}",
        &api.requests()[before..]
    );

    // The metrics command shows the series, the checkpoints and the summary.
    let o = setup.command(&["metrics", "ftjob-a"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("progress: step 100 of 100 (100 %)"), "{out}");
    assert!(out.contains("cost: $6.00"), "{out}");
    assert!(out.contains("best checkpoint: ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:96olL566:ckpt-step-2000"), "{out}");
    assert!(out.contains("STEP") && out.contains("TRAIN LOSS"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("100 ")).count(),
        1,
        "{out}"
    );
    let o = setup
        .command(&["metrics", "ftjob-a", "--csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(
        csv.starts_with("step,total_steps,created_at,train_loss,"),
        "{csv}"
    );
    assert!(csv.contains("\n10,100,1735480010,2,0.5,1.5,"), "{csv}");
    assert!(
        csv.contains("\ncheckpoint_step,fine_tuned_model_checkpoint"),
        "{csv}"
    );
    let png = setup.dir.path().join("loss.png");
    let o = setup
        .command(&["metrics", "ftjob-a", "--png", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&png)
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    let o = setup.command(&["metrics", "ftjob-nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("job ftjob-nope is not in the database"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = setup.command(&["history", "ftjob-a"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("metrics [prod]: 10 point(s), last at step 100 of 100, 2 checkpoint(s); `tunewatch metrics ftjob-a`"),
        "{out}"
    );
}

/// A validation loss that falls, then turns up from step 50 while the training loss keeps
/// falling.
fn overfitting_run(step: u64) -> (f64, String) {
    let x = step as f64 / 100.0;
    let train = 2.0 - 1.5 * x;
    let valid = if x <= 0.5 {
        2.0 - 2.0 * x
    } else {
        1.0 + 6.0 * (x - 0.5)
    };
    (train, valid.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_raises_progress_and_overfitting_once_each_and_nothing_at_baseline() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let add = |from: u64, to: u64| {
        for step in from..=to {
            let (t, v) = overfitting_run(step * 10);
            api.add_item(
                "ftjob-a",
                "events",
                metrics(&format!("ftevent-{step}"), step * 10, t, &v),
            );
        }
    };
    // Already at 60 % when tunewatch starts: the baseline raises nothing.
    add(1, 6);
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), PRICES);
    setup.edit(|t| t.replace("page_size = 2", "page_size = 2\nprogress_marks = [50, 90]"));
    once(&setup);
    once(&setup);
    assert_eq!(
        hook.delivered_types(),
        Vec::<String>::new(),
        "50 % was passed before tunewatch watched"
    );

    // The validation loss keeps rising: overfitting, once, naming where it was lowest.
    add(7, 8);
    once(&setup);
    add(9, 9);
    once(&setup);
    once(&setup);
    // Raised by the same poll, delivered in either order.
    let mut types = hook.delivered_types();
    types.sort();
    assert_eq!(
        types,
        ["fine_tuning.job.overfitting", "fine_tuning.job.progress"],
        "90 % once, overfitting once"
    );
    let d = hook.delivered();
    let of = |t: &str| d.iter().find(|r| r.body["type"] == t).unwrap().body.clone();
    let progress = of("fine_tuning.job.progress");
    assert_eq!(progress["insight"]["mark"], 90);
    assert_eq!(progress["insight"]["step"], 90);
    let overfitting = of("fine_tuning.job.overfitting");
    let o = &overfitting["insight"]["overfitting"];
    assert_eq!(
        (o["step"].as_u64(), o["best_step"].as_u64()),
        (Some(90), Some(50)),
        "{o}"
    );
    assert!(o["valid_loss"].as_f64().unwrap() > o["best_valid_loss"].as_f64().unwrap() * 1.1);
    assert_eq!(overfitting["status"], "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diverging_run_raises_diverging_once() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 2\nprogress_marks = []"));
    once(&setup);
    api.add_item("ftjob-a", "events", metrics("ftevent-1", 10, 1.0, "1.0"));
    api.add_item(
        "ftjob-a",
        "events",
        json!({"object": "fine_tuning.job.event",
        "id": "ftevent-2", "created_at": 1_735_480_020, "level": "info", "message": "Step 20",
        "type": "metrics", "data": {"step": 20, "total_steps": 100, "train_loss": "NaN"}}),
    );
    once(&setup);
    once(&setup);
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.diverging"]);
    let d = &hook.delivered()[0].body["insight"];
    assert_eq!(d["diverging"]["step"], 20);
    assert_eq!(
        d["train_loss"], "NaN",
        "JSON has no NaN: it travels as a string"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_is_read_at_most_once_per_metrics_interval() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    api.add_item("ftjob-a", "events", metrics("ftevent-1", 10, 1.0, "1.0"));
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    // Polls every 200 ms; metrics every 1 s.
    setup.edit(|t| t.replace("page_size = 2", "page_size = 2\nmetrics_interval = \"1s\""));
    let mut daemon = setup.spawn_run("run.log", &[]);
    let started = std::time::Instant::now();
    wait_until("15 polls", Duration::from_secs(30), || {
        api.job_requests().len() >= 15
    })
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let elapsed = started.elapsed().as_secs_f64();
    let reads = api
        .requests()
        .iter()
        .filter(|r| r.contains("/events"))
        .count();
    let polls = api.job_requests().len();
    assert!(reads >= 1, "a running job is read");
    assert!(
        reads as f64 <= elapsed.ceil() + 1.0,
        "{reads} reads in {elapsed:.1}s ({polls} polls): at most one per second"
    );
    assert!(polls > 2 * reads, "{polls} polls, {reads} reads");
    assert!(
        api.requests().iter().all(|r| !r.contains("/checkpoints")),
        "checkpoints are read while running only with checkpoints = true"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insight_off_reads_nothing_and_alerts_carry_no_insight() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    api.add_item("ftjob-a", "events", metrics("ftevent-1", 10, 1.0, "1.0"));
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 2\ninsight = false"));
    once(&setup);
    api.update("ftjob-a", json!({"status": "succeeded"}));
    once(&setup);
    assert!(
        api.requests().iter().all(|r| !r.contains("/ftjob-a/")),
        "{:?}",
        api.requests()
    );
    let d = hook.delivered();
    assert_eq!(d.len(), 1);
    assert!(d[0].body.get("insight").is_none());
}
