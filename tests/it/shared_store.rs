//! The PostgreSQL store shared by several daemons, through the library, on a real throwaway
//! server: the leader's lease and epoch (a deposed leader's writes are refused), delivery claims
//! (`FOR UPDATE SKIP LOCKED`, taken over after the claim lease), a webhook taken by any daemon,
//! and the migrations recorded like SQLite's.

use crate::common;

use common::pg;
use serde_json::json;
use tunewatch::config::{PgTarget, SafeUrl, Secret, StateDb};
use tunewatch::source::Job;
use tunewatch::store::{Outcome, PollContext, Store, StoreError, Table};

fn open(url: &str) -> Store {
    let target = StateDb::Postgres(PgTarget {
        url: SafeUrl(url.parse().unwrap()),
        password: None,
    });
    Store::open_at(
        target.location(),
        Some(&Secret::new(pg::PG_PASSWORD)),
        false,
    )
    .unwrap()
}

fn everyone(_: &tunewatch::event::Event) -> Vec<tunewatch::model::plan::Plan> {
    vec![tunewatch::model::plan::Plan::plain("hook")]
}

fn poll(now: i64) -> PollContext<'static> {
    PollContext {
        source: "prod",
        now,
        stall_after: 3600,
        failing_after: 3,
        route: &everyone,
        last_batch: true,
        decide: &*POLICY,
    }
}

/// No insight; 1 % of failed batch requests allowed.
static POLICY: std::sync::LazyLock<tunewatch::pipeline::Policy> =
    std::sync::LazyLock::new(|| tunewatch::pipeline::Policy::plain(0.01));

fn job(id: &str, status: &str) -> Job {
    Job::from_value(
        json!({"id": id, "object": "fine_tuning.job", "status": status,
                           "model": "gpt-4o-mini"}),
    )
    .unwrap()
}

/// Ends the current lease at once (as if its holder had died a lease ago).
fn expire_lease(url: &str) {
    pg::server().psql(
        pg::db_name(url),
        "UPDATE leader_lease SET expires_ms = 0 WHERE name = 'poller'",
    );
}

#[test]
fn one_daemon_leads_and_a_deposed_leaders_writes_are_refused() {
    let url = pg::server().database();
    let (a, b) = (open(&url), open(&url));
    a.join("a", 60_000);
    b.join("b", 60_000);
    assert_eq!(a.acquire_lease(60_000).unwrap(), Some(1));
    assert_eq!(b.acquire_lease(60_000).unwrap(), None, "a holds the lease");
    assert!(a.leads() && !b.leads());
    assert_eq!(
        a.acquire_lease(60_000).unwrap(),
        Some(1),
        "renewal keeps the epoch"
    );
    let leader = b.leader().unwrap().unwrap();
    assert_eq!((leader.holder.as_str(), leader.epoch), ("a", 1));
    assert!(leader.expires_in_ms > 50_000, "{leader:?}");

    // A follower's poll is refused: only the leader raises events.
    let e = b
        .observe_poll(&poll(100), &[job("ftjob-1", "running")])
        .unwrap_err();
    assert!(matches!(e, StoreError::Deposed { .. }), "{e}");
    assert!(e.to_string().contains("b does not lead"), "{e}");

    a.observe_poll(&poll(100), &[job("ftjob-1", "running")])
        .unwrap();
    // a stalls (a long GC pause, a partition); its lease runs out and b takes over.
    expire_lease(&url);
    assert_eq!(b.acquire_lease(60_000).unwrap(), Some(2), "a new epoch");
    b.observe_poll(&poll(200), &[job("ftjob-1", "succeeded")])
        .unwrap();
    // a wakes up believing it leads: its write is refused by the epoch, nothing is raised twice.
    assert!(a.leads(), "a has not noticed yet");
    let e = a
        .observe_poll(&poll(201), &[job("ftjob-1", "succeeded")])
        .unwrap_err();
    assert!(
        e.to_string().contains("was deposed (its epoch 1 is over)"),
        "{e}"
    );
    assert!(!a.leads(), "a refused write makes it step down");
    assert_eq!(b.count(Table::Events).unwrap(), 1, "one succeeded event");
    // b's index was reloaded when it took over: the job a wrote is known, not new.
    assert_eq!(b.open_count("prod"), 0);

    // a's renewal fails while b holds a live lease; a clean stop hands the lease over at once.
    assert_eq!(a.acquire_lease(60_000).unwrap(), None);
    b.resign().unwrap();
    assert_eq!(a.acquire_lease(60_000).unwrap(), Some(3));
}

#[test]
fn deliveries_are_claimed_by_one_daemon_and_taken_over_after_the_claim_lease() {
    let url = pg::server().database();
    let (a, b) = (open(&url), open(&url));
    a.join("a", 5_000);
    b.join("b", 5_000);
    a.acquire_lease(60_000).unwrap();
    a.observe_poll(
        &poll(100),
        &[job("ftjob-1", "running"), job("ftjob-2", "running")],
    )
    .unwrap();
    a.observe_poll(
        &poll(110),
        &[job("ftjob-1", "succeeded"), job("ftjob-2", "failed")],
    )
    .unwrap();
    let now = 200_000;
    let first = a.due(now, 1).unwrap();
    assert_eq!(first.len(), 1);
    let second = b.due(now, 10).unwrap();
    assert_eq!(second.len(), 1, "b skips the row a holds");
    assert_ne!(first[0].outbox_id, second[0].outbox_id);
    assert!(a.due(now, 10).unwrap().is_empty(), "both rows are claimed");
    let delivered = Outcome::Delivered { status: Some(200) };
    assert!(
        b.record_attempt(second[0].outbox_id, now, &delivered)
            .unwrap()
    );

    // a dies holding its row: after the claim lease b takes it, and b's record stands.
    let later = now + 5_000;
    let taken = b.due(later, 10).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].outbox_id, first[0].outbox_id);
    assert_eq!(taken[0].event.id, first[0].event.id, "the same event id");
    assert!(
        b.record_attempt(taken[0].outbox_id, later, &delivered)
            .unwrap()
    );
    assert!(
        !a.record_attempt(first[0].outbox_id, later + 1, &delivered)
            .unwrap(),
        "a's late record of a row b took is dropped"
    );
    assert_eq!(b.count(Table::PendingDeliveries).unwrap(), 0);
}

#[test]
fn a_webhook_taken_by_any_daemon_is_a_refresh_request_for_the_leader() {
    let url = pg::server().database();
    let (a, b) = (open(&url), open(&url));
    a.join("a", 60_000);
    b.join("b", 60_000);
    a.acquire_lease(60_000).unwrap();
    assert!(b.record_webhook("prod", "wh_1", "ftjob-1", 100).unwrap());
    assert!(
        !a.record_webhook("prod", "wh_1", "ftjob-1", 101).unwrap(),
        "a redelivery"
    );
    let pending = a.pending_refreshes(i64::MAX, 1000).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].object_id, "ftjob-1");
    assert_eq!(b.last_webhook_at("prod").unwrap(), Some(101));
}

#[test]
fn migrations_are_recorded_once_when_daemons_start_together() {
    let url = pg::server().database();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || drop(open(&url)))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let versions = pg::server().psql(
        pg::db_name(&url),
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
    );
    let expected: Vec<String> = (1..=tunewatch::store::MIGRATIONS.len())
        .map(|v| v.to_string())
        .collect();
    assert_eq!(versions, expected.join(","));
}

#[test]
fn a_wrong_password_or_a_server_that_is_not_there_is_one_sentence_without_the_password() {
    let url = pg::server().database();
    let target = StateDb::Postgres(PgTarget {
        url: SafeUrl(url.parse().unwrap()),
        password: None,
    });
    let e = Store::open_at(
        target.location(),
        Some(&Secret::new("not-the-password")),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("password authentication failed") && !e.contains("not-the-password"),
        "{e}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = StateDb::Postgres(PgTarget {
        url: SafeUrl(
            format!("postgres://tunewatch@{closed}/x?sslmode=disable")
                .parse()
                .unwrap(),
        ),
        password: None,
    });
    let e = Store::open_at(gone.location(), None, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "database postgres://tunewatch@{closed}/x: cannot connect:"
        )),
        "{e}"
    );
    assert!(e.contains("Connection refused"), "{e}");
    // sslmode=require is honoured: this server offers no TLS, so the connection is refused.
    let tls = StateDb::Postgres(PgTarget {
        url: SafeUrl(
            url.replace("sslmode=disable", "sslmode=require")
                .parse()
                .unwrap(),
        ),
        password: None,
    });
    let e = Store::open_at(tls.location(), Some(&Secret::new(pg::PG_PASSWORD)), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn api_strings_with_nul_and_odd_unicode_are_stored_on_postgresql() {
    let url = pg::server().database();
    let a = open(&url);
    a.acquire_lease(60_000).unwrap();
    let odd = Job::from_value(json!({"id": "ftjob-odd", "object": "fine_tuning.job",
        "status": "running", "model": "m\u{0}\u{202e}🙂",
        "error": {"message": "nul \u{0} here"}}))
    .unwrap();
    a.observe_poll(&poll(100), &[odd]).unwrap();
    let jobs = a.jobs().unwrap();
    assert_eq!(jobs[0].model.as_deref(), Some("m\u{FFFD}\u{202e}🙂"));
    assert_eq!(
        a.history("ftjob-odd", &tunewatch::pipeline::Policy::plain(1.0))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_schema_5_postgresql_database_is_upgraded_in_place_with_its_data() {
    let url = pg::server().database();
    let db = pg::db_name(&url);
    // A database as the previous release left it: schema 5, one job with a pending alert.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut sql = String::from(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_at BIGINT NOT NULL);\n",
    );
    for (version, name) in tunewatch::store::MIGRATIONS
        .iter()
        .take(5)
        .map(|m| (m.0, m.1))
    {
        sql += &std::fs::read_to_string(dir.join(name)).unwrap();
        sql += &format!("\nINSERT INTO schema_migrations VALUES ({version}, '{name}', 0);\n");
    }
    sql += r#"
        INSERT INTO snapshots (source, job_id, observed_at, status, content_hash, raw)
            VALUES ('prod', 'ftjob-old', 1, 'succeeded', 'x',
                    '{"id":"ftjob-old","object":"fine_tuning.job","status":"succeeded"}');
        INSERT INTO jobs VALUES ('prod', 'ftjob-old', 'succeeded', 'gpt-4o-mini', 'x', 1, 1, 1, 1, 0, NULL);
        INSERT INTO events VALUES ('evt_old', 1, 'fine_tuning.job.succeeded', 'prod', 'ftjob-old', 1, 1,
            '{"id":"evt_old","object":"event","type":"fine_tuning.job.succeeded","created_at":1,"data":{"id":"ftjob-old","object":"fine_tuning.job"},"source":"prod","previous_status":"running","status":"succeeded","changes":[],"job":null}');
        INSERT INTO outbox (event_id, notifier, state, created_ms, next_attempt_ms)
            VALUES ('evt_old', 'hook', 'pending', 1000, 1000);
    "#;
    pg::server().psql(db, &sql);
    let store = open(&url);
    let versions = pg::server().psql(
        db,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
    );
    let expected: Vec<String> = (1..=tunewatch::store::MIGRATIONS.len())
        .map(|v| v.to_string())
        .collect();
    assert_eq!(versions, expected.join(","));
    assert_eq!(
        store
            .history("ftjob-old", &tunewatch::pipeline::Policy::plain(1.0))
            .unwrap()
            .len(),
        2
    );
    let due = store.due(i64::MAX / 2, 10).unwrap();
    assert_eq!(due.len(), 1, "the old pending alert is still delivered");
    assert_eq!(due[0].event.id, "evt_old");
    assert!(store.leader().unwrap().is_some(), "schema 6's lease row");
}

#[tokio::test(flavor = "multi_thread")]
async fn outbox_retry_puts_a_dead_delivery_back_in_the_postgresql_store_itself() {
    use common::*;
    let api = Api::start(vec![job_json("ftjob-a", "running")]).await;
    let hook = Hook::start().await;
    // A 400 is final: the delivery is dead at once.
    hook.answer(&[Answer::Status(400)]);
    let setup = Setup::on(Backend::Postgres, &api, &hook.url(), "");
    assert!(setup.command(&["once"]).status().unwrap().success());
    api.update("ftjob-a", json!({"status": "failed"}));
    assert!(setup.command(&["once"]).status().unwrap().success());
    let store = setup.store();
    assert_eq!(store.count(Table::DeadDeliveries).unwrap(), 1);
    let cwd = tempfile::tempdir().unwrap();
    let o = setup
        .command(&["outbox", "retry", "--all-dead"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 dead delivery put back in the outbox"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        store.count(Table::DeadDeliveries).unwrap(),
        0,
        "revived in PostgreSQL, not in a stray SQLite file"
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "no local file was created"
    );
    assert!(setup.command(&["once"]).status().unwrap().success());
    assert_eq!(hook.delivered().len(), 1, "the revived alert is delivered");
}

fn job_json(id: &str, status: &str) -> serde_json::Value {
    common::job(id, status, json!({}))
}
