//! The tests' stand-ins of the cloud APIs, and the SigV4 verifier they use, shared with the tests.

pub const API_KEY: &str = "sk-bench-cloud";

#[path = "../../tests/common/sigv4.rs"]
pub mod sigv4;

#[path = "../../tests/common/clouds.rs"]
mod clouds;

pub use clouds::*;
