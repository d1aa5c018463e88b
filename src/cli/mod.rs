//! The commands: one file per subcommand (its handler and the text it prints), the command line
//! (`args.rs`), and what they share — loading the config, opening the store read-only, logging,
//! and the failure that becomes an exit code (0 ok, 2 usage or config error, 1 anything else).
//! `main.rs` parses and maps the exit code.

pub mod args;
pub mod check;
pub mod daemon;
pub mod evaluate;
pub mod history;
pub mod metrics;
pub mod migrate;
pub mod models;
pub mod notify_test;
pub mod outbox;
pub mod silence;
mod status;
mod table;

pub use args::{Cli, Command, EvaluateArgs, OutboxAction, Output, SilenceAction};
pub use check::check;
pub use history::history;
pub use outbox::{outbox, outbox_json};
pub use status::{health_word, short_ago, status, status_json};
use table::{col, table};
pub use table::{cut, terminal_width};

use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, config_path};
use crate::store::Store;

/// A failure to report: the sentence and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn one(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        use crate::Error;
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

impl From<crate::config::ConfigError> for Failure {
    fn from(e: crate::config::ConfigError) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::one(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::one(format!("{e:#}"))
    }
}

/// Logs go to stderr: `$RUST_LOG`, else `filter`. Under journald (`$JOURNAL_STREAM`) without
/// timestamps of their own; colours only for a terminal; JSON lines when asked.
pub fn init_tracing(filter: &str, format: LogFormat) {
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

/// The config named by `--config`, `$TUNEWATCH_CONFIG` or the default path.
///
/// # Errors
/// [`Failure`] (exit 2) with the config's error.
pub fn load(flag: Option<PathBuf>) -> Result<Config, Failure> {
    Ok(Config::load(&config_path(flag))?)
}

/// Opens the database for a read-only command: nothing is created or changed.
///
/// # Errors
/// [`Failure`] when it cannot be opened.
pub fn open_store(config: &Config) -> Result<Store, Failure> {
    let password = config.state_db_password()?;
    Ok(Store::open_at(
        config.state_db.location(),
        password.as_ref(),
        true,
    )?)
}

/// "1 delivery", "2 deliveries".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs the command `cli` names; the exit code, or the failure to report.
///
/// # Errors
/// [`Failure`] with the sentence to print and the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match &cli.command {
        Command::Run | Command::Once => {}
        // The demo prints its own narrative; its logs would only repeat it.
        Command::Demo => init_tracing("error", LogFormat::Text),
        _ => init_tracing("warn", LogFormat::Text),
    }
    let config = cli.config;
    match cli.command {
        Command::Run => daemon::run(load(config)?).await,
        Command::Once => daemon::once(load(config)?).await,
        Command::Check { credentials_dir } => check::run(&load(config)?, credentials_dir),
        Command::Status { output } => status::run(&load(config)?, output),
        Command::Models { output } => models::run(&load(config)?, output),
        Command::History { job_id } => history::run(&load(config)?, &job_id),
        Command::Metrics {
            job_id,
            source,
            csv,
            png,
        } => metrics::run(&load(config)?, &job_id, source.as_deref(), csv, png),
        Command::Outbox {
            all,
            output,
            action,
        } => outbox::run(&load(config)?, all, output, action),
        Command::Silence { action } => silence::run(&load(config)?, action.clone()),
        Command::Evaluate(args) => evaluate::run(&load(config)?, args.clone()).await,
        Command::NotifyTest { notifier } => notify_test::run(load(config)?, &notifier).await,
        Command::Migrate {
            from,
            to,
            password_file,
        } => migrate::run(&from, &to, password_file),
        Command::Demo => {
            if config.is_some() {
                return Err(Failure {
                    code: 2,
                    message: "demo runs on its own simulated API with a config it writes itself, \
                              so --config is not used; to watch your own jobs: \
                              tunewatch --config PATH run"
                        .into(),
                });
            }
            crate::demo::run().await?;
            Ok(0)
        }
    }
}
