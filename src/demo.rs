//! `tunewatch demo`: the whole pipeline in about 20 seconds with no key and no network.
//!
//! It starts the simulated jobs API ([`crate::sim`]) and a webhook receiver on loopback ports,
//! writes a config file into a temporary folder, and runs the real daemon against them. The
//! receiver verifies every signature and prints each alert; it answers one delivery with a 503 to
//! show a retry carrying the same `webhook-id`. Nothing outlives the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::config::{Config, Secret};
use crate::event::Event;
use crate::notify::SigningKey;
use crate::sim::{SimApi, SimJob};
use crate::store::{Table, unix_now};
use crate::{Daemon, Error, commands};

const API_KEY: &str = "sk-demo-not-a-real-key";

/// What the receiver has seen.
#[derive(Default)]
struct Seen {
    /// Distinct events accepted, in order.
    accepted: Vec<String>,
    /// Attempts per webhook-id.
    attempts: HashMap<String, u32>,
    rejected_signatures: u32,
}

struct Receiver {
    key: SigningKey,
    start: Instant,
    seen: Mutex<Seen>,
}

/// Runs the demo and prints what happens.
///
/// # Errors
/// When a loopback port cannot be bound, the temporary folder cannot be written, or the daemon
/// fails.
pub async fn run() -> Result<(), Error> {
    let io = |what: &'static str| {
        move |source: std::io::Error| Error::Io {
            what: format!("demo: {what}"),
            source,
        }
    };
    let dir = tempfile::tempdir().map_err(io("creating a temporary folder"))?;
    let now = unix_now();
    let jobs = scenario(now);
    let settle = jobs
        .iter()
        .map(SimJob::settles_at)
        .max()
        .unwrap_or_default();
    let api = SimApi::start(jobs, API_KEY)
        .await
        .map_err(io("starting the simulated API"))?;

    let mut raw_key = [0u8; 24];
    raw_key.iter_mut().for_each(|b| *b = fastrand::u8(..));
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(raw_key)
    );
    let receiver = Arc::new(Receiver {
        key: SigningKey::from_secret(&Secret::new(secret.clone())).map_err(|e| Error::Io {
            what: "demo: the generated secret".into(),
            source: std::io::Error::other(e),
        })?,
        start: Instant::now(),
        seen: Mutex::new(Seen::default()),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(io("binding the receiver"))?;
    let hook_addr = listener.local_addr().map_err(io("binding the receiver"))?;
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    std::fs::write(dir.path().join("api.key"), API_KEY).map_err(io("writing the key file"))?;
    std::fs::write(dir.path().join("hook.secret"), &secret)
        .map_err(io("writing the secret file"))?;
    let config_path = dir.path().join("config.toml");
    let config_text = format!(
        r#"# Written by `tunewatch demo`.
[daemon]
state_db = "tunewatch.db"

[[source]]
name = "demo"
kind = "openai"
api_base = "{api_base}"
api_key_file = "api.key"
poll_interval = "1s"

[[notifier]]
name = "receiver"
kind = "webhook"
url = "http://{hook_addr}/hook"
secret_file = "hook.secret"
retry_initial = "1s"
retry_max = "5s"

[[route]]
events = ["fine_tuning.job.*"]
notifiers = ["receiver"]
"#,
        api_base = api.api_base()
    );
    std::fs::write(&config_path, config_text).map_err(io("writing the config"))?;
    let config = Config::load(&config_path)?;

    println!("tunewatch demo");
    println!("  simulated jobs API  {}", api.api_base());
    println!("  webhook receiver    http://{hook_addr}/hook (verifies every signature)");
    println!("  temporary database  {}", config.daemon.state_db.display());
    println!(
        "  4 jobs already exist; tunewatch records them on its first poll without alerting (the baseline)."
    );
    println!(
        "  Over the next {}s three new jobs appear and run, one fails, one is cancelled.\n",
        settle.as_secs()
    );

    let daemon = Daemon::new(config)?;
    let store = daemon.store().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async {
        let _ = stop_rx.await;
    }));

    // Let every scripted step happen and be polled, then wait for the outbox to drain.
    let deadline = Instant::now() + settle + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pending = store
            .blocking(|s| s.count(Table::PendingDeliveries))
            .await?;
        let settled = api.elapsed() > settle + Duration::from_secs(2);
        if (settled && pending == 0) || Instant::now() > deadline {
            break;
        }
    }
    let _ = stop_tx.send(());
    running.await.map_err(|e| Error::Io {
        what: "demo: the daemon task".into(),
        source: std::io::Error::other(e),
    })??;
    server.abort();

    let (accepted, attempts, rejected) = {
        let seen = receiver.seen.lock().unwrap_or_else(|p| p.into_inner());
        let attempts: u32 = seen.attempts.values().sum();
        (seen.accepted.len(), attempts, seen.rejected_signatures)
    };
    let snapshots = store.blocking(|s| s.count(Table::Snapshots)).await?;
    println!(
        "\n{accepted} alerts delivered in {attempts} attempts; {rejected} bad signatures; \
         {snapshots} snapshots stored for {} API requests.",
        api.requests()
    );
    println!("\n$ tunewatch status");
    print!("{}", store.blocking(commands::status).await?);
    println!(
        "\nRun it for real: write a config (see README.md and config/tunewatch.example.toml), \
         then `tunewatch check` and `tunewatch run`."
    );
    Ok(())
}

/// The receiver: verify, print, answer. The first attempt at the first failure alert gets a 503.
async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let t = r.start.elapsed().as_secs_f64();
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|ts| (unix_now() - ts).abs() <= 300);
    let valid = fresh && r.key.verify(id, ts.parse().unwrap_or(0), &body, sig);
    let mut seen = r.seen.lock().unwrap_or_else(|p| p.into_inner());
    if !valid {
        seen.rejected_signatures += 1;
        println!("{t:>6.1}s  ✗ rejected: bad signature for webhook-id {id}");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        println!("{t:>6.1}s  ✗ rejected: body is not an event");
        return StatusCode::BAD_REQUEST;
    };
    let attempt = {
        let n = seen.attempts.entry(id.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let first_failure = event.event_type == "fine_tuning.job.failed"
        && !seen
            .accepted
            .iter()
            .any(|e| e.starts_with("fine_tuning.job.failed"));
    if first_failure && attempt == 1 {
        println!(
            "{t:>6.1}s  ⟳ receiver answers 503 to {} ({id}); tunewatch will retry with the same id",
            event.event_type
        );
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    seen.accepted.push(format!("{} {id}", event.event_type));
    let change = match (&event.previous_status, &event.status) {
        (Some(p), Some(s)) => format!("{p} → {s}"),
        (None, Some(s)) => format!("new, {s}"),
        _ => String::new(),
    };
    let mut line = format!(
        "{t:>6.1}s  ✓ signed  {:<28} {:<16} {change}",
        event.event_type,
        event.subject()
    );
    if attempt > 1 {
        line.push_str(&format!("  (attempt {attempt}, same id {id})"));
    }
    let job = event.job.as_ref();
    if let Some(m) = job
        .and_then(|j| j.get("fine_tuned_model"))
        .and_then(Value::as_str)
    {
        line.push_str(&format!("\n          model {m}"));
    }
    if let Some(m) = job
        .and_then(|j| j.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        line.push_str(&format!("\n          error {m}"));
    }
    let fields: Vec<&str> = event
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .filter(|f| *f != "status")
        .collect();
    if !fields.is_empty() {
        line.push_str(&format!("\n          also changed: {}", fields.join(", ")));
    }
    println!("{line}");
    StatusCode::OK
}

/// The demo's jobs: four that exist before the first poll, three that appear during the run.
fn scenario(now: i64) -> Vec<SimJob> {
    let s = Duration::from_secs;
    let job = |id: &str, created_ago: i64, status: &str, model: &str| {
        json!({
            "object": "fine_tuning.job", "id": id, "model": model,
            "created_at": now - created_ago, "finished_at": null, "fine_tuned_model": null,
            "organization_id": "org-demo", "result_files": [], "status": status,
            "validation_file": null, "training_file": "file-demo-train", "trained_tokens": null,
            "error": {"code": null, "message": null, "param": null},
            "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                                "learning_rate_multiplier": "auto"},
            "method": {"type": "supervised"}, "seed": 42, "estimated_finish": null,
            "integrations": [], "metadata": null,
        })
    };
    let done = |id: &str, status: &str, ago: i64| {
        let mut j = job(id, ago, status, "gpt-4o-mini-2024-07-18");
        j["finished_at"] = json!(now - ago + 1800);
        if status == "succeeded" {
            j["fine_tuned_model"] = json!(format!("ft:gpt-4o-mini-2024-07-18:demo::{}", &id[6..]));
            j["trained_tokens"] = json!(120_000);
        }
        j
    };
    let at = |secs| now + secs as i64;
    vec![
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0001", "succeeded", 3 * 86_400),
            steps: vec![],
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0002", "failed", 2 * 86_400),
            steps: vec![],
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: done("ftjob-hist0003", "succeeded", 86_400),
            steps: vec![],
        },
        SimJob {
            appear_at: Duration::ZERO,
            base: job("ftjob-longrun1", 3600, "running", "gpt-4.1-2025-04-14"),
            steps: vec![(s(11), json!({"status": "cancelled", "finished_at": at(11)}))],
        },
        SimJob {
            appear_at: s(2),
            base: job(
                "ftjob-sentiment",
                -2,
                "validating_files",
                "gpt-4o-mini-2024-07-18",
            ),
            steps: vec![
                (s(4), json!({"status": "queued"})),
                (
                    s(6),
                    json!({"status": "running", "estimated_finish": at(16)}),
                ),
                (s(10), json!({"trained_tokens": 48_000})),
                (
                    s(15),
                    json!({"status": "succeeded", "finished_at": at(15), "trained_tokens": 96_000,
                           "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:demo:sentiment:Ab12Cd34",
                           "result_files": ["file-demo-results"], "estimated_finish": null}),
                ),
            ],
        },
        SimJob {
            appear_at: s(3),
            base: job(
                "ftjob-tinyset",
                -3,
                "validating_files",
                "gpt-4o-mini-2024-07-18",
            ),
            steps: vec![(
                s(5),
                json!({"status": "failed", "finished_at": null,
                       "error": {"code": "invalid_n_examples",
                                 "message": "Training file has 7 example(s), but must have at least 10 examples",
                                 "param": "training_file"}}),
            )],
        },
        SimJob {
            appear_at: s(7),
            base: job(
                "ftjob-support",
                -7,
                "validating_files",
                "gpt-4.1-mini-2025-04-14",
            ),
            steps: vec![
                (s(8), json!({"status": "queued"})),
                (s(9), json!({"status": "running"})),
                (s(12), json!({"status": "paused"})),
                (s(14), json!({"status": "running"})),
                (
                    s(18),
                    json!({"status": "succeeded", "finished_at": at(18), "trained_tokens": 210_000,
                           "fine_tuned_model": "ft:gpt-4.1-mini-2025-04-14:demo:support:Zx98Yw76",
                           "result_files": ["file-demo-results-2"]}),
                ),
            ],
        },
    ]
}
