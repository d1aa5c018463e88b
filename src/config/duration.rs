//! Durations in the config: `"90s"`, `"5m"`, `"6h"`, and the range each duration key accepts.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A duration written as `"90s"`, `"5m"`, `"6h"` or `"1h 30m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}; write it like \"90s\", \"5m\" or \"6h\""
                ))
            })
    }
}

/// Every duration key with its documented range (inclusive): `check` and `run` refuse a value
/// outside it, so no absurd duration reaches a timer.
pub const DURATION_RANGES: &[(&str, Duration, Duration)] = &[
    (
        "leader_lease",
        Duration::from_secs(3),
        Duration::from_secs(300),
    ),
    (
        "claim_lease",
        Duration::from_secs(5),
        Duration::from_secs(3600),
    ),
    (
        "poll_interval",
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    ),
    (
        "idle_poll_interval",
        Duration::from_millis(100),
        Duration::from_secs(7 * 24 * 3600),
    ),
    (
        "metrics_interval",
        Duration::from_secs(1),
        Duration::from_secs(3600),
    ),
    (
        "models_interval",
        Duration::from_secs(60),
        Duration::from_secs(7 * 24 * 3600),
    ),
    (
        "retire_warn",
        Duration::from_secs(3600),
        Duration::from_secs(365 * 24 * 3600),
    ),
    (
        "stall_after",
        Duration::from_secs(1),
        Duration::from_secs(365 * 24 * 3600),
    ),
    (
        "full_scan_every",
        Duration::from_millis(100),
        Duration::from_secs(30 * 24 * 3600),
    ),
    (
        "connect_timeout",
        Duration::from_millis(100),
        Duration::from_secs(300),
    ),
    (
        "request_timeout",
        Duration::from_millis(100),
        Duration::from_secs(3600),
    ),
    (
        "timeout",
        Duration::from_millis(100),
        Duration::from_secs(600),
    ),
    (
        "retry_initial",
        Duration::from_millis(100),
        Duration::from_secs(3600),
    ),
    (
        "retry_max",
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    ),
    (
        "give_up_after",
        Duration::from_secs(1),
        Duration::from_secs(30 * 24 * 3600),
    ),
];
