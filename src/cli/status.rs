//! `status`: whether a daemon is watching, each source's health by the same rule as `/healthz`
//! (a success within three intervals), and every job — in a terminal's width, or as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::table::{col, col_middle, cut, table};
use crate::config::Config;
use crate::inert::{EXCERPT_CHARS, excerpt};
use crate::store::{JobRow, SourceRow, Store, StoreError, lock_holder, unix_now};

/// One source's health as `status` judges it.
enum Health {
    Ok,
    /// No successful poll within three of its intervals: no daemon, or one that cannot poll.
    Stale {
        since: i64,
        expected: Duration,
    },
    Failing {
        polls: i64,
        error: Option<String>,
    },
}

/// A source's health in one word (`ok`, `stale`, `failing`) by the rule of `status` and
/// `/healthz`, and whether it is ok.
pub fn health_word(
    s: &SourceRow,
    config: &Config,
    store: &Store,
    now: i64,
) -> (&'static str, bool) {
    match health(s, config, store, now) {
        Health::Ok => ("ok", true),
        Health::Stale { .. } => ("stale", false),
        Health::Failing { .. } => ("failing", false),
    }
}

fn health(s: &SourceRow, config: &Config, store: &Store, now: i64) -> Health {
    if s.consecutive_failures > 0 {
        return Health::Failing {
            polls: s.consecutive_failures,
            error: s.last_error.clone(),
        };
    }
    let expected = config
        .source(&s.source)
        .map_or(Duration::from_secs(60), |c| {
            if store.open_count(&s.source) > 0 {
                c.poll_interval.0
            } else {
                c.idle_poll_interval.0
            }
        });
    let last = s.last_success_at.or(s.last_poll_at).unwrap_or(0);
    let allowed = 3 * expected.as_secs().max(1) as i64;
    if now - last > allowed {
        Health::Stale {
            since: last,
            expected,
        }
    } else {
        Health::Ok
    }
}

/// "12s", "3m", "2h", "4d": how long ago, in the largest whole unit.
pub fn short_ago(now: i64, then: i64) -> String {
    let s = (now - then).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn status_word(j: &JobRow) -> String {
    match (j.gone_at, j.stalled) {
        (Some(_), _) => format!("{} (gone: the API answers 404)", j.status),
        (None, true) => format!("{}, stalled", j.status),
        (None, false) => j.status.clone(),
    }
}

/// "2 webhook refreshes failing, 1 given up (last error: …)".
pub fn refresh_trouble(t: &crate::store::RefreshTrouble) -> String {
    format!(
        "{} webhook refresh(es) failing, {} given up (last error: {})",
        t.failing,
        t.given_up,
        excerpt(
            t.last_error.as_deref().unwrap_or("none recorded"),
            EXCERPT_CHARS
        )
    )
}

/// The `status` text, at most `width` characters a line.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn status(store: &Store, config: &Config, width: usize) -> Result<String, StoreError> {
    let now = unix_now();
    let mut out = String::new();
    let daemon = daemon_line(store)?;
    let _ = writeln!(out, "{}", cut(&daemon, width));
    source_lines(&mut out, store, config, now, width)?;
    let jobs = store.jobs()?;
    if jobs.is_empty() {
        out.push_str("no jobs seen yet\n");
        return Ok(out);
    }
    let many_sources = jobs.iter().any(|j| j.source != jobs[0].source);
    let mut columns = Vec::new();
    if many_sources {
        columns.push(col("SOURCE", 2));
    }
    // The job id is what people copy into `history`: it is never cut. A cloud resource name
    // shows its last segment, which `history` and `metrics` accept, unless two jobs share it.
    let shown = short_ids(&jobs);
    columns.extend([
        col("JOB", 0),
        col_middle("MODEL", 3),
        col("STATUS", 1),
        col("SINCE", 0),
        col("CHANGED", 0),
    ]);
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .zip(shown)
        .map(|(j, id)| {
            let mut row = Vec::new();
            if many_sources {
                row.push(j.source.clone());
            }
            row.extend([
                id,
                j.fine_tuned_model
                    .clone()
                    .or_else(|| j.model.clone())
                    .unwrap_or_default(),
                status_word(j),
                short_ago(now, j.status_since),
                short_ago(now, j.last_change_at),
            ]);
            row
        })
        .collect();
    out.push_str(&table(&columns, &rows, width));
    Ok(out)
}

/// Who is watching: the leader on a shared database, the lock's holder on a file.
fn daemon_line(store: &Store) -> Result<String, StoreError> {
    Ok(match store.leader()? {
        Some(l) if l.expires_in_ms > 0 => format!(
            "{} leads and polls (epoch {}; its lease runs {} more); every daemon on this \
             database delivers",
            l.holder,
            l.epoch,
            humantime::format_duration(Duration::from_secs((l.expires_in_ms / 1000) as u64))
        ),
        Some(l) if !l.holder.is_empty() => format!(
            "no daemon leads: the lease of {} ran out {} ago, so nothing is being polled now",
            l.holder,
            humantime::format_duration(Duration::from_secs((-l.expires_in_ms / 1000) as u64))
        ),
        Some(_) => "no daemon has led yet: nothing is being watched now".to_string(),
        None => match lock_holder(store.path()) {
            Some(holder) => format!("a daemon is watching ({holder})"),
            None => "no daemon is running: nothing is being watched now".to_string(),
        },
    })
}

/// One line per source: its last poll and health, its last webhook, its refresh trouble.
fn source_lines(
    out: &mut String,
    store: &Store,
    config: &Config,
    now: i64,
    width: usize,
) -> Result<(), StoreError> {
    let trouble = store.refresh_trouble()?;
    for s in store.sources()? {
        let last = s.last_poll_at.map_or("never polled".into(), |t| {
            format!("last poll {} ago", short_ago(now, t))
        });
        let line = match health(&s, config, store, now) {
            Health::Ok => format!("{}: {last}, ok", s.source),
            Health::Stale { since, expected } => format!(
                "{}: STALE, no poll for {} (expected every {})",
                s.source,
                short_ago(now, since),
                humantime::format_duration(expected)
            ),
            Health::Failing { polls, error } => format!(
                "{}: FAILING, {polls} polls in a row: {}",
                s.source,
                excerpt(
                    error.as_deref().unwrap_or("no error recorded"),
                    EXCERPT_CHARS
                )
            ),
        };
        let line = match store.last_webhook_at(&s.source)? {
            Some(t) => format!("{line}; last webhook {} ago", short_ago(now, t)),
            None => line,
        };
        let line = match trouble.iter().find(|t| t.source == s.source) {
            Some(t) => format!("{line}; {}", refresh_trouble(t)),
            None => line,
        };
        let _ = writeln!(out, "{}", cut(&line, width));
    }
    Ok(())
}

/// What the table shows of each job id: the last segment of a resource name
/// (`accounts/a/fineTuningJobs/x` shows `x`), the whole id when another job shares that segment.
fn short_ids(jobs: &[JobRow]) -> Vec<String> {
    let last = |id: &str| id.rsplit('/').next().unwrap_or(id).to_string();
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for j in jobs {
        *seen.entry(last(&j.job_id)).or_default() += 1;
    }
    jobs.iter()
        .map(|j| {
            let short = last(&j.job_id);
            if short.is_empty() || seen[&short] > 1 {
                j.job_id.clone()
            } else {
                short
            }
        })
        .collect()
}

/// The same as JSON, for scripts.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn status_json(store: &Store, config: &Config) -> Result<Value, StoreError> {
    let now = unix_now();
    let holder = lock_holder(store.path());
    let leader = store.leader()?.map(|l| {
        json!({"instance": l.holder, "epoch": l.epoch, "lease_expires_in_ms": l.expires_in_ms,
               "alive": l.expires_in_ms > 0})
    });
    let trouble = store.refresh_trouble()?;
    let sources: Vec<Value> = store
        .sources()?
        .iter()
        .map(|s| {
            let refreshes = trouble.iter().find(|t| t.source == s.source).map(|t| {
                json!({"failing": t.failing, "given_up": t.given_up, "last_error": t.last_error})
            });
            let (word, stale_for) = match health(s, config, store, now) {
                Health::Ok => ("ok", None),
                Health::Stale { since, .. } => ("stale", Some(now - since)),
                Health::Failing { .. } => ("failing", None),
            };
            json!({"name": s.source, "health": word, "last_poll_at": s.last_poll_at,
                   "last_success_at": s.last_success_at, "stale_for_seconds": stale_for,
                   "consecutive_failures": s.consecutive_failures, "last_error": s.last_error,
                   "last_webhook_at": store.last_webhook_at(&s.source).ok().flatten(),
                   "webhook_refreshes": refreshes})
        })
        .collect();
    let jobs: Vec<Value> = store
        .jobs()?
        .iter()
        .map(|j| {
            json!({"source": j.source, "id": j.job_id, "model": j.model,
                   "fine_tuned_model": j.fine_tuned_model, "status": j.status,
                   "status_since": j.status_since, "last_change_at": j.last_change_at,
                   "stalled": j.stalled, "gone": j.gone_at.is_some()})
        })
        .collect();
    Ok(json!({
        "database": store.path(),
        "daemon": {"running": holder.is_some() || leader.as_ref().is_some_and(|l| l["alive"] == true),
                   "holder": holder, "leader": leader},
        "sources": sources,
        "jobs": jobs,
    }))
}

/// `status [--output json]`.
///
/// # Errors
/// [`super::Failure`] when the database cannot be read.
pub fn run(config: &Config, output: super::Output) -> Result<u8, super::Failure> {
    let store = super::open_store(config)?;
    match output {
        super::Output::Text => print!("{}", status(&store, config, super::terminal_width())?),
        super::Output::Json => println!("{:#}", status_json(&store, config)?),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(short_ago(100, 88), "12s");
        assert_eq!(short_ago(1000, 800), "3m");
        assert_eq!(short_ago(10_000, 2_000), "2h");
        assert_eq!(short_ago(500_000, 100), "5d");
    }
}
