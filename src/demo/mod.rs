//! `tunewatch demo`: the whole pipeline in about 20 seconds with no key and no network.
//!
//! It starts the simulated jobs API ([`api`]) and a webhook receiver on loopback ports,
//! writes a config file into a temporary folder, and runs the real daemon against them. The
//! receiver verifies every signature and prints each alert; it answers one delivery with a 503 to
//! show a retry carrying the same `webhook-id`. Nothing outlives the run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use base64::Engine;

use crate::config::{Config, Secret};
use crate::notify::SigningKey;
pub mod api;
mod evaluation;
mod receiver;
mod scenario;
pub mod training;

use crate::cli;
use crate::run::daemon::{Daemon, Error};
use crate::store::{Table, unix_now};
use api::{SimApi, SimJob};
use receiver::{Receiver, Seen, receive};
use scenario::scenario;

const API_KEY: &str = "sk-demo-not-a-real-key";
/// The loss chart the demo leaves in the current folder.
const CHART_FILE: &str = "tunewatch-demo-loss.png";

/// Maps an I/O failure of the demo to an error naming what it was doing.
fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source: std::io::Error| Error::Io {
        what: format!("demo: {what}"),
        source,
    }
}

/// Runs the demo and prints what happens.
///
/// # Errors
/// When a loopback port cannot be bound, the temporary folder cannot be written, or the daemon
/// fails.
pub async fn run() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(io("creating a temporary folder"))?;
    let jobs = scenario(unix_now());
    let settle = jobs
        .iter()
        .map(SimJob::settles_at)
        .max()
        .unwrap_or_default();
    let api = SimApi::start(jobs, API_KEY)
        .await
        .map_err(io("starting the simulated API"))?;
    let hook = Hook::start().await?;

    std::fs::write(dir.path().join("api.key"), API_KEY).map_err(io("writing the key file"))?;
    std::fs::write(dir.path().join("hook.secret"), &hook.secret)
        .map_err(io("writing the secret file"))?;
    std::fs::write(dir.path().join("cases.jsonl"), evaluation::cases_file())
        .map_err(io("writing the cases file"))?;
    let config_path = dir.path().join("config.toml");
    // A free loopback port for the status page (bound, read, released: the daemon binds it).
    let page_port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_err(io("finding a port for the status page"))?
        .port();
    let text = config_text(page_port, &api, hook.addr);
    std::fs::write(&config_path, text).map_err(io("writing the config"))?;
    let config = Config::load(&config_path)?;
    introduce(&api, hook.addr, &config, page_port, settle);

    let status_config = config.clone();
    let daemon = Daemon::new(config)?;
    let store = daemon.store().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async {
        let _ = stop_rx.await;
    }));
    settle_and_linger(&store, &api, settle, page_port).await?;
    let _ = stop_tx.send(());
    running.await.map_err(|e| Error::Io {
        what: "demo: the daemon task".into(),
        source: std::io::Error::other(e),
    })??;
    hook.server.abort();
    report(&store, &api, &hook.receiver, status_config).await
}

/// The webhook receiver: its signing secret, address and task.
struct Hook {
    secret: String,
    addr: std::net::SocketAddr,
    receiver: Arc<Receiver>,
    server: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start() -> Result<Self, Error> {
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
        let addr = listener.local_addr().map_err(io("binding the receiver"))?;
        let app = Router::new()
            .route("/hook", post(receive))
            .route("/chat", post(receiver::chat))
            .with_state(receiver.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            secret,
            addr,
            receiver,
            server,
        })
    }
}

/// The config the demo's daemon runs with.
fn config_text(page_port: u16, api: &SimApi, hook_addr: std::net::SocketAddr) -> String {
    let bedrock_base = format!("http://{}", api.addr);
    format!(
        r#"# Written by `tunewatch demo`.
[daemon]
state_db = "tunewatch.db"
listen = "127.0.0.1:{page_port}"

[[source]]
name = "demo"
kind = "openai"
api_base = "{api_base}"
api_key_file = "api.key"
poll_interval = "1s"
metrics_interval = "1s"
checkpoints = true
watch = ["fine_tuning", "batches", "models"]

[source.evaluate]
cases_file = "cases.jsonl"
max_cost_usd = 0.10
sample = 0
concurrency = 4

[[source]]
name = "bedrock"
kind = "bedrock"
api_base = "{bedrock_base}"
region = "us-east-1"
api_key_file = "api.key"
poll_interval = "1s"
idle_poll_interval = "1s"

[prices]
"gpt-4o-mini" = 3.00
"gpt-4.1-mini" = 5.00

[inference_prices]
"ft:gpt-4.1-mini" = {{ input = 0.80, output = 3.20 }}
"ft:gpt-4o-mini" = {{ input = 0.30, output = 1.20 }}
"gpt-4.1-mini" = {{ input = 0.40, output = 1.60 }}
"gpt-4o-mini" = {{ input = 0.15, output = 0.60 }}

[[notifier]]
name = "receiver"
kind = "webhook"
url = "http://{hook_addr}/hook"
secret_file = "hook.secret"
retry_initial = "1s"
retry_max = "5s"

[[notifier]]
name = "team-chat"
kind = "webhook"
format = "slack"
url = "http://{hook_addr}/chat"

[[route]]
events = ["fine_tuning.job.*", "batch.completed", "batch.failed", "batch.expired", "model.*"]
notifiers = ["receiver"]

# The team's chat hears of finished jobs, a few seconds' worth at a time in one message.
[[route]]
events = ["fine_tuning.job.succeeded"]
notifiers = ["team-chat"]
group_wait = "4s"
group_interval = "5s"
"#,
        api_base = api.api_base(),
    )
}

/// What the demo is about to show.
fn introduce(
    api: &SimApi,
    hook_addr: std::net::SocketAddr,
    config: &Config,
    page_port: u16,
    settle: Duration,
) {
    println!("tunewatch demo");
    println!("  simulated jobs API  {}", api.api_base());
    println!("  webhook receiver    http://{hook_addr}/hook (verifies every signature)");
    println!("  temporary database  {}", config.daemon.state_db.display());
    println!("  status page         http://127.0.0.1:{page_port}/ (open it in a browser)");
    println!("  4 jobs already exist; tunewatch records them on its first poll without");
    println!("  alerting (the baseline).");
    println!(
        "  Over the next {}s three new jobs appear and run, one fails, one is cancelled.",
        settle.as_secs()
    );
    println!("  Two of them train: alerts carry progress and losses, and one run overfits.");
    println!("  A batch of 5,000 requests runs beside them and completes, and a customization");
    println!("  job trains on (a simulated) AWS Bedrock, its final losses in its alert.");
    println!("  A sweep of four trials finishes within a second: the team chat gets one");
    println!("  message for the jobs that succeeded in those seconds, the webhook every event.");
    println!("  When the support fine-tune succeeds, 12 cases are asked of it and of its base");
    println!("  model, graded, and the verdict arrives as fine_tuning.job.evaluated.\n");
}

/// Lets every scripted step happen and be polled, waits for the outbox to drain, then keeps the
/// page up a while so a newcomer can look at it (Ctrl-C ends it sooner).
async fn settle_and_linger(
    store: &crate::store::Store,
    api: &SimApi,
    settle: Duration,
    page_port: u16,
) -> Result<(), Error> {
    let deadline = Instant::now() + settle + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pending = store
            .blocking(|s| {
                Ok(s.count(Table::PendingDeliveries)?
                    + s.count(Table::OpenEvaluations)?
                    + s.count(Table::HeldDeliveries)?)
            })
            .await?;
        let settled = api.elapsed() > settle + Duration::from_secs(2);
        if (settled && pending == 0) || Instant::now() > deadline {
            break;
        }
    }
    let linger = std::env::var("TUNEWATCH_DEMO_LINGER")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    if linger > 0 {
        println!(
            "\nThe status page stays up for {linger} s: http://127.0.0.1:{page_port}/ \
             (Ctrl-C to end now)"
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(linger)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    Ok(())
}

/// What arrived, what the database holds, and the loss chart of the run that overfitted.
async fn report(
    store: &crate::store::Store,
    api: &SimApi,
    receiver: &Receiver,
    status_config: Config,
) -> Result<(), Error> {
    let (accepted, attempts, rejected) = {
        let seen = receiver.seen.lock().unwrap_or_else(|p| p.into_inner());
        let attempts: u32 = seen.attempts.values().sum();
        (seen.accepted.len(), attempts, seen.rejected_signatures)
    };
    let snapshots = store.blocking(|s| s.count(Table::Snapshots)).await?;
    println!(
        "\n{accepted} alerts delivered in {attempts} attempts; {rejected} bad signatures;\n\
         {snapshots} snapshots stored for {} API requests.",
        api.requests()
    );
    println!("\nThe demo's daemon has stopped; what it left in its database:\n$ tunewatch status");
    let width = cli::terminal_width();
    print!(
        "{}",
        store
            .blocking(move |s| cli::status(s, &status_config, width))
            .await?
    );
    println!("$ tunewatch models");
    let now = unix_now();
    print!(
        "{}",
        store
            .blocking(move |s| cli::models::models(s, now, width))
            .await?
    );
    write_chart(store).await?;
    println!(
        "\nRun it for real: write a config (README.md, config/tunewatch.example.toml),\n\
         then `tunewatch check` and `tunewatch run`."
    );
    Ok(())
}

/// The loss chart of the run that overfitted, where the user is.
async fn write_chart(store: &crate::store::Store) -> Result<(), Error> {
    let chart_job = "ftjob-support";
    let found = store
        .blocking(move |s| {
            cli::metrics::find(s, chart_job, None).map_err(|e| match e {
                cli::metrics::MetricsError::Store(e) => e,
                other => crate::store::StoreError::Corrupt {
                    path: s.path().to_path_buf(),
                    message: other.to_string(),
                },
            })
        })
        .await?;
    let chart_path = std::path::Path::new(CHART_FILE);
    match cli::metrics::png(&found)
        .map_err(|e| e.to_string())
        .and_then(|png| std::fs::write(chart_path, png).map_err(|e| e.to_string()))
    {
        Ok(()) => println!(
            "\nThe loss chart of {chart_job} ({} metric points): ./{CHART_FILE}\n\
             (`tunewatch metrics JOB_ID --png FILE` draws it for any job).",
            found.series.len()
        ),
        Err(e) => println!("\nNo loss chart written to ./{CHART_FILE}: {e}"),
    }
    Ok(())
}
