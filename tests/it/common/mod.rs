//! Real parts for integration tests, all on loopback: an HTTP server playing the fine-tuning jobs
//! API (`api`: jobs change between polls, failures can be scripted), a webhook receiver that
//! checks Standard Webhooks signatures with its own HMAC code (`receiver`), a real SMTP server
//! (`smtp`), config files in temp dirs and the binary (`setup`), and `wait_until`, which waits
//! on a condition with a deadline instead of sleeping (`wait`).

#![allow(dead_code, unused_imports)]

pub mod api;
pub mod batch_apis;
pub mod chat;
pub mod clouds;
pub mod pg;
pub mod providers;
pub mod receiver;
pub mod setup;
pub mod sigv4;
pub mod smtp;
pub mod telegram;
pub mod wait;

pub use api::*;
pub use pg::free_port;
pub use receiver::*;
pub use setup::*;
pub use wait::*;

pub const API_KEY: &str = "sk-test-SECRET-api-key-0123456789";
pub const HOOK_SECRET: &str = "whsec_dGVzdC1ob29rLXNlY3JldC1mb3ItdHVuZXdhdGNo";

/// The first of `names` that runs (`NAME --version` succeeds), for a test that needs a program a
/// fresh machine may lack. Without it the test is skipped with one line saying how to get it —
/// unless `CI=true`, where every test must run and a missing program fails it.
pub fn require_program(names: &[&'static str], what: &str, install: &str) -> Option<&'static str> {
    let found = names.iter().copied().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} needs {} and CI=true: {install}",
            names[0]
        );
        // Straight to the process's stderr: the test harness captures `eprintln!`, and this
        // line is for the person running `cargo test`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped {what}: {} is not installed ({install})",
            names[0]
        );
    }
    found
}
