//! tunewatch watches fine-tuning jobs and batches (OpenAI, Azure OpenAI, Mistral, Together) and
//! delivers durable, signed alerts when they change.
//!
//! # Layout
//!
//! Rooms on floors, each importing only from the floors below it (the README's layout table
//! says what each owns and must not import):
//!
//! ```text
//! cli ─ http ─ run          the commands; what answers HTTP; the loops and the daemon
//!        │     │
//!     notify  source  store  the notifiers and renderings; the providers; persistence
//!        │     │       │
//!     pipeline · insight     pure decisions: diff, classification, training insight
//!        │
//!      model                 the vocabulary: jobs, statuses, events, kinds, clock, inert
//! ```
//!
//! * [`model`]: the vocabulary, importing nothing of the crate.
//! * [`pipeline`]: pure decisions (the diff, which events a change raises).
//! * [`insight`]: training insight — metric series, analysis, the `insight` object, the chart.
//! * [`config`]: the TOML file, validated, with secrets named but not printed.
//! * [`source`]: one client per provider (and batches, and model lists) over a shared HTTP core.
//! * [`store`]: SQLite or PostgreSQL — migrations, snapshots, events, outbox, the leader's lease;
//!   the only place with SQL.
//! * [`notify`]: the notifiers (webhook, e-mail) and rendering.
//! * [`run`]: the loops (poller, dispatcher, refresher, insight reader, model watch, leader) and
//!   the daemon that starts, reloads and stops them.
//! * [`http`]: the listener (`/healthz`, `/metrics`), OpenAI's webhooks, the status page.
//! * [`telemetry`]: health, the loops' liveness (watchdog) and metrics.
//! * [`cli`]: one file per command (`status`, `history`, `outbox`, `check`, `metrics`,
//!   `models`) and `migrate`.
//! * [`demo`]: the self-contained demo, its scenario, receiver and simulated APIs.
//!
//! [`Daemon::run`] takes its shutdown signal (and [`Daemon::run_with_reload`] its reload requests)
//! as parameters: `main` passes SIGTERM/SIGINT and SIGHUP, tests pass channels.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod demo;
pub mod evaluate;
pub mod http;
pub mod insight;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod run;
pub mod source;
pub mod store;
pub mod telemetry;

// The vocabulary's old addresses, kept for the rest of the crate and for the tests.
pub use http::web;
pub use model::{clock, event, inert};
pub use pipeline::diff;
pub use run::daemon;
pub use run::{dispatcher as dispatch, leader, poller as scheduler, service};

pub use daemon::{Daemon, Error, OnceReport};
