//! `tunewatch migrate --from SQLITE --to postgres://…`: a store built by a real daemon on SQLite
//! is copied into a throwaway PostgreSQL server, verified by counts, and a daemon on PostgreSQL
//! then carries on from it: same history, the pending alert delivered with its event id, new
//! snapshots after the copied ones.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tunewatch::Daemon;
use tunewatch::store::Table;

fn migrate(setup: &Setup, from: &std::path::Path, to: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
        .args(["migrate", "--from"])
        .arg(from)
        .args(["--to", to, "--password-file"])
        .arg(setup.dir.path().join("pg.password"))
        .env_remove("PGPASSWORD")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_moves_to_postgresql_with_its_history_and_its_outbox() {
    let api = Api::start(vec![
        job("ftjob-b", "running", json!({})),
        job("ftjob-a", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    // Built on SQLite: a baseline, two transitions, one alert delivered and one still pending.
    let old = Setup::new(&api, &hook.url(), "");
    {
        let daemon = Daemon::new(old.load()).unwrap();
        daemon.once().await.unwrap();
        api.update(
            "ftjob-a",
            json!({"status": "succeeded", "fine_tuned_model": "ft:a"}),
        );
        daemon.once().await.unwrap();
        hook.answer(&[Answer::Status(503)]);
        api.update("ftjob-b", json!({"status": "failed"}));
        daemon.once().await.unwrap();
        daemon
            .store()
            .store_job_items(
                "prod",
                "ftjob-a",
                tunewatch::source::JobList::Events,
                &[json!({"id": "ev-1", "created_at": 1, "type": "metrics",
                         "data": {"step": 1, "train_loss": 2.0}})],
                tunewatch::store::ResumeAt::Keep,
            )
            .unwrap();
        daemon
            .store()
            .record_webhook("prod", "wh_1", "ftjob-a", 1)
            .unwrap();
    }
    let pending_id = hook.received().last().unwrap().webhook_id.clone();
    assert_eq!(hook.delivered().len(), 1);

    let new = Setup::on(Backend::Postgres, &api, &hook.url(), "");
    let url = new.pg_url.clone().unwrap();
    let out = migrate(&new, &old.db(), &url);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every count matches"), "{text}");
    for (table, n) in [
        ("snapshots", 4),
        ("events", 2),
        ("outbox", 2),
        ("job_items", 1),
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("{table} in {text}"));
        assert_eq!(
            line.split_whitespace().skip(1).collect::<Vec<_>>(),
            [n.to_string(), n.to_string()],
            "{line}"
        );
    }
    assert!(!text.contains(pg::PG_PASSWORD));

    // A second copy into the same database is refused: it is not empty any more.
    let again = migrate(&new, &old.db(), &url);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("is not empty"), "{err}");

    // A daemon on PostgreSQL carries on.
    let store = new.store();
    assert_eq!(
        store
            .history("ftjob-a", &tunewatch::pipeline::Policy::plain(1.0))
            .unwrap()
            .len(),
        3,
        "2 snapshots, 1 event"
    );
    assert_eq!(
        store
            .job_items("prod", "ftjob-a", tunewatch::source::JobList::Events)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.pending_refreshes(i64::MAX, 1000).unwrap().len(), 1);
    drop(store);
    let daemon = Daemon::new(new.load()).unwrap();
    api.update(
        "ftjob-b",
        json!({"status": "failed", "estimated_finish": 1}),
    );
    api.add(job("ftjob-c", "queued", json!({"created_at": 1735490000})));
    daemon.once().await.unwrap();
    wait_until("the pending alert", Duration::from_secs(10), || {
        hook.delivered().iter().any(|r| r.webhook_id == pending_id)
    })
    .await;
    assert!(
        hook.delivered_types()
            .contains(&"fine_tuning.job.created".to_string()),
        "a new job after the copy: new ids continue after the copied ones"
    );
    assert_eq!(daemon.store().count(Table::Events).unwrap(), 3);
    assert_eq!(daemon.store().count(Table::PendingDeliveries).unwrap(), 0);
}

#[test]
fn migrate_refuses_a_database_in_use_a_url_with_a_password_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    tunewatch::store::Store::open(&db).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"))
            .arg("migrate")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--from",
        db.to_str().unwrap(),
        "--to",
        "postgres://tw:hunter2@127.0.0.1/tw",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has a password in it") && !err.contains("hunter2"),
        "{err}"
    );

    let out = run(&[
        "--from",
        "/nonexistent.db",
        "--to",
        "postgres://tw@127.0.0.1/tw",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a SQLite database file"));

    let _held = tunewatch::store::InstanceLock::acquire(&db).unwrap();
    let out = run(&[
        "--from",
        db.to_str().unwrap(),
        "--to",
        "postgres://tw@127.0.0.1/tw",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another tunewatch"), "{err}");
}
