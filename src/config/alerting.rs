//! Fewer, better alerts in the config (DESIGN.md, "Fewer, better alerts"): `[[quiet_hours]]`,
//! `[[digest]]`, and a route's grouping, quiet hours, bypass and reminders, checked with the line
//! of a bad key. Time zones are IANA names, resolved when the config loads.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::raw::RouteConfig;
use super::validate::Validator;
use super::{ConfigError, Dur};
use crate::model::schedule::{Daily, Window};

/// `[[quiet_hours]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    pub name: String,
    /// An IANA zone, required: `"Europe/Berlin"`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `"22:00"`.
    pub from: String,
    /// `"08:00"`; at or before `from`, the window ends the next day.
    pub to: String,
    /// Days a window starts on (`"mon"` … `"sun"`); every day when absent.
    #[serde(default)]
    pub days: Vec<String>,
}

/// `[[digest]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub name: String,
    pub notifiers: Vec<String>,
    /// `"09:00"`, in `time_zone`.
    pub at: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub days: Vec<String>,
    /// Sources covered; all when absent.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Send nothing when nothing happened.
    #[serde(default = "yes")]
    pub skip_empty: bool,
}

fn yes() -> bool {
    true
}

/// A named quiet window.
#[derive(Debug, Clone)]
pub struct QuietHours {
    pub name: String,
    pub zone: String,
    pub window: Window,
}

/// A daily digest.
#[derive(Debug, Clone)]
pub struct Digest {
    pub name: String,
    pub notifiers: Vec<String>,
    pub zone: String,
    pub daily: Daily,
    pub sources: Option<Vec<String>>,
    pub skip_empty: bool,
}

/// `"HH:MM"`.
fn time_of(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// What `group_by` may name.
fn groupable(key: &str) -> bool {
    matches!(key, "source" | "type" | "status" | "model" | "job")
        || key.strip_prefix("metadata.").is_some_and(|k| !k.is_empty())
}

impl Validator<'_> {
    /// A zone, a time and days of the `i`-th `[[table]]`.
    fn when(
        &self,
        table: &str,
        i: usize,
        zone: Option<&str>,
        times: &[(&str, &str)],
        days: &[String],
    ) -> Result<(TimeZone, Vec<Time>, Vec<Weekday>), ConfigError> {
        let zone = zone.filter(|z| !z.trim().is_empty()).ok_or_else(|| {
            self.at(
                table,
                i,
                "time_zone",
                "`time_zone` is required: an IANA name such as \"Europe/Berlin\"".into(),
            )
        })?;
        let tz = TimeZone::get(zone).map_err(|_| {
            self.at(
                table,
                i,
                "time_zone",
                if std::path::Path::new("/usr/share/zoneinfo").is_dir() {
                    format!(
                        "unknown time zone {zone:?} (an IANA name such as \"America/New_York\")"
                    )
                } else {
                    format!(
                        "time zone {zone:?} cannot be read: this system has no time zone \
                         database (/usr/share/zoneinfo; install tzdata)"
                    )
                },
            )
        })?;
        let mut parsed = Vec::new();
        for (key, value) in times {
            parsed.push(time_of(value).ok_or_else(|| {
                self.at(
                    table,
                    i,
                    key,
                    format!("{key} {value:?} is not a time like \"22:00\""),
                )
            })?);
        }
        let mut weekdays = Vec::new();
        for d in days {
            weekdays.push(weekday(d).ok_or_else(|| {
                self.at(table, i, "days", format!("{d:?} is not a day (mon … sun)"))
            })?);
        }
        Ok((tz, parsed, weekdays))
    }

    /// Every `[[quiet_hours]]`, checked.
    pub(super) fn quiet_hours(&self) -> Result<Vec<QuietHours>, ConfigError> {
        let mut out: Vec<QuietHours> = Vec::new();
        for (i, q) in self.file.quiet_hours.iter().enumerate() {
            self.name("quiet_hours", i, &q.name)?;
            if out.iter().any(|o| o.name == q.name) {
                return Err(self.at(
                    "quiet_hours",
                    i,
                    "name",
                    format!("duplicate name {:?}", q.name),
                ));
            }
            let (tz, times, days) = self.when(
                "quiet_hours",
                i,
                q.time_zone.as_deref(),
                &[("from", &q.from), ("to", &q.to)],
                &q.days,
            )?;
            out.push(QuietHours {
                name: q.name.clone(),
                zone: q.time_zone.clone().unwrap_or_default(),
                window: Window {
                    tz,
                    from: times[0],
                    to: times[1],
                    days,
                },
            });
        }
        Ok(out)
    }

    /// Every `[[digest]]`, checked.
    pub(super) fn digests(&self) -> Result<Vec<Digest>, ConfigError> {
        let mut out: Vec<Digest> = Vec::new();
        for (i, d) in self.file.digests.iter().enumerate() {
            self.name("digest", i, &d.name)?;
            if out.iter().any(|o| o.name == d.name) {
                return Err(self.at("digest", i, "name", format!("duplicate name {:?}", d.name)));
            }
            let (tz, times, days) = self.when(
                "digest",
                i,
                d.time_zone.as_deref(),
                &[("at", &d.at)],
                &d.days,
            )?;
            if d.notifiers.is_empty() {
                return Err(self.at("digest", i, "notifiers", "a digest needs notifiers".into()));
            }
            for n in &d.notifiers {
                if !self.file.notifiers.iter().any(|x| x.name == *n) {
                    return Err(self.at(
                        "digest",
                        i,
                        "notifiers",
                        format!("digest names notifier {n:?}, which is not defined"),
                    ));
                }
            }
            out.push(Digest {
                name: d.name.clone(),
                notifiers: d.notifiers.clone(),
                zone: d.time_zone.clone().unwrap_or_default(),
                daily: Daily {
                    tz,
                    at: times[0],
                    days,
                },
                sources: d.sources.clone(),
                skip_empty: d.skip_empty,
            });
        }
        Ok(out)
    }

    /// A route's grouping, quiet hours and reminders.
    pub(super) fn route_alerting(&self, i: usize, r: &RouteConfig) -> Result<(), ConfigError> {
        for key in &r.group_by {
            if !groupable(key) {
                return Err(self.at(
                    "route",
                    i,
                    "group_by",
                    format!(
                        "cannot group by {key:?} (source, type, status, model, job, metadata.KEY)"
                    ),
                ));
            }
        }
        if r.group_wait.0.as_secs() > 3600 {
            return Err(self.at("route", i, "group_wait", "group_wait is above 1h".into()));
        }
        if !(1..=1000).contains(&r.group_max_items) {
            return Err(self.at(
                "route",
                i,
                "group_max_items",
                "group_max_items is outside 1..=1000".into(),
            ));
        }
        let every = r.remind_every.0.as_secs();
        if every != 0 && !(900..=30 * 86_400).contains(&every) {
            return Err(self.at(
                "route",
                i,
                "remind_every",
                "remind_every is \"0s\" (off) or between 15m and 30d".into(),
            ));
        }
        for q in &r.quiet_hours {
            if !self.file.quiet_hours.iter().any(|x| x.name == *q) {
                return Err(self.at(
                    "route",
                    i,
                    "quiet_hours",
                    format!("route names quiet hours {q:?}, which are not defined"),
                ));
            }
        }
        for e in &r.quiet_bypass {
            if let Err(message) = super::event_names::known_event_pattern(e) {
                return Err(self.at("route", i, "quiet_bypass", message));
            }
        }
        let notifier_events = r
            .events
            .iter()
            .any(|e| super::raw::event_matches(e, "tunewatch.notifier.failing"));
        if notifier_events && r.notifiers.len() == 1 && self.file.notifiers.len() == 1 {
            return Err(self.at(
                "route",
                i,
                "notifiers",
                format!(
                    "this route sends tunewatch.notifier.* only to {:?}, the only notifier: its \
                     own failure can never go through itself; add another notifier",
                    r.notifiers[0]
                ),
            ));
        }
        Ok(())
    }
}

/// `max_silence`'s default.
pub(super) fn default_max_silence() -> Dur {
    Dur::secs(30 * 86_400)
}
