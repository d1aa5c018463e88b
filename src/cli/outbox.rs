//! `tunewatch outbox`: pending, failing and dead deliveries; `outbox retry` puts dead ones back.

use serde_json::Value;

use crate::config::Config;
use crate::store::{Store, StoreError};

use super::{
    Failure, OutboxAction, Output, col, open_store, plural, short_ago, table, terminal_width,
};

/// `outbox [--all] [--output json]`, or `outbox retry`.
///
/// # Errors
/// [`Failure`] when the database cannot be read or written, or an id is not a dead delivery.
pub fn run(
    config: &Config,
    all: bool,
    output: Output,
    action: Option<OutboxAction>,
) -> Result<u8, Failure> {
    let store = open_store(config)?;
    match action {
        None if output == Output::Json => println!("{:#}", outbox_json(&store, all)?),
        None => print!("{}", outbox(&store, all, config, terminal_width())?),
        Some(OutboxAction::Retry { ids, all_dead }) => retry(config, store, &ids, all_dead)?,
    }
    Ok(0)
}

/// Puts dead deliveries back, due now: every one with `all_dead`, else exactly `ids` (each must
/// be dead, or nothing is put back).
fn retry(config: &Config, store: Store, ids: &[i64], all_dead: bool) -> Result<(), Failure> {
    if !all_dead {
        let rows = store.outbox_rows(true)?;
        let wrong: Vec<String> = ids
            .iter()
            .filter_map(|id| match rows.iter().find(|r| r.id == *id) {
                None => Some(format!("{id} is not in the outbox")),
                Some(r) if r.state != "dead" => Some(format!("{id} is {}, not dead", r.state)),
                Some(_) => None,
            })
            .collect();
        if !wrong.is_empty() {
            return Err(Failure::one(format!(
                "nothing put back: {} (`tunewatch outbox` lists the dead ones)",
                wrong.join("; ")
            )));
        }
    }
    // The one command that writes: reopen the configured store read-write (a file known to be
    // tunewatch's by now, or the PostgreSQL database itself).
    drop(store);
    let password = config.state_db_password()?;
    let store = Store::open_at(config.state_db.location(), password.as_ref(), false)?;
    let wanted = if all_dead { None } else { Some(ids) };
    let n = store.revive(wanted, crate::store::unix_now_ms())?;
    println!(
        "{} put back in the outbox, due now",
        plural(n, "dead delivery", "dead deliveries")
    );
    Ok(())
}

/// `outbox --output json`: the rows as JSON, for scripts.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn outbox_json(store: &Store, all: bool) -> Result<Value, StoreError> {
    let rows: Vec<Value> = store
        .outbox_rows(all)?
        .into_iter()
        .map(|r| {
            serde_json::json!({"id": r.id, "state": r.state, "notifier": r.notifier,
                "event_id": r.event_id, "event_type": r.event_type, "source": r.source,
                "job_id": r.job_id, "attempts": r.attempts, "created_ms": r.created_ms,
                "next_attempt_ms": r.next_attempt_ms, "last_status": r.last_status,
                "last_error": r.last_error})
        })
        .collect();
    Ok(Value::Array(rows))
}

/// `outbox`: pending, failing and dead deliveries (`notifiers`: how many the config has) (all of them with `all`).
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn outbox(
    store: &Store,
    all: bool,
    config: &Config,
    width: usize,
) -> Result<String, StoreError> {
    let notifiers = config.notifiers.len();
    let rows = store.outbox_rows(all)?;
    if rows.is_empty() {
        return Ok("outbox is empty: every alert has been delivered\n".into());
    }
    let now_ms = crate::store::unix_now_ms();
    // Which notifier matters only when there are several (the config's, or the rows').
    let many_notifiers = notifiers > 1 || rows.iter().any(|r| r.notifier != rows[0].notifier);
    let mut columns = vec![
        col("ID", 0),
        col("STATE", 0),
        col("JOB", 0),
        col("EVENT", 1),
    ];
    if many_notifiers {
        columns.push(col("NOTIFIER", 2));
    }
    columns.push(col("NEXT", 0));
    let mut body = Vec::new();
    let mut errors = Vec::new();
    for r in rows {
        let (state, next) = state_and_next(&r, now_ms, config);
        // The last error goes on a line of its own under its row, where it has room.
        errors.push(match (r.state.as_str(), r.last_status, r.last_error) {
            ("delivered", _, _) | (_, _, None) => None,
            (_, Some(s), Some(e)) if !e.contains(&s.to_string()) => Some(format!("[{s}] {e}")),
            (_, _, Some(e)) => Some(e),
        });
        // "job.succeeded": the `fine_tuning.` of every type says nothing.
        let kind = r
            .event_type
            .strip_prefix("fine_tuning.")
            .unwrap_or(&r.event_type)
            .to_string();
        let mut row = vec![
            r.id.to_string(),
            state,
            r.job_id.unwrap_or_else(|| r.source.clone()),
            kind,
        ];
        if many_notifiers {
            row.push(r.notifier);
        }
        row.push(next);
        body.push(row);
    }
    let rendered = table(&columns, &body, width);
    let mut out = String::new();
    for (i, line) in rendered.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if let Some(Some(e)) = i.checked_sub(1).and_then(|r| errors.get(r)) {
            let e = crate::inert::excerpt(e, crate::inert::EXCERPT_CHARS);
            out.push_str(&table::cut(&format!("    last error: {e}"), width));
            out.push('\n');
        }
    }
    Ok(out)
}

/// "until 08:00 Europe/Berlin": when quiet hours `by` end, in their zone.
fn held_until(config: &Config, by: &str, until_ms: i64) -> String {
    match config.quiet_hours.iter().find(|q| q.name == by) {
        Some(q) => {
            let at = crate::model::schedule::local_time(&q.window.tz, &q.zone, until_ms);
            // The date is said only when it is not today's.
            format!(
                "until {}",
                at.split_once(' ').map_or(at.as_str(), |(_, t)| t)
            )
        }
        None => format!(
            "until {}",
            crate::notify::render::timestamp(until_ms / 1000)
        ),
    }
}

/// A row's state ("held", "grouped grp_3", "failing ×2") and when it goes next.
fn state_and_next(r: &crate::store::OutboxRow, now_ms: i64, config: &Config) -> (String, String) {
    let held = r.held_until_ms.filter(|t| *t > now_ms && r.attempts == 0);
    let state = match (r.state.as_str(), r.attempts) {
        ("grouped", _) => match &r.group {
            Some((id, _, s)) if s == "open" => format!("grouped grp_{id}"),
            Some((id, _, _)) => format!("sending grp_{id}"),
            None => "grouped".into(),
        },
        ("silenced", _) => format!(
            "silenced ({})",
            r.silence_id.map_or("-".into(), |s| format!("silence {s}"))
        ),
        ("pending", 0) if held.is_some() => "held".to_string(),
        ("pending", 0) => "pending".to_string(),
        ("pending", n) => format!("failing ×{n}"),
        ("delivered", n) if n > 1 => format!("delivered ×{n}"),
        ("dead", n) => format!("dead ×{n}"),
        (s, _) => s.to_string(),
    };
    let group_due = r
        .group
        .as_ref()
        .filter(|(_, _, s)| s == "open")
        .map(|(_, flush, _)| *flush);
    let next = if let (Some(until), Some(by)) = (
        held.or(group_due.filter(|_| r.held_by.is_some())),
        &r.held_by,
    ) {
        held_until(config, by, until)
    } else if let Some(flush) = group_due {
        format!("in {}", short_ago((flush - now_ms).max(0) / 1000, 0))
    } else if r.state == "pending" {
        let wait = (r.next_attempt_ms - now_ms).max(0) / 1000;
        if wait == 0 {
            "now".into()
        } else {
            format!("in {}", short_ago(wait, 0))
        }
    } else {
        "-".into()
    };
    (state, next)
}
