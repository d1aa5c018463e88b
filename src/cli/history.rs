//! `tunewatch history JOB_ID`: a job's snapshots with their field changes, and its events with
//! their deliveries.

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::Config;
use crate::store::{HistoryEntry, Store, StoreError};

use super::{Failure, metrics, open_store, table, terminal_width};

/// `history`: exit 1 when the job is not in the database.
///
/// # Errors
/// [`Failure`] when the database cannot be read or has no such job.
pub fn run(config: &Config, job_id: &str) -> Result<u8, Failure> {
    let store = open_store(config)?;
    match history(&store, job_id, terminal_width())? {
        Some(text) => {
            print!("{text}");
            Ok(0)
        }
        None => Err(Failure::one(format!(
            "job {job_id} is not in {}",
            store.path().display()
        ))),
    }
}

/// `history JOB_ID`: the job's snapshots with their field diffs, and its events with deliveries.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn history(store: &Store, job_id: &str, width: usize) -> Result<Option<String>, StoreError> {
    let full = store.full_job_id(job_id)?;
    let job_id = full.as_deref().unwrap_or(job_id);
    let entries = store.history(job_id, &crate::pipeline::Policy::plain(1.0))?;
    if entries.is_empty() {
        return Ok(None);
    }
    let mut out = format!("history of {}\n", Inert(job_id));
    for entry in entries {
        match entry {
            HistoryEntry::Snapshot(s) => {
                let _ = writeln!(
                    out,
                    "{}  snapshot #{} [{}] status {}{}",
                    timestamp(s.observed_at),
                    s.id,
                    s.source,
                    Inert(&s.status),
                    if s.first { " (first seen)" } else { "" }
                );
                for c in &s.changes {
                    let _ = writeln!(
                        out,
                        "      {}: {} -> {}",
                        Inert(&c.field),
                        value(&c.field, &c.from),
                        value(&c.field, &c.to)
                    );
                }
            }
            HistoryEntry::Event {
                id,
                event_type,
                created_at,
                deliveries,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "{}  event {} {id}",
                    timestamp(created_at),
                    Inert(&event_type)
                );
                for (notifier, state, attempts, error) in deliveries {
                    let _ = write!(
                        out,
                        "      -> {notifier}: {state} after {attempts} attempt(s)"
                    );
                    if let Some(e) = error.filter(|_| state != "delivered") {
                        let _ = write!(out, "; last error: {}", Inert(&e));
                    }
                    out.push('\n');
                }
            }
        }
    }
    let mut sources: Vec<String> = store
        .job_everywhere(job_id)?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    sources.dedup();
    for source in sources {
        if let Some(line) = metrics::history_line(store, &source, job_id)? {
            out.push_str(&line);
            out.push('\n');
        }
    }
    // One entry a line, each cut to the terminal: long values end in `…` (the full JSON is in
    // the database, and in `--output json` of status for the job's current state).
    let fitted: String = out
        .lines()
        .map(|l| format!("{}\n", table::cut(l, width)))
        .collect();
    Ok(Some(fitted))
}

use crate::inert::Inert;
use crate::notify::render::timestamp;

/// A field's value as people read it: unix times (`*_at`, `estimated_finish`) as dates,
/// anything else as [`short`] JSON.
fn value(field: &str, v: &Value) -> String {
    let is_time = field.ends_with("_at") || field.ends_with("estimated_finish");
    match v.as_i64() {
        Some(t) if is_time => timestamp(t),
        _ => short(v),
    }
}

/// A JSON value on one line, shortened for a terminal.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}
