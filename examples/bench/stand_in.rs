//! The tests' stand-ins of the cloud and batch APIs, and the SigV4 verifier they use, shared
//! with the tests.

pub const API_KEY: &str = "sk-bench-cloud";

#[path = "../../tests/it/common/sigv4.rs"]
pub mod sigv4;

#[path = "../../tests/it/common/clouds.rs"]
mod clouds;

#[path = "../../tests/it/common/batch_apis.rs"]
pub mod batch_apis;

pub use clouds::*;
