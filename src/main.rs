//! The `tunewatch` command: argument parsing, logging set-up, signals and exit codes.
//! Exit codes: 0 ok, 2 usage or config error, 1 any other failure.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use tunewatch::config::{Config, LogFormat, Secret, config_path};
use tunewatch::notify::{Attempt, Notifier};
use tunewatch::store::Store;
use tunewatch::{Daemon, Error, commands, demo};

#[derive(Parser)]
#[command(
    name = "tunewatch",
    version,
    about = "Watches OpenAI fine-tuning jobs and delivers durable, signed alerts when they change"
)]
struct Cli {
    /// Config file [default: $TUNEWATCH_CONFIG, else /etc/tunewatch/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll, diff, deliver, until SIGTERM or SIGINT; SIGHUP reloads the config
    Run,
    /// Poll every source once, deliver what is due, then exit
    Once,
    /// Validate the config and the secrets it names
    Check {
        /// Read systemd credentials (`*_credential`) from this folder, as the unit will
        /// (`LoadCredential=`); default: $CREDENTIALS_DIRECTORY
        #[arg(long, value_name = "DIR")]
        credentials_dir: Option<PathBuf>,
    },
    /// Show whether a daemon is watching, the health of each source and the watched jobs
    Status {
        /// `text` (fits the terminal; $COLUMNS to choose the width) or `json` for scripts
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show the fine-tuned models of the sources that watch them, soonest retirement first
    Models {
        /// `text` (fits the terminal) or `json` for scripts
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Show a job's snapshots, field changes and events over time
    History {
        /// The job id, e.g. ftjob-abc123
        job_id: String,
    },
    /// Show a job's training metrics (losses, accuracies by step) and checkpoints
    Metrics {
        /// The job id, e.g. ftjob-abc123
        job_id: String,
        /// The source, when the job id is in several
        #[arg(long)]
        source: Option<String>,
        /// Print CSV (the series, then the checkpoints) instead of a table
        #[arg(long, conflicts_with = "png")]
        csv: bool,
        /// Write the loss chart to this PNG file
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
    },
    /// Show pending, failing and dead deliveries; `outbox retry` puts dead ones back
    Outbox {
        /// Include delivered rows too
        #[arg(long)]
        all: bool,
        /// `text` (fits the terminal) or `json` for scripts
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[command(subcommand)]
        action: Option<OutboxAction>,
    },
    /// Send a sample alert through one notifier now and report the outcome (the outbox is untouched)
    NotifyTest {
        /// The notifier's name in the config
        notifier: String,
    },
    /// Watch simulated jobs move through their lifecycle, with alerts shown — no key, no network
    Demo,
    /// Copy a SQLite database into a new PostgreSQL one (verified by row counts), to move to
    /// several daemons sharing PostgreSQL
    Migrate {
        /// The SQLite database; stop the daemon that uses it first
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// postgres://USER@HOST[:PORT]/DB[?sslmode=…], an empty database, no password in it
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file holding the PostgreSQL password [default: $PGPASSWORD]
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

/// How a read-only command prints.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Put dead deliveries back in the outbox, due now (a running daemon sends them within seconds)
    #[command(
        override_usage = "tunewatch outbox retry <ID>...\n       tunewatch outbox retry --all-dead"
    )]
    Retry {
        /// Outbox row ids, as `tunewatch outbox` shows them
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        ids: Vec<i64>,
        /// Every dead delivery
        #[arg(long)]
        all_dead: bool,
    },
}

/// A failure to report: the sentence and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::Config(_) => 2,
            Error::Store(_) | Error::Source(_) | Error::Io { .. } | Error::LoopEnded(_) => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<tunewatch::config::ConfigError> for Failure {
    fn from(e: tunewatch::config::ConfigError) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }
}

impl From<tunewatch::store::StoreError> for Failure {
    fn from(e: tunewatch::store::StoreError) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Logs go to stderr: `$RUST_LOG`, else `filter`. Under journald (`$JOURNAL_STREAM`) without
/// timestamps of their own; colours only for a terminal; JSON lines when asked.
fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match (format, journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: logging could not be set up: {e}");
    }
}

/// Logging for the daemon commands, from the config's `log_level` and `log_format`.
fn init_daemon_tracing(config: &Config) {
    init_tracing(
        config.daemon.log_level.as_deref().unwrap_or("info"),
        config.daemon.log_format,
    );
}

fn load(flag: Option<PathBuf>) -> Result<Config, Failure> {
    Ok(Config::load(&config_path(flag))?)
}

/// Opens the database for a read-only command: nothing is created or changed.
fn open_store(config: &Config) -> Result<Store, Failure> {
    let password = config.state_db_password()?;
    Ok(Store::open_state(
        &config.state_db,
        password.as_ref(),
        true,
    )?)
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Run | Command::Once => {}
        // The demo prints its own narrative; its logs would only repeat it.
        Command::Demo => init_tracing("error", LogFormat::Text),
        _ => init_tracing("warn", LogFormat::Text),
    }
    match cli.command {
        Command::Run => {
            let config = load(cli.config)?;
            init_daemon_tracing(&config);
            // Signal handlers first: a SIGTERM or SIGHUP that arrives while the daemon starts
            // must be heard, not end the process with the default action.
            let term = listen(tokio::signal::unix::SignalKind::terminate());
            let hup = listen(tokio::signal::unix::SignalKind::hangup());
            let daemon = Daemon::new(config)?;
            let (reload_tx, reloads) = tokio::sync::mpsc::channel(4);
            tokio::spawn(forward_sighup(hup, reload_tx));
            daemon
                .run_with_reload(shutdown_signal(term), reloads)
                .await?;
            Ok(0)
        }
        Command::Once => {
            let config = load(cli.config)?;
            init_daemon_tracing(&config);
            let daemon = Daemon::new(config)?;
            let report = daemon.once().await?;
            let sources = daemon.config().sources.len();
            let summary = format!(
                "{} raised, {} attempted",
                plural(report.events, "event", "events"),
                plural(report.attempted, "delivery", "deliveries"),
            );
            if report.failed_sources.is_empty() {
                println!("polled {}: {summary}", plural(sources, "source", "sources"));
                return Ok(0);
            }
            for (source, why) in &report.failed_sources {
                eprintln!("error: source {source:?}: {why}");
            }
            eprintln!(
                "{} of {} could not be polled; {summary}",
                report.failed_sources.len(),
                plural(sources, "source", "sources")
            );
            Ok(1)
        }
        Command::Check { credentials_dir } => {
            let config = load(cli.config)?;
            let (summary, errors) = commands::check(&config, credentials_dir.as_deref());
            print!("{summary}");
            for e in &errors {
                eprintln!("error: {e}");
            }
            Ok(if errors.is_empty() { 0 } else { 2 })
        }
        Command::Status { output } => {
            let config = load(cli.config)?;
            let store = open_store(&config)?;
            match output {
                Output::Text => print!(
                    "{}",
                    commands::status(&store, &config, commands::terminal_width())?
                ),
                Output::Json => println!("{:#}", commands::status_json(&store, &config)?),
            }
            Ok(0)
        }
        Command::Models { output } => {
            let store = open_store(&load(cli.config)?)?;
            let now = tunewatch::store::unix_now();
            match output {
                Output::Text => print!(
                    "{}",
                    commands::models::models(&store, now, commands::terminal_width())?
                ),
                Output::Json => println!("{:#}", commands::models::models_json(&store, now)?),
            }
            Ok(0)
        }
        Command::History { job_id } => {
            let store = open_store(&load(cli.config)?)?;
            match commands::history(&store, &job_id, commands::terminal_width())? {
                Some(text) => {
                    print!("{text}");
                    Ok(0)
                }
                None => Err(Failure {
                    code: 1,
                    message: format!("job {job_id} is not in {}", store.path().display()),
                }),
            }
        }
        Command::Metrics {
            job_id,
            source,
            csv,
            png,
        } => {
            let config = load(cli.config)?;
            let store = open_store(&config)?;
            let found =
                commands::metrics::find(&store, &job_id, source.as_deref()).map_err(|e| {
                    Failure {
                        code: 1,
                        message: e.to_string(),
                    }
                })?;
            if let Some(path) = png {
                let bytes = commands::metrics::png(&found).map_err(|e| Failure {
                    code: 1,
                    message: format!("no chart for job {}: {e}", found.job_id),
                })?;
                std::fs::write(&path, bytes).map_err(|e| Failure {
                    code: 1,
                    message: format!("cannot write {}: {e}", path.display()),
                })?;
                println!(
                    "wrote the loss chart of {} ({} points) to {}",
                    found.job_id,
                    found.series.len(),
                    path.display()
                );
            } else if csv {
                print!("{}", commands::metrics::csv(&found));
            } else {
                print!(
                    "{}",
                    commands::metrics::text(&found, &config.prices, commands::terminal_width())
                );
            }
            Ok(0)
        }
        Command::Outbox {
            all,
            output,
            action,
        } => {
            let config = load(cli.config)?;
            let store = open_store(&config)?;
            match action {
                None if output == Output::Json => {
                    println!("{:#}", commands::outbox_json(&store, all)?)
                }
                None => print!(
                    "{}",
                    commands::outbox(
                        &store,
                        all,
                        config.notifiers.len(),
                        commands::terminal_width()
                    )?
                ),
                Some(OutboxAction::Retry { ids, all_dead }) => {
                    if !all_dead {
                        // Every id must be a dead delivery, or nothing is put back.
                        let rows = store.outbox_rows(true)?;
                        let wrong: Vec<String> = ids
                            .iter()
                            .filter_map(|id| match rows.iter().find(|r| r.id == *id) {
                                None => Some(format!("{id} is not in the outbox")),
                                Some(r) if r.state != "dead" => {
                                    Some(format!("{id} is {}, not dead", r.state))
                                }
                                Some(_) => None,
                            })
                            .collect();
                        if !wrong.is_empty() {
                            return Err(Failure {
                                code: 1,
                                message: format!(
                                    "nothing put back: {} (`tunewatch outbox` lists the dead ones)",
                                    wrong.join("; ")
                                ),
                            });
                        }
                    }
                    // The one command that writes: reopen the configured store read-write
                    // (a file known to be tunewatch's by now, or the PostgreSQL database itself).
                    drop(store);
                    let password = config.state_db_password()?;
                    let store = Store::open_state(&config.state_db, password.as_ref(), false)?;
                    let wanted = if all_dead { None } else { Some(ids.as_slice()) };
                    let n = store.revive(wanted, tunewatch::store::unix_now_ms())?;
                    println!(
                        "{} put back in the outbox, due now",
                        plural(n, "dead delivery", "dead deliveries")
                    );
                }
            }
            Ok(0)
        }
        Command::NotifyTest { notifier } => notify_test(load(cli.config)?, &notifier).await,
        Command::Migrate {
            from,
            to,
            password_file,
        } => {
            let password = match password_file {
                Some(path) => Some(Secret::new(
                    std::fs::read_to_string(&path)
                        .map_err(|e| Failure {
                            code: 2,
                            message: format!("cannot read --password-file {}: {e}", path.display()),
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                )),
                None => std::env::var("PGPASSWORD").ok().map(Secret::new),
            };
            let report =
                commands::migrate::migrate(&from, &to, password.as_ref()).map_err(|e| Failure {
                    code: if e.usage { 2 } else { 1 },
                    message: e.message,
                })?;
            print!("{report}");
            Ok(0)
        }
        Command::Demo => {
            if cli.config.is_some() {
                return Err(Failure {
                    code: 2,
                    message: "demo runs on its own simulated API with a config it writes itself, \
                              so --config is not used; to watch your own jobs: \
                              tunewatch --config PATH run"
                        .into(),
                });
            }
            demo::run().await?;
            Ok(0)
        }
    }
}

/// `notify-test`: renders a sample event and sends it through one notifier, synchronously.
async fn notify_test(config: Config, name: &str) -> Result<u8, Failure> {
    let Some(n) = config.notifier(name) else {
        let names: Vec<&str> = config.notifiers.iter().map(|n| n.name.as_str()).collect();
        return Err(Failure {
            code: 2,
            message: format!(
                "{} has no notifier named {name:?} (it has: {})",
                config.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
    };
    let notifier = Notifier::from_config(n)?;
    let event = tunewatch::notify::sample_event(tunewatch::store::unix_now());
    let destination = match &notifier {
        Notifier::Webhook(w) => format!("webhook {}", w.shown_url()),
        Notifier::Email(e) => format!("e-mail to {}", e.recipients()),
    };
    println!(
        "sending a sample {} ({}) through notifier {name:?}: {destination}",
        event.event_type, event.id
    );
    match notifier.deliver(&event, event.created_at, None).await {
        Attempt::Delivered { status } => {
            let status = status
                .map(|s| format!(" (answered {s})"))
                .unwrap_or_default();
            println!("delivered{status}");
            Ok(0)
        }
        Attempt::Failed { error, .. } => Err(Failure {
            code: 1,
            message: format!("notifier {name:?}: {error}"),
        }),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A handler for `kind`, installed now (not when first awaited).
fn listen(kind: tokio::signal::unix::SignalKind) -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
}

/// Completes on SIGTERM (through `term`, installed at start) or SIGINT.
async fn shutdown_signal(term: std::io::Result<tokio::signal::unix::Signal>) {
    let mut term = match term {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stop with SIGINT or SIGKILL");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Turns every SIGHUP (through `hup`, installed at start) into a reload request.
async fn forward_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    reloads: tokio::sync::mpsc::Sender<()>,
) {
    match hup {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received; reloading the config");
                if reloads.send(()).await.is_err() {
                    return;
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP; reload by restarting"),
    }
}
