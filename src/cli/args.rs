//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tunewatch",
    version,
    about = "Watches fine-tuning jobs, batches and fine-tuned models on every provider, and delivers durable, signed alerts when they change"
)]
pub struct Cli {
    /// Config file [default: $TUNEWATCH_CONFIG, else /etc/tunewatch/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Evaluate a job's new model against its baseline (as the daemon does when the job
    /// succeeds), or one model against another with --model, --against and --cases
    Evaluate(EvaluateArgs),
    /// Silence alerts for a while: add, list or expire silences (kept in the database, so every
    /// daemon on it honours them at once)
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
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
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum OutboxAction {
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

/// `tunewatch evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// The source whose `[source.evaluate]` settings and key are used
    #[arg(required_unless_present = "model")]
    pub source: Option<String>,
    /// The job whose model is evaluated, e.g. ftjob-abc123
    #[arg(required_unless_present = "model")]
    pub job_id: Option<String>,
    /// Print the cases, models and estimated cost, and ask nothing
    #[arg(long)]
    pub estimate: bool,
    /// Run again even when this job was evaluated with these cases
    #[arg(long)]
    pub again: bool,
    /// Compare this model (e.g. a retiring one's replacement) ...
    #[arg(long, requires_all = ["against", "cases"], conflicts_with_all = ["job_id", "again"])]
    pub model: Option<String>,
    /// ... with this one
    #[arg(long, requires = "model")]
    pub against: Option<String>,
    /// The cases file (JSONL) for --model
    #[arg(long, requires = "model")]
    pub cases: Option<PathBuf>,
    /// With --model: the cost cap in USD, when the source has no [source.evaluate]
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
}

/// `tunewatch silence …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SilenceAction {
    /// Silence the events that match every condition given, for a time
    Add {
        #[arg(long)]
        source: Option<String>,
        /// A job or batch id
        #[arg(long)]
        job: Option<String>,
        /// A model id prefix (a job's base or fine-tuned model)
        #[arg(long)]
        model: Option<String>,
        /// An event type, or a pattern ending in * ("fine_tuning.job.*")
        #[arg(long)]
        event: Option<String>,
        /// How long: "1h", "8h", "2d" (at most daemon.max_silence)
        #[arg(
            long = "for",
            value_name = "DURATION",
            conflicts_with = "until",
            required_unless_present = "until"
        )]
        for_: Option<String>,
        /// Until when: "2026-12-24T08:00:00Z", or "2026-12-24 08:00" (UTC)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why, for whoever reads `silence list`
        #[arg(long)]
        comment: String,
    },
    /// The silences in force or to come (--all: ended and expired ones too)
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now (what it silenced stays silenced: nothing is replayed)
    Expire { id: i64 },
}
