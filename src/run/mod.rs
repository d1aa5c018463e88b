//! The loops, and the daemon that starts and stops them: one poller per source, the
//! dispatcher of the outbox, the refresher of webhooks, the insight reader, the model watch,
//! the leader's lease, and systemd's notifications.

pub mod alerting;
pub mod daemon;
mod dispatch_groups;
pub mod dispatcher;
pub mod evaluator;
mod generation;
pub mod insight_follow;
pub mod insight_reader;
pub mod leader;
pub mod models;
pub mod poller;
mod poller_reads;
mod poller_walk;
pub mod refresher;
pub mod service;
