//! The text of the read-only commands: `check`, `status`, `history` and `outbox`. Each function
//! reads what it needs and returns the text to print; `main` prints it and picks the exit code.

pub mod metrics;
pub mod migrate;
pub mod models;
mod status;
mod table;

pub use status::{health_word, short_ago, status, status_json};
use table::{col, table};
pub use table::{cut, terminal_width};

use std::fmt::Write as _;

use serde_json::Value;

use crate::config::{Config, NotifierKind, SmtpTls};
use crate::store::{HistoryEntry, Store, StoreError};

/// `check` on a PostgreSQL store: connects (changing nothing) and says what it found; a database
/// that cannot be reached is an error. Nothing is tried when the password cannot be read (that
/// error is reported already).
fn probe(
    target: &crate::config::PgTarget,
    credentials: Option<&std::path::Path>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let password = match &target.password {
        Some(r) => Some(
            r.read_in(crate::config::SecretKind::Password, credentials)
                .ok()?,
        ),
        None => None,
    };
    let known = crate::store::MIGRATIONS.len();
    match Store::probe_postgres(target, password.as_ref()) {
        Ok((version, 0)) => Some(format!(
            "reachable: PostgreSQL {version}, no tunewatch tables yet (`run` creates them)"
        )),
        Ok((version, schema)) => Some(format!(
            "reachable: PostgreSQL {version}, tunewatch schema {schema} of {known}"
        )),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    }
}

/// `check`: a summary of a valid config, and the secrets it names that cannot be read.
pub fn check(config: &Config, credentials: Option<&std::path::Path>) -> (String, Vec<String>) {
    let mut out = String::new();
    // Every secret is read (by the same code as `run`) before anything is called valid.
    let mut errors: Vec<String> = config
        .check_secrets_in(credentials)
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    let secrets_unusable = errors.len();
    // A PostgreSQL store is reached (changing nothing) before the config is called valid.
    let reached = match &config.state_db {
        crate::config::StateDb::Postgres(target) => probe(target, credentials, &mut errors),
        crate::config::StateDb::Sqlite(_) => None,
    };
    if errors.is_empty() {
        let _ = writeln!(out, "config {}: valid", config.path.display());
    } else {
        let mut what = Vec::new();
        match secrets_unusable {
            0 => {}
            1 => what.push("1 secret is unusable".to_string()),
            n => what.push(format!("{n} secrets are unusable")),
        }
        if errors.len() > secrets_unusable {
            what.push("the database cannot be reached".to_string());
        }
        let _ = writeln!(
            out,
            "config {}: NOT valid ({}; see below)",
            config.path.display(),
            what.join(", ")
        );
    }
    match &config.state_db {
        crate::config::StateDb::Sqlite(_) => {
            let _ = writeln!(out, "  database  {} (SQLite, one daemon)", config.state_db);
        }
        crate::config::StateDb::Postgres(_) => {
            let _ = writeln!(
                out,
                "  database  {} (PostgreSQL, shared: instance {}, leader_lease {}, claim_lease {})",
                config.state_db,
                config.daemon.instance.clone().unwrap_or_else(|| {
                    // The default names the running daemon's pid, not this command's.
                    let name = crate::config::instance_name(None);
                    let host = name.rsplit_once('-').map_or(name.as_str(), |(h, _)| h);
                    format!("{host}-PID")
                }),
                config.daemon.leader_lease,
                config.daemon.claim_lease
            );
            if let Some(line) = &reached {
                let _ = writeln!(out, "            {line}");
            }
        }
    }
    if let Some(addr) = config.daemon.listen {
        let _ = writeln!(out, "  listen    http://{addr}/healthz and /metrics");
    }
    for s in &config.sources {
        let watch: Vec<&str> = s
            .watch
            .iter()
            .map(|w| match w {
                crate::config::Watch::FineTuning => "fine-tuning jobs",
                crate::config::Watch::Batches => "batches",
                crate::config::Watch::Models => "models",
            })
            .collect();
        let _ = writeln!(
            out,
            "  source    {:<14} {} ({}: {}) every {}, {}",
            s.name,
            s.api_base,
            s.kind.name(),
            watch.join(" and "),
            s.poll_interval,
            s.auth
        );
        // What this provider's API cannot give, said once here rather than discovered later.
        for note in crate::source::cannot_give(s.kind, s.insight.enabled, &s.watch) {
            let _ = writeln!(out, "            {:<14} note: {note}", "");
        }
    }
    for n in &config.notifiers {
        let what = match &n.kind {
            NotifierKind::Webhook(w) => format!(
                "webhook {} ({}signed)",
                w.shown_url(),
                if w.secret.is_some() { "" } else { "not " }
            ),
            NotifierKind::Email(e) => format!(
                "email via {}:{} ({}) to {}",
                e.smtp_host,
                e.smtp_port,
                match e.tls {
                    SmtpTls::Starttls => "STARTTLS",
                    SmtpTls::Tls => "TLS",
                    SmtpTls::None => "plaintext",
                },
                e.to.join(", ")
            ),
        };
        let _ = writeln!(out, "  notifier  {:<14} {what}", n.name);
    }
    for (i, r) in config.routes.iter().enumerate() {
        let sources = r
            .sources
            .as_ref()
            .map_or("all sources".to_string(), |s| s.join(", "));
        let _ = writeln!(
            out,
            "  route {}   {} from {} -> {}",
            i + 1,
            r.events.join(", "),
            sources,
            r.notifiers.join(", ")
        );
    }
    if config.routes.is_empty() {
        let _ = writeln!(
            out,
            "  (no [[route]]: events are stored but nobody is told)"
        );
    }
    for w in config.permission_warnings() {
        let _ = writeln!(out, "warning: {w}");
    }
    (out, errors)
}

/// `history JOB_ID`: the job's snapshots with their field diffs, and its events with deliveries.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn history(store: &Store, job_id: &str, width: usize) -> Result<Option<String>, StoreError> {
    let full = store.full_job_id(job_id)?;
    let job_id = full.as_deref().unwrap_or(job_id);
    let entries = store.history(job_id)?;
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
    notifiers: usize,
    width: usize,
) -> Result<String, StoreError> {
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
        let state = match (r.state.as_str(), r.attempts) {
            ("pending", 0) => "pending".to_string(),
            ("pending", n) => format!("failing ×{n}"),
            ("delivered", n) if n > 1 => format!("delivered ×{n}"),
            ("dead", n) => format!("dead ×{n}"),
            (s, _) => s.to_string(),
        };
        let next = if r.state == "pending" {
            let wait = (r.next_attempt_ms - now_ms).max(0) / 1000;
            if wait == 0 {
                "now".into()
            } else {
                format!("in {}", short_ago(wait, 0))
            }
        } else {
            "-".into()
        };
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
