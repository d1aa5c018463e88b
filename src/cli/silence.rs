//! `tunewatch silence add | list | expire`: silences live in the database (shared on
//! PostgreSQL), are checked when rows are written and again before sending, and a silenced row is
//! kept with its silence's id — never deleted, never replayed when the silence ends.

use super::{Failure, SilenceAction, open_store};
use crate::config::Config;
use crate::model::silence::Silence;
use crate::store::{Store, unix_now_ms};

/// Runs `tunewatch silence …`.
///
/// # Errors
/// [`Failure`] with the sentence to print: a bad duration or time, one over `max_silence`, no
/// condition, or a database that cannot be written.
pub fn run(config: &Config, action: SilenceAction) -> Result<u8, Failure> {
    let now = unix_now_ms();
    match action {
        SilenceAction::Add {
            source,
            job,
            model,
            event,
            for_,
            until,
            comment,
        } => {
            if source.is_none() && job.is_none() && model.is_none() && event.is_none() {
                return Err(Failure {
                    code: 2,
                    message: "name what to silence: --source, --job, --model or --event".into(),
                });
            }
            let ends = ends_at(for_.as_deref(), until.as_deref(), now)?;
            let most = config.daemon.max_silence.0.as_millis() as i64;
            if ends - now > most {
                return Err(Failure {
                    code: 2,
                    message: format!(
                        "a silence until {} is longer than daemon.max_silence ({})",
                        time(ends),
                        config.daemon.max_silence
                    ),
                });
            }
            if ends <= now {
                return Err(Failure {
                    code: 2,
                    message: "the silence would end before it begins".into(),
                });
            }
            let silence = Silence {
                id: 0,
                source,
                job,
                model,
                event,
                starts_ms: now,
                ends_ms: ends,
                comment,
                created_ms: now,
                expired_ms: None,
            };
            let id = writable(config)?.add_silence(&silence)?;
            println!("silence {id} added, until {}", time(ends));
        }
        SilenceAction::List { all } => {
            let silences = open_store(config)?.silences(now, all)?;
            if silences.is_empty() {
                println!("no silences");
            }
            for s in silences {
                println!("{}", line(&s, now));
            }
        }
        SilenceAction::Expire { id } => {
            if writable(config)?.expire_silence(id, now)? {
                println!("silence {id} expired; what it silenced stays silenced");
            } else {
                return Err(Failure::one(format!("no silence {id} in force")));
            }
        }
    }
    Ok(0)
}

fn writable(config: &Config) -> Result<Store, Failure> {
    Ok(Store::open_at(
        config.state_db.location(),
        config.state_db_password()?.as_ref(),
        false,
    )?)
}

/// When a silence given `--for` or `--until` ends (unix ms).
fn ends_at(for_: Option<&str>, until: Option<&str>, now: i64) -> Result<i64, Failure> {
    let usage = |message: String| Failure { code: 2, message };
    match (for_, until) {
        (Some(d), _) => {
            let d = humantime::parse_duration(d).map_err(|e| usage(format!("--for {d:?}: {e}")))?;
            Ok(now.saturating_add(d.as_millis() as i64))
        }
        (None, Some(t)) => {
            let ts = t
                .parse::<jiff::Timestamp>()
                .or_else(|_| {
                    t.parse::<jiff::civil::DateTime>()
                        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
                        .map(|z| z.timestamp())
                })
                .map_err(|_| {
                    usage(format!(
                        "--until {t:?} is not a time like 2026-12-24T08:00:00Z or \"2026-12-24 08:00\" (UTC)"
                    ))
                })?;
            Ok(ts.as_millisecond())
        }
        (None, None) => Err(usage("give --for or --until".into())),
    }
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// One silence in a line.
fn line(s: &Silence, now: i64) -> String {
    let mut what = Vec::new();
    for (k, v) in [
        ("source", &s.source),
        ("job", &s.job),
        ("model", &s.model),
        ("event", &s.event),
    ] {
        if let Some(v) = v {
            what.push(format!("{k}={}", crate::inert::excerpt(v, 80)));
        }
    }
    let state = match (s.expired_ms, s.active(now)) {
        (Some(t), _) => format!("expired {}", time(t)),
        (None, true) => format!("until {}", time(s.ends_ms)),
        (None, false) if s.ends_ms <= now => format!("ended {}", time(s.ends_ms)),
        _ => format!("from {}", time(s.starts_ms)),
    };
    format!(
        "{:<4} {:<40} {state}  \"{}\"",
        s.id,
        what.join(" "),
        crate::inert::excerpt(&s.comment, 120)
    )
}
