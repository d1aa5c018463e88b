//! The integration tests, one binary: each module is one area (its own file), all sharing the
//! real parts in `common` (stand-in APIs, a webhook receiver, an SMTP server, one throwaway
//! PostgreSQL server per run, the binary under test). `cargo test --test it NAME::` runs one area.

mod common;

mod alerting;
mod batch_kinds;
mod batches;
mod bounded;
mod channels;
mod chaos;
mod cli;
mod clouds;
mod email;
mod evaluations;
mod failover;
mod faults;
mod first_hour;
mod golden;
mod hostile;
mod insight;
mod layout;
mod migrate;
mod models;
mod numbers;
mod pipeline;
mod polling;
mod properties;
mod providers;
mod service;
mod shared_store;
mod web;
mod webhook_floods;
mod webhooks;
