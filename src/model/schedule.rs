//! Times of day in a time zone, for quiet hours and digests: whether an instant falls in a quiet
//! window and when that window ends, and the last and next time a daily digest is due. Pure:
//! every answer is a function of the instant given. Local times that do not exist (the hour
//! skipped when clocks go forward) are taken as the first instant after the gap; times that
//! happen twice (clocks going back) as the first of the two — jiff's "compatible" rule, the one
//! calendars use.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A weekly window of local time: from `from` to `to` on each of `days` (by the day it starts);
/// `to` at or before `from` ends on the next day.
#[derive(Debug, Clone)]
pub struct Window {
    pub tz: TimeZone,
    pub from: Time,
    pub to: Time,
    pub days: Vec<Weekday>,
}

/// A daily time, on some weekdays.
#[derive(Debug, Clone)]
pub struct Daily {
    pub tz: TimeZone,
    pub at: Time,
    pub days: Vec<Weekday>,
}

fn zoned(tz: &TimeZone, ms: i64) -> Option<Zoned> {
    Some(Timestamp::from_millisecond(ms).ok()?.to_zoned(tz.clone()))
}

fn at(tz: &TimeZone, day: Date, time: Time) -> Option<i64> {
    let z = day.to_datetime(time).to_zoned(tz.clone()).ok()?;
    Some(z.timestamp().as_millisecond())
}

fn on(days: &[Weekday], day: Date) -> bool {
    days.is_empty() || days.contains(&day.weekday())
}

impl Window {
    /// When the window `now_ms` falls in ends (unix ms); `None` outside every window.
    pub fn held_until(&self, now_ms: i64) -> Option<i64> {
        let today = zoned(&self.tz, now_ms)?.date();
        let crosses = self.to <= self.from;
        for start_day in [today.yesterday().ok()?, today] {
            if !on(&self.days, start_day) {
                continue;
            }
            let end_day = if crosses {
                start_day.tomorrow().ok()?
            } else {
                start_day
            };
            let (start, end) = (
                at(&self.tz, start_day, self.from)?,
                at(&self.tz, end_day, self.to)?,
            );
            if start <= now_ms && now_ms < end {
                return Some(end);
            }
        }
        None
    }
}

impl Daily {
    /// The latest time it was due at or before `now_ms` (within the last 8 days).
    pub fn last_due(&self, now_ms: i64) -> Option<i64> {
        let mut day = zoned(&self.tz, now_ms)?.date();
        for _ in 0..8 {
            if on(&self.days, day)
                && let Some(t) = at(&self.tz, day, self.at)
                && t <= now_ms
            {
                return Some(t);
            }
            day = day.yesterday().ok()?;
        }
        None
    }

    /// The next time it is due after `now_ms`.
    pub fn next_due(&self, now_ms: i64) -> Option<i64> {
        let mut day = zoned(&self.tz, now_ms)?.date();
        for _ in 0..8 {
            if on(&self.days, day)
                && let Some(t) = at(&self.tz, day, self.at)
                && t > now_ms
            {
                return Some(t);
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// "08:00 Europe/Berlin" for `ms` in `tz`.
pub fn local_time(tz: &TimeZone, name: &str, ms: i64) -> String {
    zoned(tz, ms).map_or_else(
        || "?".into(),
        |z| format!("{} {name}", z.strftime("%Y-%m-%d %H:%M")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn berlin_nights() -> Window {
        Window {
            tz: TimeZone::get("Europe/Berlin").unwrap(),
            from: Time::new(22, 0, 0, 0).unwrap(),
            to: Time::new(8, 0, 0, 0).unwrap(),
            days: Vec::new(),
        }
    }

    #[test]
    fn a_window_across_midnight_holds_until_its_end() {
        let w = berlin_nights();
        // 23:30 Berlin (CET, UTC+1) is 22:30 UTC; the window ends 08:00 Berlin = 07:00 UTC.
        assert_eq!(
            w.held_until(ms("2026-12-07T22:30:00Z")),
            Some(ms("2026-12-08T07:00:00Z"))
        );
        assert_eq!(
            w.held_until(ms("2026-12-08T03:00:00Z")),
            Some(ms("2026-12-08T07:00:00Z"))
        );
        assert_eq!(
            w.held_until(ms("2026-12-08T07:00:00Z")),
            None,
            "the end is open"
        );
        assert_eq!(w.held_until(ms("2026-12-08T12:00:00Z")), None);
    }

    #[test]
    fn daylight_saving_moves_the_end_in_utc() {
        let w = berlin_nights();
        // The night of 28–29 March 2026: clocks go forward at 02:00; 08:00 is CEST (UTC+2).
        assert_eq!(
            w.held_until(ms("2026-03-28T23:00:00Z")),
            Some(ms("2026-03-29T06:00:00Z"))
        );
        // The night of 24–25 October 2026: clocks go back at 03:00; 08:00 is CET (UTC+1).
        assert_eq!(
            w.held_until(ms("2026-10-24T21:00:00Z")),
            Some(ms("2026-10-25T07:00:00Z"))
        );
        // A window 02:00–03:00 on the night the hour does not exist is empty, not an error.
        let gap = Window {
            from: Time::new(2, 0, 0, 0).unwrap(),
            to: Time::new(3, 0, 0, 0).unwrap(),
            ..berlin_nights()
        };
        assert_eq!(gap.held_until(ms("2026-03-29T01:30:00Z")), None);
    }

    #[test]
    fn weekdays_pick_the_day_a_window_starts() {
        let w = Window {
            days: vec![Weekday::Friday],
            ..berlin_nights()
        };
        // Friday 11 December 2026, 23:00 Berlin: held; Saturday 23:00: not.
        assert!(w.held_until(ms("2026-12-11T22:00:00Z")).is_some());
        assert!(
            w.held_until(ms("2026-12-12T06:00:00Z")).is_some(),
            "Friday's night"
        );
        assert!(w.held_until(ms("2026-12-12T22:00:00Z")).is_none());
    }

    #[test]
    fn a_daily_time_is_due_once_a_day_in_its_zone() {
        let d = Daily {
            tz: TimeZone::get("America/New_York").unwrap(),
            at: Time::new(9, 0, 0, 0).unwrap(),
            days: Vec::new(),
        };
        // 09:00 New York in December is 14:00 UTC.
        assert_eq!(
            d.last_due(ms("2026-12-08T15:00:00Z")),
            Some(ms("2026-12-08T14:00:00Z"))
        );
        assert_eq!(
            d.last_due(ms("2026-12-08T13:00:00Z")),
            Some(ms("2026-12-07T14:00:00Z"))
        );
        assert_eq!(
            d.next_due(ms("2026-12-08T15:00:00Z")),
            Some(ms("2026-12-09T14:00:00Z"))
        );
        // Across the change of 8 March 2026, 09:00 is 13:00 UTC.
        assert_eq!(
            d.next_due(ms("2026-03-08T02:00:00Z")),
            Some(ms("2026-03-08T13:00:00Z"))
        );
    }
}
