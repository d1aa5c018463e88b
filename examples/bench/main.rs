//! Side-by-side polling benchmark: `cargo run --release --example bench`.
//!
//! Starts the simulated jobs API (the one `demo` uses) with 10 000 jobs, 50 of them active among
//! the newest 100 and one old job still running deep in the list, and measures three pollers,
//! each in its own process so that CPU time and peak RSS are its own (then again with 100 000
//! jobs, for how memory grows):
//!
//! * (a) tunewatch — `Daemon::once` on a real database: incremental paging, in-memory index;
//! * (b) naive — page through every job and store every snapshot, each cycle;
//! * (c) floor — fetch and parse the same pages, nothing else.
//!
//! For the first full scan and for steady cycles: requests, wall time and CPU time per cycle;
//! database bytes added per unchanged cycle and per transition; peak RSS. Prints a table, the
//! ratios (a)/(b) and (a)/(c), and the targets. `BENCH_TRACE=1` also prints each poller's RSS
//! before and after its first scan.
//!
//! Then tunewatch again with its store on PostgreSQL (a throwaway server started like the tests'
//! own, when Debian's `postgresql` is installed), beside SQLite: first full scan, steady cycle,
//! peak RSS, and deliveries per second (500 alerts to a loopback receiver). The CPU columns are
//! tunewatch's own process; PostgreSQL's server processes are not counted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tunewatch::demo::api::{SimApi, SimJob};

/// The tests' throwaway PostgreSQL server (initdb + postgres on loopback, stopped at exit).
#[path = "../../tests/it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

mod batches;
mod clouds;

/// The tests' stand-ins of the cloud APIs (and the SigV4 verifier they use).
#[allow(dead_code)]
mod stand_in;

/// The main run's size, and the larger one that shows how memory grows.
const JOBS: usize = 10_000;
const MORE_JOBS: usize = 100_000;
/// Steady cycles measured at the larger size (the naive poller stores 100 000 snapshots each).
const MORE_STEADY_CYCLES: usize = 2;
const ACTIVE: usize = 50;
const STEADY_CYCLES: usize = 10;
const TRANSITIONS: usize = 20;
const KEY: &str = "sk-bench";

#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Cycle {
    requests: f64,
    wall_ms: f64,
    cpu_ms: f64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Report {
    first: Cycle,
    steady: Cycle,
    db_bytes_per_unchanged_cycle: f64,
    db_bytes_per_transition: f64,
    peak_rss_kb: u64,
    /// The largest private (anonymous) and file-backed parts of the RSS seen at the samples
    /// (after the first scan, each steady cycle and each transition).
    #[serde(default)]
    peak_anon_kb: u64,
    #[serde(default)]
    peak_file_kb: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.get(1).map(String::as_str) {
        Some("--child") => {
            let cycles: usize = args[5].parse().expect("a number of steady cycles");
            let report = runtime.block_on(child(&args[2], &args[3], &args[4], cycles));
            println!(
                "{}",
                serde_json::to_string(&report).expect("a report serialises")
            );
        }
        _ => runtime.block_on(parent()),
    }
}

/// `n` jobs, newest first; the 50 active ones are among the newest 100, as in real life, and
/// one old job deep in the list (at 90 %) is still running.
fn jobs(n: usize) -> Vec<SimJob> {
    let now = 1_764_000_000i64;
    (0..n)
        .map(|i| {
            let active = (i < 2 * ACTIVE && i % 2 == 0) || i == n * 9 / 10;
            let status = if active { "running" } else { "succeeded" };
            let mut job = json!({
                "object": "fine_tuning.job", "id": format!("ftjob-bench{i:06}"),
                "model": "gpt-4o-mini-2024-07-18", "created_at": now - i as i64 * 600,
                "finished_at": if active { Value::Null } else { json!(now - i as i64 * 600 + 3000) },
                "fine_tuned_model": if active { Value::Null } else { json!(format!("ft:gpt-4o-mini-2024-07-18:acme::b{i:05}")) },
                "organization_id": "org-bench", "result_files": if active { json!([]) } else { json!([format!("file-r{i}")]) },
                "status": status, "validation_file": null, "training_file": format!("file-t{i}"),
                "trained_tokens": if active { Value::Null } else { json!(120_000 + i) },
                "error": {"code": null, "message": null, "param": null},
                "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.8},
                "method": {"type": "supervised", "supervised": {"hyperparameters":
                    {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.8}}},
                "seed": i, "estimated_finish": null, "integrations": [], "metadata": null,
                "user_provided_suffix": null,
            });
            if let Value::Object(o) = &mut job {
                o.insert("usage_metrics".into(), Value::Null);
            }
            SimJob {
                appear_at: Duration::ZERO,
                base: job,
                steps: vec![],
                training: None,
            }
        })
        .collect()
}

/// The benchmark's controls over the simulated API, on a port of their own (the product's
/// simulated API has no control routes): patch a job, count requests.
async fn controls(sim: std::sync::Arc<SimApi>) -> std::net::SocketAddr {
    use axum::extract::{Path as UrlPath, State};
    use axum::routing::{get, post};
    type Sim = State<std::sync::Arc<SimApi>>;
    let app = axum::Router::new()
        .route(
            "/patch/{id}",
            post(
                |State(sim): Sim,
                 UrlPath(id): UrlPath<String>,
                 axum::Json(p): axum::Json<Value>| async move {
                    sim.patch(&id, p);
                },
            ),
        )
        .route(
            "/requests",
            get(|State(sim): Sim| async move { axum::Json(json!({"requests": sim.requests()})) }),
        )
        .with_state(sim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn parent() {
    // `BENCH_ONLY=clouds`: the cloud kinds' steady cost per poll alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("clouds") {
        clouds::costs().await;
        return;
    }
    // `BENCH_ONLY=webhooks` measures the webhook intake alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("webhooks") {
        webhook_latency().await;
        return;
    }
    // `BENCH_ONLY=main`: the 10 000-job run, the binary's size and the memory split alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("main") {
        let main = run_all(JOBS, STEADY_CYCLES).await;
        footprint(&main[0].1, &main[1].1);
        return;
    }
    // `BENCH_ONLY=postgres`: tunewatch on SQLite and on PostgreSQL alone.
    if std::env::var("BENCH_ONLY").as_deref() == Ok("postgres") {
        backends(&run_all(JOBS, STEADY_CYCLES).await).await;
        return;
    }
    let main = run_all(JOBS, STEADY_CYCLES).await;
    let more = run_all(MORE_JOBS, MORE_STEADY_CYCLES).await;
    print_table(&main, &more);
    footprint(&main[0].1, &main[1].1);
    backends(&main).await;
    insight_cost().await;
    clouds::costs().await;
    webhook_latency().await;
}

/// The release binary's size (built here, stripped by the profile) and tunewatch's memory: peak
/// RSS and its private and file-backed parts.
fn footprint(a: &Report, naive: &Report) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    // Built by `cargo build --release` beforehand: building it from here would rebuild the
    // library without the dev-dependencies' features, and the next bench run would rebuild it back.
    let size = std::fs::metadata(dir.join("release/tunewatch"))
        .ok()
        .map(|m| m.len());
    println!("\nfootprint (10 000 jobs):");
    match size {
        Some(b) => println!(
            "  release binary (stripped): {:.1} MiB ({b} bytes)",
            b as f64 / 1_048_576.0
        ),
        None => println!("  release binary: not found (run `cargo build --release` first)"),
    }
    println!(
        "  peak RSS {:.1} MiB: private (anonymous) up to {:.1} MiB, file-backed (the binary's \
         own pages, shared and reclaimable) up to {:.1} MiB",
        a.peak_rss_kb as f64 / 1024.0,
        a.peak_anon_kb as f64 / 1024.0,
        a.peak_file_kb as f64 / 1024.0
    );
    println!(
        "  steady cycle: {:.1} requests, CPU {:.1} ms ({:.0}x below naive)",
        a.steady.requests,
        a.steady.cpu_ms,
        naive.steady.cpu_ms / a.steady.cpu_ms.max(0.001)
    );
    println!(
        "  first full scan: {:.0} ms wall, {:.0} ms CPU",
        a.first.wall_ms, a.first.cpu_ms
    );
    println!(
        "  [{}] binary <= 12 MiB; [{}] peak RSS < 15 MiB",
        if size.is_some_and(|b| b <= 12 * 1_048_576) {
            "x"
        } else {
            " "
        },
        if a.peak_rss_kb < 15 * 1024 { "x" } else { " " }
    );
}

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some())
}

/// Alerts in the deliveries-per-second measurement.
const DELIVERIES: usize = 500;

/// tunewatch on SQLite beside tunewatch on PostgreSQL.
async fn backends(main: &[(&str, Report)]) {
    let Some((_, on_pg)) = main.iter().find(|(s, _)| *s == "tunewatch-pg") else {
        println!(
            "\nPostgreSQL column skipped: no /usr/lib/postgresql (apt-get install postgresql)"
        );
        return;
    };
    let on_sqlite = &main[0].1;
    let sqlite_rate = deliveries_per_second(None).await;
    let pg_rate = deliveries_per_second(Some(pg::server().database())).await;
    println!(
        "\nthe store: tunewatch on SQLite and on PostgreSQL {} (loopback, one daemon; CPU is \
         tunewatch's process, not the server's)\n",
        pg_version()
    );
    println!("| {:<38} | {:>14} | {:>14} |", "", "SQLite", "PostgreSQL");
    println!("|{}|{}|{}|", "-".repeat(40), "-".repeat(16), "-".repeat(16));
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!(
            "| {:<38} | {:>14} | {:>14} |",
            name,
            format!("{a:.1}{unit}"),
            format!("{b:.1}{unit}")
        );
    };
    let (a, b) = (on_sqlite, on_pg);
    row(
        "first full scan: wall time",
        a.first.wall_ms,
        b.first.wall_ms,
        " ms",
    );
    row(
        "first full scan: CPU time",
        a.first.cpu_ms,
        b.first.cpu_ms,
        " ms",
    );
    row(
        "steady cycle: requests",
        a.steady.requests,
        b.steady.requests,
        "",
    );
    row(
        "steady cycle: wall time",
        a.steady.wall_ms,
        b.steady.wall_ms,
        " ms",
    );
    row(
        "steady cycle: CPU time",
        a.steady.cpu_ms,
        b.steady.cpu_ms,
        " ms",
    );
    row(
        "peak RSS",
        a.peak_rss_kb as f64 / 1024.0,
        b.peak_rss_kb as f64 / 1024.0,
        " MiB",
    );
    row(
        &format!("deliveries per second ({DELIVERIES} alerts)"),
        sqlite_rate,
        pg_rate,
        "",
    );
}

fn pg_version() -> String {
    let mut dirs: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_default()
}

/// `DELIVERIES` jobs finish at once; the daemon raises their alerts and delivers them to a
/// loopback receiver answering 200. Returns alerts per second of delivery (the poll that raised
/// them, measured alone on an unchanged cycle, is taken out).
async fn deliveries_per_second(pg_url: Option<String>) -> f64 {
    let sim = SimApi::start(running("ftjob-d", DELIVERIES), KEY)
        .await
        .expect("a loopback port");
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let hook = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("key"), KEY).expect("a key file");
    std::fs::write(dir.path().join("pg.password"), pg::PG_PASSWORD).expect("a password file");
    let state_db = match &pg_url {
        Some(url) => format!("state_db = \"{url}\"\nstate_db_password_file = \"pg.password\""),
        None => "state_db = \"bench.db\"".into(),
    };
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[daemon]\n{state_db}\n\n[[source]]\nname = \"bench\"\nkind = \"openai\"\n\
             api_base = \"http://{}/v1\"\napi_key_file = \"key\"\npage_size = 100\ninsight = false\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{hook}/hook\"\n\n\
             [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"hook\"]\n",
            sim.addr
        ),
    )
    .expect("a config file");
    let config = tunewatch::config::Config::load(&config_path).expect("a valid config");
    let daemon = tunewatch::Daemon::new(config).expect("a daemon");
    daemon.once().await.expect("the baseline");
    let t = Instant::now();
    daemon.once().await.expect("an unchanged poll");
    let poll = t.elapsed();
    for i in 0..DELIVERIES {
        sim.patch(&format!("ftjob-d{i:04}"), json!({"status": "succeeded"}));
    }
    let t = Instant::now();
    let report = daemon.once().await.expect("a poll and its deliveries");
    let took = t.elapsed().saturating_sub(poll);
    assert_eq!(report.attempted, DELIVERIES, "every alert attempted once");
    DELIVERIES as f64 / took.as_secs_f64()
}

/// `n` running jobs `PREFIX0000`, `PREFIX0001`…, newest first.
fn running(prefix: &str, n: usize) -> Vec<SimJob> {
    (0..n)
        .map(|i| SimJob {
            appear_at: Duration::ZERO,
            base: json!({"object": "fine_tuning.job", "id": format!("{prefix}{i:04}"),
                         "status": "running", "model": "gpt-4o-mini-2024-07-18",
                         "created_at": 1_764_000_000 - i as i64}),
            steps: vec![],
            training: None,
        })
        .collect()
}

/// Webhooks in the latency measurement.
const WEBHOOKS: usize = 100;

/// Time from a webhook's arrival to the alert reaching a loopback receiver: a real daemon
/// (`Daemon::run`, polling hourly) takes `WEBHOOKS` signed webhooks, one at a time, each about a
/// job that has just finished; the receiver notes when each alert arrives.
async fn webhook_latency() {
    use std::sync::{Arc, Mutex};
    use tunewatch::config::Secret;
    use tunewatch::notify::SigningKey;
    const WHSEC: &str = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4OQ==";
    let sim = SimApi::start(running("ftjob-wh", WEBHOOKS), KEY)
        .await
        .expect("a loopback port");
    // The receiver: job id → when its alert arrived.
    let arrived: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Default::default();
    let seen = arrived.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                if let Some(id) = v["data"]["id"].as_str() {
                    seen.lock()
                        .expect("not poisoned")
                        .entry(id.to_string())
                        .or_insert_with(Instant::now);
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let hook = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("key"), KEY).expect("a key file");
    std::fs::write(dir.path().join("whsec"), WHSEC).expect("a secret file");
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[daemon]\nstate_db = \"bench.db\"\nlisten = \"127.0.0.1:{port}\"\n\n[[source]]\n\
             name = \"bench\"\nkind = \"openai\"\napi_base = \"http://{}/v1\"\napi_key_file = \"key\"\n\
             poll_interval = \"1h\"\nwebhook_secret_file = \"whsec\"\ninsight = false\n\n\
             [[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{hook}/hook\"\n\n\
             [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"hook\"]\n",
            sim.addr
        ),
    )
    .expect("a config file");
    let config = tunewatch::config::Config::load(&config_path).expect("a valid config");
    let daemon = tunewatch::Daemon::new(config).expect("a daemon");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/webhooks/bench");
    // The daemon is up (and its baseline done) once the endpoint answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let db = dir.path().join("bench.db");
    loop {
        let up = http
            .post(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 400);
        let baseline = tunewatch::store::Store::open_read_only(&db)
            .and_then(|s| s.baseline_done("bench"))
            .unwrap_or(false);
        if up && baseline {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let key = SigningKey::from_secret(&Secret::new(WHSEC)).expect("a valid secret");
    let mut latencies: Vec<f64> = Vec::with_capacity(WEBHOOKS);
    for i in 0..WEBHOOKS {
        let id = format!("ftjob-wh{i:04}");
        sim.patch(&id, json!({"status": "succeeded"}));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let body = json!({"id": format!("evt_{i}"), "type": "fine_tuning.job.succeeded",
                          "created_at": ts, "data": {"id": id}})
        .to_string();
        let wh = format!("wh_bench_{i}");
        let sent = Instant::now();
        let r = http
            .post(&url)
            .header("webhook-id", &wh)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", key.sign(&wh, ts, body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("the daemon answers");
        assert_eq!(r.status().as_u16(), 200);
        let deadline = Instant::now() + Duration::from_secs(10);
        let at = loop {
            if let Some(at) = arrived.lock().expect("not poisoned").get(&id) {
                break *at;
            }
            assert!(Instant::now() < deadline, "no alert for {id}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(());
    let _ = running.await;
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let (median, p99) = (pick(0.5), pick(0.99));
    println!(
        "\nwebhook intake: {WEBHOOKS} signed webhooks, one at a time, from arrival to the alert at a loopback receiver:"
    );
    println!(
        "  median {median:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        latencies[latencies.len() - 1]
    );
    println!(
        "  polling only at the default poll_interval (60 s): a change waits 0 to 60 s for the next poll (median 30 s, p99 59.4 s)"
    );
    println!(
        "  [{}] median <= 250 ms, p99 <= 1 s",
        if median <= 250.0 && p99 <= 1000.0 {
            "x"
        } else {
            " "
        }
    );
}

/// Running jobs in the insight measurement.
const INSIGHT_JOBS: usize = 10;

/// What training insight costs in requests at its defaults (`metrics_interval = "2m"`,
/// `poll_interval = "60s"`): one simulated hour of polls on the daemon's injectable clock with
/// running jobs that have metric events, then the jobs finish, then more polls.
async fn insight_cost() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    use tunewatch::demo::training::Training;
    let start = 1_764_000_000i64;
    let jobs: Vec<SimJob> = (0..INSIGHT_JOBS)
        .map(|i| {
            let id = format!("ftjob-insight{i:02}");
            SimJob {
                appear_at: Duration::ZERO,
                base: json!({"object": "fine_tuning.job", "id": id, "status": "running",
                             "model": "gpt-4o-mini-2024-07-18", "created_at": start - i as i64}),
                steps: vec![],
                training: Some(Training {
                    from: Duration::ZERO,
                    to: Duration::from_millis(1),
                    total_steps: 100,
                    every: 10,
                    epochs: 3,
                    overfits: false,
                    epoch_unix: start,
                    model_prefix: format!("ft:gpt-4o-mini-2024-07-18:bench::{id}"),
                }),
            }
        })
        .collect();
    let sim = SimApi::start(jobs, KEY).await.expect("a loopback port");
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("key"), KEY).expect("a key file");
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[daemon]\nstate_db = \"bench.db\"\n\n[[source]]\nname = \"bench\"\nkind = \"openai\"\n\
             api_base = \"http://{}/v1\"\napi_key_file = \"key\"\n",
            sim.addr
        ),
    )
    .expect("a config file");
    let config = tunewatch::config::Config::load(&config_path).expect("a valid config");
    let poll = config.sources[0].poll_interval.0.as_millis() as i64;
    let metrics = config.sources[0].insight.metrics_interval;
    let now = Arc::new(AtomicI64::new(start * 1000));
    let read = now.clone();
    let clock = tunewatch::clock::Clock::from_fn(move || read.load(Ordering::Relaxed));
    let daemon = tunewatch::Daemon::with_clock(config, clock).expect("a daemon");
    // One hour of polls at the default interval.
    let polls_per_hour = 3_600_000 / poll;
    for _ in 0..polls_per_hour {
        daemon.once().await.expect("a poll");
        now.fetch_add(poll, Ordering::Relaxed);
    }
    let running = sim.item_requests() as f64 / INSIGHT_JOBS as f64;
    for i in 0..INSIGHT_JOBS {
        sim.patch(
            &format!("ftjob-insight{i:02}"),
            json!({"status": "succeeded", "trained_tokens": 100_000}),
        );
    }
    let before = sim.item_requests();
    daemon.once().await.expect("a poll");
    now.fetch_add(poll, Ordering::Relaxed);
    let finishing = (sim.item_requests() - before) as f64 / INSIGHT_JOBS as f64;
    let before = sim.item_requests();
    for _ in 0..10 {
        daemon.once().await.expect("a poll");
        now.fetch_add(poll, Ordering::Relaxed);
    }
    let after = sim.item_requests() - before;
    println!(
        "\ntraining insight at its defaults (metrics_interval {metrics}, poll_interval {}s), \
         {INSIGHT_JOBS} running jobs, one hour on the daemon's clock ({polls_per_hour} polls):",
        poll / 1000
    );
    println!("  extra requests per running job per hour: {running:.1}");
    println!(
        "  extra requests per finishing job: {finishing:.1} (the final read of events + checkpoints)"
    );
    println!("  extra requests for finished jobs afterwards (10 polls): {after}");
    let bound = 3600.0 / metrics.0.as_secs_f64();
    println!(
        "  [{}] at most one events request per running job per metrics_interval ({bound:.0} per hour): {running:.1}",
        if running <= bound { "x" } else { " " }
    );
}

/// Runs the three pollers against `n` simulated jobs, each in its own process.
async fn run_all(n: usize, cycles: usize) -> Vec<(&'static str, Report)> {
    let sim = std::sync::Arc::new(SimApi::start(jobs(n), KEY).await.expect("a loopback port"));
    let control = controls(sim.clone()).await;
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut reports = Vec::new();
    let mut strategies = vec!["tunewatch", "naive", "floor"];
    // The PostgreSQL column: at the main size only.
    let pg_url = (n == JOBS && postgres_installed()).then(|| pg::server().database());
    if pg_url.is_some() {
        strategies.push("tunewatch-pg");
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("postgres") {
        strategies.retain(|s| s.starts_with("tunewatch"));
    }
    let password = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(password.path(), pg::PG_PASSWORD).expect("a password file");
    for strategy in strategies {
        sim.reset();
        eprintln!("running ({strategy}, {n} jobs)…");
        let out = Command::new(&exe)
            .args([
                "--child",
                strategy,
                &format!("http://{}", sim.addr),
                &control.to_string(),
                &cycles.to_string(),
            ])
            .env("RUST_LOG", "error")
            // As the shipped unit runs the daemon (systemd/tunewatch.service): one malloc
            // arena, not one per thread that ever allocated.
            .env("MALLOC_ARENA_MAX", "1")
            .env("BENCH_PG_URL", pg_url.clone().unwrap_or_default())
            .env("BENCH_PG_PASSWORD_FILE", password.path())
            .output()
            .expect("the benchmark can run itself");
        if std::env::var_os("BENCH_TRACE").is_some() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{strategy}: no report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        reports.push((strategy, report));
    }
    reports
}

fn print_table(r: &[(&str, Report)], more: &[(&str, Report)]) {
    let (a, b, c) = (&r[0].1, &r[1].1, &r[2].1);
    let (a2, b2, c2) = (&more[0].1, &more[1].1, &more[2].1);
    println!(
        "\ntunewatch polling benchmark: {JOBS} jobs ({ACTIVE} active among the newest 100, one old \
         running job at 90 %), page size 100, {STEADY_CYCLES} steady cycles, {TRANSITIONS} transitions; \
         then {MORE_JOBS} jobs, {MORE_STEADY_CYCLES} steady cycles\n"
    );
    println!(
        "| {:<38} | {:>14} | {:>14} | {:>14} | {:>8} | {:>8} |",
        "", "(a) tunewatch", "(b) naive", "(c) floor", "(a)/(b)", "(a)/(c)"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(40),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(10),
        "-".repeat(10)
    );
    // One table row: the three pollers of one run (`set`), and the ratios.
    let line = |set: [&Report; 3], name: &str, f: &dyn Fn(&Report) -> f64, unit: &str| {
        let (x, y, z) = (f(set[0]), f(set[1]), f(set[2]));
        let ratio = |p: f64, q: f64| {
            if q > 0.0 {
                format!("{:.3}", p / q)
            } else {
                "-".into()
            }
        };
        println!(
            "| {:<38} | {:>14} | {:>14} | {:>14} | {:>8} | {:>8} |",
            name,
            format!("{x:.1}{unit}"),
            format!("{y:.1}{unit}"),
            format!("{z:.1}{unit}"),
            ratio(x, y),
            ratio(x, z)
        );
    };
    let row = |name: &str, f: &dyn Fn(&Report) -> f64, unit: &str| line([a, b, c], name, f, unit);
    let row2 =
        |name: &str, f: &dyn Fn(&Report) -> f64, unit: &str| line([a2, b2, c2], name, f, unit);
    row("first full scan: requests", &|r| r.first.requests, "");
    row("first full scan: wall time", &|r| r.first.wall_ms, " ms");
    row("first full scan: CPU time", &|r| r.first.cpu_ms, " ms");
    row("steady cycle: requests", &|r| r.steady.requests, "");
    row("steady cycle: wall time", &|r| r.steady.wall_ms, " ms");
    row("steady cycle: CPU time", &|r| r.steady.cpu_ms, " ms");
    row(
        "database bytes per unchanged cycle",
        &|r| r.db_bytes_per_unchanged_cycle,
        "",
    );
    row(
        "database bytes per transition",
        &|r| r.db_bytes_per_transition,
        "",
    );
    row("peak RSS", &|r| r.peak_rss_kb as f64 / 1024.0, " MiB");
    row2(
        "100k: first full scan: wall time",
        &|r| r.first.wall_ms,
        " ms",
    );
    row2("100k: steady cycle: requests", &|r| r.steady.requests, "");
    row2("100k: steady cycle: CPU time", &|r| r.steady.cpu_ms, " ms");
    row2("100k: peak RSS", &|r| r.peak_rss_kb as f64 / 1024.0, " MiB");
    println!("\ntargets:");
    let check = |ok: bool, what: String| println!("  [{}] {what}", if ok { "x" } else { " " });
    check(
        a.steady.requests <= 2.0,
        format!(
            "steady state = 2 requests per cycle (one page + one GET for the old running job): {:.1}",
            a.steady.requests
        ),
    );
    check(
        b.steady.cpu_ms >= 20.0 * a.steady.cpu_ms,
        format!(
            "steady-cycle CPU >= 20x lower than naive: {:.1}x",
            b.steady.cpu_ms / a.steady.cpu_ms.max(0.001)
        ),
    );
    check(
        a.first.wall_ms <= 2.0 * c.first.wall_ms,
        format!(
            "first full scan <= 2x the floor: {:.2}x wall, {:.2}x CPU",
            a.first.wall_ms / c.first.wall_ms,
            a.first.cpu_ms / c.first.cpu_ms.max(0.001)
        ),
    );
    check(
        a.db_bytes_per_unchanged_cycle == 0.0,
        format!(
            "0 database bytes per unchanged cycle: {}",
            a.db_bytes_per_unchanged_cycle
        ),
    );
    check(
        a.db_bytes_per_transition <= 4096.0,
        format!(
            "<= 4 KiB per transition: {:.0} B",
            a.db_bytes_per_transition
        ),
    );
    check(
        a.peak_rss_kb < 15 * 1024,
        format!(
            "peak RSS < 15 MB at {JOBS} jobs: {:.1} MiB ({:.1} MiB at {MORE_JOBS})",
            a.peak_rss_kb as f64 / 1024.0,
            a2.peak_rss_kb as f64 / 1024.0
        ),
    );
}

/// One strategy, measured from inside its own process.
async fn child(strategy: &str, sim: &str, control: &str, cycles: usize) -> Report {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let api_base = format!("{sim}/v1");
    let poller = Poller::new(strategy, &api_base, dir.path()).await;
    let addr = control.to_string();
    let requests = || {
        let body = raw_http(&addr, "GET", "/requests", "");
        let v: Value = serde_json::from_str(&body).expect("a count");
        v["requests"].as_f64().unwrap_or(0.0)
    };
    let measure = async |poller: &Poller| {
        let (r0, c0, t0) = (requests(), cpu_ms(), Instant::now());
        poller.cycle().await;
        Cycle {
            wall_ms: t0.elapsed().as_secs_f64() * 1000.0,
            cpu_ms: cpu_ms() - c0,
            requests: requests() - r0,
        }
    };
    let phase = |what: &str| {
        if std::env::var_os("BENCH_TRACE").is_some() {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let pick = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .unwrap_or("")
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string()
            };
            eprintln!(
                "{strategy} {what}: rss {} kB (file {} kB, anon {} kB), hwm {} kB, threads {}",
                pick("VmRSS"),
                pick("RssFile"),
                pick("RssAnon"),
                pick("VmHWM"),
                pick("Threads")
            );
        }
    };
    phase("ready");
    let mut split = (0u64, 0u64);
    let mut sample = || {
        let (a, f) = rss_split();
        split = (split.0.max(a), split.1.max(f));
    };
    let first = measure(&poller).await;
    sample();
    phase("after first scan");
    let size0 = poller.db_size();
    let mut steady = Cycle::default();
    for _ in 0..cycles {
        let c = measure(&poller).await;
        sample();
        steady.requests += c.requests / cycles as f64;
        steady.wall_ms += c.wall_ms / cycles as f64;
        steady.cpu_ms += c.cpu_ms / cycles as f64;
    }
    let size1 = poller.db_size();
    // Transitions only in the main run (the larger one is about memory).
    let transitions = if cycles == STEADY_CYCLES {
        TRANSITIONS
    } else {
        0
    };
    for k in 0..transitions {
        let id = format!("ftjob-bench{:06}", 2 * k);
        let patch = json!({"status": "succeeded", "finished_at": 1_764_000_100,
                           "fine_tuned_model": format!("ft:gpt-4o-mini-2024-07-18:acme::{id}"),
                           "trained_tokens": 98_304, "result_files": ["file-results"]});
        raw_http(&addr, "POST", &format!("/patch/{id}"), &patch.to_string());
        measure(&poller).await;
        sample();
    }
    let size2 = poller.db_size();
    Report {
        first,
        steady,
        db_bytes_per_unchanged_cycle: (size1 as f64 - size0 as f64) / cycles as f64,
        db_bytes_per_transition: (size2 as f64 - size1 as f64) / transitions.max(1) as f64,
        peak_rss_kb: peak_rss_kb(),
        peak_anon_kb: split.0,
        peak_file_kb: split.1,
    }
}

enum Poller {
    Tunewatch(Box<tunewatch::Daemon>, PathBuf),
    Naive(
        tunewatch::source::OpenAiClient,
        rusqlite::Connection,
        PathBuf,
    ),
    Floor(tunewatch::source::OpenAiClient),
}

impl Poller {
    async fn new(strategy: &str, api_base: &str, dir: &Path) -> Poller {
        std::fs::write(dir.join("key"), KEY).expect("a key file");
        let db = dir.join("bench.db");
        let config_path = dir.join("config.toml");
        let state_db = if strategy == "tunewatch-pg" {
            format!(
                "state_db = \"{}\"\nstate_db_password_file = \"{}\"",
                std::env::var("BENCH_PG_URL").expect("the PostgreSQL URL"),
                std::env::var("BENCH_PG_PASSWORD_FILE").expect("the password file")
            )
        } else {
            "state_db = \"bench.db\"".to_string()
        };
        std::fs::write(
            &config_path,
            format!(
                "[daemon]\n{state_db}\n\n[[source]]\nname = \"bench\"\nkind = \"openai\"\n\
                 api_base = \"{api_base}\"\napi_key_file = \"key\"\npage_size = 100\n\
                 # The polling comparison; insight's reads are measured on their own.\n\
                 insight = false\n"
            ),
        )
        .expect("a config file");
        let config = tunewatch::config::Config::load(&config_path).expect("a valid config");
        let client = || {
            tunewatch::source::OpenAiClient::new(
                &config.sources[0],
                &tunewatch::config::Secret::new(KEY),
            )
            .expect("a client")
        };
        match strategy {
            "tunewatch" | "tunewatch-pg" => Poller::Tunewatch(
                Box::new(tunewatch::Daemon::new(config.clone()).expect("a daemon")),
                db,
            ),
            "naive" => {
                let conn = rusqlite::Connection::open(&db).expect("a database");
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     CREATE TABLE snapshots (job_id TEXT NOT NULL, observed_at INTEGER NOT NULL, raw TEXT NOT NULL);",
                )
                .expect("a table");
                Poller::Naive(client(), conn, db)
            }
            _ => Poller::Floor(client()),
        }
    }

    async fn cycle(&self) {
        let ignore = |_: Option<u16>, _: Duration| {};
        match self {
            Poller::Tunewatch(d, _) => {
                d.once().await.expect("a poll");
            }
            Poller::Naive(client, conn, _) => {
                let listing = client.list_all(&ignore).await.expect("a listing");
                let now = tunewatch::store::unix_now();
                let tx = conn.unchecked_transaction().expect("a transaction");
                for job in &listing.jobs {
                    tx.execute(
                        "INSERT INTO snapshots (job_id, observed_at, raw) VALUES (?1, ?2, ?3)",
                        rusqlite::params![job.id, now, job.raw.to_string()],
                    )
                    .expect("an insert");
                }
                tx.commit().expect("a commit");
            }
            Poller::Floor(client) => {
                client.list_all(&ignore).await.expect("a listing");
            }
        }
    }

    /// The database's size once its write-ahead log is folded in.
    fn db_size(&self) -> u64 {
        let path = match self {
            Poller::Tunewatch(d, _) if d.store().is_shared() => return 0,
            Poller::Tunewatch(_, p) | Poller::Naive(_, _, p) => p,
            Poller::Floor(_) => return 0,
        };
        let conn = rusqlite::Connection::open(path).expect("the database");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("a checkpoint");
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// A bare HTTP/1.0 exchange with the benchmark's controls: the harness must not add an HTTP
/// client (and its TLS roots) to the memory it measures.
fn raw_http(addr: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the simulated API answers");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("a request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("an answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// CPU time of every thread of this process so far, from /proc (nanosecond precision).
fn cpu_ms() -> f64 {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e6
}

/// The RSS's anonymous and file-backed parts now (kB).
fn rss_split() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pick = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (pick("RssAnon:"), pick("RssFile:"))
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
