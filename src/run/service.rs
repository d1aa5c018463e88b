//! Life under systemd: `sd_notify` messages (READY, STATUS, RELOADING, STOPPING, WATCHDOG).
//! Whether a `WATCHDOG=1` may be sent is [`crate::telemetry::liveness`]'s decision. Outside
//! systemd (no `$NOTIFY_SOCKET`) every message is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// The connection to systemd's notify socket, if there is one.
#[derive(Debug, Clone)]
pub struct Systemd {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Systemd {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (which, when set, must be ours).
    pub fn from_env() -> Systemd {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let pid_ok = std::env::var("WATCHDOG_PID")
            .map(|p| p.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok && enabled)
            .map(Duration::from_micros);
        Systemd { enabled, watchdog }
    }

    /// The watchdog interval systemd expects pings within, when it runs one.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to refresh the status line (and ping the watchdog): `most`, or half the
    /// watchdog interval when that is shorter.
    pub fn status_every(&self, most: Duration) -> Duration {
        self.watchdog.map_or(most, |w| (w / 2).min(most))
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, states)
        {
            tracing::warn!(error = %e, "cannot send a notification to systemd");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1`, before a new config is applied.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(m) = NotifyState::monotonic_usec_now() {
            states.push(m);
        }
        self.send(&states);
    }

    /// `STOPPING=1`, when shutdown begins.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the daemon's loops are alive.
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}
