//! What the daemon knows about itself: source health, the liveness of its loops, and its
//! metrics. The loops write it; the HTTP server and systemd notifications read it. It depends on
//! nothing but the clock, so every part of the daemon can depend on it.

pub mod health;
pub mod liveness;
pub mod metrics;

pub use health::Health;
pub use liveness::{Beat, Liveness};
pub use metrics::Metrics;

/// What the daemon knows about itself, shared by its loops and the HTTP server.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub metrics: Metrics,
    pub health: Health,
    pub liveness: Liveness,
}
