//! tunewatch watches fine-tuning jobs and batches (OpenAI, Azure OpenAI, Mistral, Together) and
//! delivers durable, signed alerts when they change.
//!
//! # Layout
//!
//! The modules follow the pipeline of DESIGN.md:
//!
//! ```text
//! scheduler ──tick──▶ source (HTTP API client) ──jobs──▶ store.observe_poll
//!                                                         │ one transaction: snapshots (only if
//!                                                         │ changed) + diff + events + outbox rows
//!                                                         ▼
//!                               dispatch ◀── due outbox rows ── store (outbox)
//!                                   └─▶ notify (webhook, e-mail, Slack, Discord)
//! intake (OpenAI's webhooks) ──refresh request──▶ scheduler.refresh ──one job──▶ store.observe_poll
//! ```
//!
//! * [`config`]: the TOML file, validated, with secrets named but not printed.
//! * [`source`]: the job model and one client per provider (and batches) over a shared HTTP core.
//! * [`store`]: SQLite or PostgreSQL behind one interface — migrations, snapshots, events, outbox,
//!   the leader's lease; the only place with SQL.
//! * [`leader`]: on a shared (PostgreSQL) store, the lease loop: who polls.
//! * [`diff`]: pure field-level diff and event classification.
//! * [`event`]: the event envelope that receivers get.
//! * [`scheduler`]: one polling loop per source.
//! * [`lifecycle`]: the fine-tuned models of a source and when they retire.
//! * [`clock`]: the injectable clock the scheduler and the dispatcher share.
//! * [`dispatch`]: the outbox loop and its retry policy.
//! * [`notify`]: the notifiers (webhook, e-mail) and rendering.
//! * [`daemon`]: the running daemon — its loops, reloads and shutdown.
//! * [`service`]: systemd notifications.
//! * [`telemetry`]: health, the loops' liveness (watchdog) and metrics.
//! * [`http`]: `/healthz` and `/metrics`.
//! * [`intake`]: OpenAI's webhooks: verify, record, answer; the refresher.
//! * [`web`]: the status page and its JSON (`/`, `/jobs/…`, `/api/…`).
//! * [`insight`]: training insight — metric series, analysis, the `insight` object, the chart.
//! * [`inert`]: the limits, redaction and escaping applied to everything from outside.
//! * [`demo`]: the self-contained demo, its scenario, receiver and simulated jobs API.
//! * [`commands`]: the text of the read-only commands (`status`, `history`, `outbox`, `check`,
//!   `metrics`) and `migrate`.
//!
//! [`Daemon::run`] takes its shutdown signal (and [`Daemon::run_with_reload`] its reload requests)
//! as parameters: `main` passes SIGTERM/SIGINT and SIGHUP, tests pass channels.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod diff;
pub mod dispatch;
pub mod http;
pub mod insight;
pub mod intake;
pub mod leader;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod scheduler;
pub mod service;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod web;

// The vocabulary's old addresses, kept for the rest of the crate and for the tests.
pub use model::{clock, event, inert};

pub use daemon::{Daemon, Error, OnceReport};
