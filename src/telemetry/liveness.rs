//! The liveness of the daemon's loops, which decides whether a `WATCHDOG=1` may be sent.
//!
//! Every loop registers a [`Beat`] and marks itself busy while it works, refreshing the mark at
//! each step of progress (a page fetched, a delivery attempted). A loop busy without progress for
//! longer than the watchdog interval is stuck: no more `WATCHDOG=1` is sent, and systemd restarts
//! the service.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::unix_now_ms;

/// One loop's liveness: 0 while idle (waiting is not being stuck), else when it last progressed.
#[derive(Debug)]
pub struct Beat {
    pub name: String,
    busy_since_ms: AtomicI64,
}

impl Beat {
    pub fn new(name: impl Into<String>) -> Arc<Beat> {
        Arc::new(Beat {
            name: name.into(),
            busy_since_ms: AtomicI64::new(0),
        })
    }

    /// Marks work in progress, or progress within it.
    pub fn busy(&self) {
        self.busy_since_ms
            .store(unix_now_ms().max(1), Ordering::Relaxed);
    }

    /// Marks the loop as waiting.
    pub fn idle(&self) {
        self.busy_since_ms.store(0, Ordering::Relaxed);
    }
}

/// The loops of the running daemon.
#[derive(Debug, Default)]
pub struct Liveness {
    beats: Mutex<Vec<Arc<Beat>>>,
}

impl Liveness {
    /// Replaces the watched loops (at start, and when a reload starts new ones).
    pub fn set(&self, beats: Vec<Arc<Beat>>) {
        *self.lock() = beats;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Beat>>> {
        // The vector stays consistent whatever panicked while it was locked.
        self.beats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first loop busy without progress for longer than `limit` at `now_ms`, if any.
    pub fn stuck_at(&self, now_ms: i64, limit: Duration) -> Option<String> {
        let limit = limit.as_millis() as i64;
        self.lock()
            .iter()
            .find(|b| {
                let since = b.busy_since_ms.load(Ordering::Relaxed);
                since != 0 && now_ms - since > limit
            })
            .map(|b| b.name.clone())
    }

    /// [`Liveness::stuck_at`] now.
    pub fn stuck(&self, limit: Duration) -> Option<String> {
        self.stuck_at(unix_now_ms(), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_is_stuck_only_when_busy_without_progress_for_too_long() {
        let l = Liveness::default();
        let (poll, deliver) = (Beat::new("poll prod"), Beat::new("deliver"));
        l.set(vec![poll.clone(), deliver.clone()]);
        let now = unix_now_ms();
        let limit = Duration::from_secs(10);
        assert_eq!(l.stuck_at(now + 60_000, limit), None, "idle loops are fine");
        poll.busy();
        deliver.busy();
        assert_eq!(l.stuck_at(now + 5_000, limit), None);
        deliver.idle();
        assert_eq!(
            l.stuck_at(now + 60_000, limit).as_deref(),
            Some("poll prod")
        );
        l.set(Vec::new());
        assert_eq!(l.stuck_at(now + 60_000, limit), None);
    }
}
