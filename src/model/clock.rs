//! Time, injectable: the one clock that stamps polls, events and deliveries. The scheduler and
//! the dispatcher both read it, so a test can move time (to make a job stall, or a delivery fall
//! due) without waiting.

use std::fmt;
use std::sync::Arc;

/// Unix seconds now, by the system clock (where no injected [`Clock`] is at hand).
pub fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// Unix milliseconds now, by the system clock.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix time in milliseconds, from the system or from a test.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }))
    }

    /// A clock that reads `now_ms` (unix milliseconds).
    pub fn from_fn(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now_ms))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_when_told() {
        let at = Arc::new(std::sync::atomic::AtomicI64::new(1_000_500));
        let read = at.clone();
        let clock = Clock::from_fn(move || read.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!((clock.now(), clock.now_ms()), (1000, 1_000_500));
        at.store(7_200_000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(clock.now(), 7200);
    }
}
