//! Real parts for integration tests, all on loopback: an HTTP server playing the fine-tuning jobs
//! API (`api`: jobs change between polls, failures can be scripted), a webhook receiver that
//! checks Standard Webhooks signatures with its own HMAC code (`receiver`), a real SMTP server
//! (`smtp`), config files in temp dirs and the binary (`setup`), and `wait_until`, which waits
//! on a condition with a deadline instead of sleeping (`wait`).

#![allow(dead_code, unused_imports)]

pub mod api;
pub mod pg;
pub mod providers;
pub mod receiver;
pub mod setup;
pub mod smtp;
pub mod wait;

pub use api::*;
pub use pg::free_port;
pub use receiver::*;
pub use setup::*;
pub use wait::*;

pub const API_KEY: &str = "sk-test-SECRET-api-key-0123456789";
pub const HOOK_SECRET: &str = "whsec_dGVzdC1ob29rLXNlY3JldC1mb3ItdHVuZXdhdGNo";
