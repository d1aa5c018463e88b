//! Training insight, as far as it is built: a job's events and checkpoints read from a loopback
//! API page by page, newest first, and what the pure core makes of them.

mod common;

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
    use tunewatch::insight::reader::{Read, read_new};
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
