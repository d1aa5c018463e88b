//! `tunewatch models`: the fine-tuned models the watched accounts have, soonest retirement
//! first — model, base, created, retires (date and days left), the job that made it, source —
//! in a terminal's width, or as JSON (DESIGN.md, "Model lifecycle").

use serde_json::{Value, json};

use super::table::{col, col_middle, table};
use crate::store::{ModelRow, Store, StoreError, days_between};

/// "2027-01-14 (in 39 days)", "2026-11-30 (retired)", "—".
pub fn retires(m: &ModelRow, now: i64) -> String {
    let Some(at) = m.retires_at else {
        return "—".into();
    };
    let date = crate::source::models::date_of(at);
    if at <= now {
        return format!("{date} (retired)");
    }
    format!(
        "{date} ({})",
        crate::notify::render::lifecycle::days(days_between(now, at))
    )
}

/// The `models` text, at most `width` characters a line.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn models(store: &Store, now: i64, width: usize) -> Result<String, StoreError> {
    let rows = store.models()?;
    if rows.is_empty() {
        return Ok(
            "no fine-tuned models recorded (a source watches them with watch = [..., \"models\"])\n"
                .into(),
        );
    }
    // The model and its date matter most; the base, the job and when it was made give way
    // first. The source is shown when there are several.
    let many_sources = rows.iter().any(|m| m.source != rows[0].source);
    let mut columns = vec![
        col_middle("MODEL", 1),
        col("RETIRES", 0),
        col_middle("BASE", 3),
        col("JOB", 2),
        col("CREATED", 4),
    ];
    if many_sources {
        columns.push(col("SOURCE", 4));
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let mut line = vec![
                m.model_id.clone(),
                if m.gone_at.is_some() {
                    "gone from the list".into()
                } else {
                    retires(m, now)
                },
                m.base.clone().unwrap_or_else(|| "—".into()),
                m.job_id.clone().unwrap_or_else(|| "—".into()),
                m.created_at
                    .map_or_else(|| "—".into(), crate::source::models::date_of),
            ];
            if many_sources {
                line.push(m.source.clone());
            }
            line
        })
        .collect();
    Ok(table(&columns, &lines, width))
}

/// The same as JSON, for scripts.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn models_json(store: &Store, now: i64) -> Result<Value, StoreError> {
    let rows: Vec<Value> = store
        .models()?
        .into_iter()
        .map(|m| {
            json!({
                "model": m.model_id, "base": m.base, "source": m.source, "job": m.job_id,
                "created_at": m.created_at,
                "retires_on": m.retires_at.map(crate::source::models::date_of),
                "days_left": m.days_left(now),
                "retired": m.retires_at.is_some_and(|r| r <= now) || m.gone_at.is_some(),
                "gone_at": m.gone_at,
            })
        })
        .collect();
    Ok(json!({ "models": rows }))
}

/// `models [--output json]`.
///
/// # Errors
/// [`super::Failure`] when the database cannot be read.
pub fn run(config: &crate::config::Config, output: super::Output) -> Result<u8, super::Failure> {
    let store = super::open_store(config)?;
    let now = crate::store::unix_now();
    match output {
        super::Output::Text => print!("{}", models(&store, now, super::terminal_width())?),
        super::Output::Json => println!("{:#}", models_json(&store, now)?),
    }
    Ok(0)
}
