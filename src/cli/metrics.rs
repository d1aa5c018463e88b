//! `tunewatch metrics JOB_ID`: a job's training series and checkpoints as read from its events,
//! as a table that fits the terminal, as CSV for spreadsheets, or as the loss chart (PNG).

use std::fmt::Write as _;

use crate::config::Prices;
use crate::inert::Inert;
use crate::insight::{Checkpoint, MetricPoint};
use crate::notify::render::{human, timestamp};
use crate::store::{Store, StoreError};

use super::table::{col, col_middle, table};

/// One job's metrics, found in the store.
pub struct JobMetrics {
    pub source: String,
    pub job_id: String,
    pub raw: serde_json::Value,
    pub series: Vec<MetricPoint>,
    pub checkpoints: Vec<Checkpoint>,
}

/// Why a job's metrics cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {0} is not in the database")]
    Unknown(String),
    #[error("job {job} is in several sources ({sources}); choose one with --source")]
    Ambiguous { job: String, sources: String },
}

/// The metrics of `job_id` (in `source` when given).
///
/// # Errors
/// [`MetricsError`]: the job is unknown or ambiguous, or the database failed.
pub fn find(store: &Store, job_id: &str, source: Option<&str>) -> Result<JobMetrics, MetricsError> {
    let full = store.full_job_id(job_id)?;
    let job_id = full.as_deref().unwrap_or(job_id);
    let mut found = store.job_everywhere(job_id)?;
    if let Some(s) = source {
        found.retain(|(name, _)| name == s);
    }
    let (source, raw) = match found.len() {
        0 => return Err(MetricsError::Unknown(Inert(job_id).to_string())),
        1 => found.remove(0),
        _ => {
            return Err(MetricsError::Ambiguous {
                job: Inert(job_id).to_string(),
                sources: found
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let (series, checkpoints) = crate::insight::parsed(&store.job_metrics(&source, job_id)?);
    Ok(JobMetrics {
        source,
        job_id: job_id.to_string(),
        raw,
        series,
        checkpoints,
    })
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(String::new, crate::notify::render::loss)
}

/// The table: a summary, every metric point, every checkpoint.
pub fn text(m: &JobMetrics, prices: &Prices, width: usize) -> String {
    let mut out = format!(
        "metrics of {} [{}], status {}\n",
        Inert(&m.job_id),
        m.source,
        Inert(m.raw.get("status").and_then(|s| s.as_str()).unwrap_or("?"))
    );
    if m.series.is_empty() && m.checkpoints.is_empty() {
        out.push_str(
            "no metrics stored yet: they are read from the job's events while it runs (every \
             metrics_interval) and when it finishes; `insight = false` turns this off\n",
        );
        return out;
    }
    summary(&mut out, m, prices);
    if let (Some(a), Some(b)) = (
        m.series.iter().find_map(|p| p.at),
        m.series.iter().rev().find_map(|p| p.at),
    ) {
        let _ = writeln!(out, "metrics span {}", human(b - a));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = m
        .series
        .iter()
        .map(|p| {
            vec![
                p.step.to_string(),
                num(p.train_loss),
                num(p.train_mean_token_accuracy),
                num(p.valid_loss),
                num(p.valid_mean_token_accuracy),
                num(p.full_valid_loss),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            col("STEP", 0),
            col("TRAIN LOSS", 0),
            col("TRAIN ACC", 2),
            col("VALID LOSS", 0),
            col("VALID ACC", 2),
            col("FULL VALID LOSS", 1),
        ],
        &rows,
        width,
    ));
    checkpoints(&mut out, m, width);
    out
}

/// What the job's insight says: progress, expected finish, best checkpoint, cost.
fn summary(out: &mut String, m: &JobMetrics, prices: &Prices) {
    if let Some(i) = crate::insight::summarize(&m.raw, &m.series, &m.checkpoints, prices) {
        if let (Some(s), Some(t), Some(p)) = (i.step, i.total_steps, i.progress) {
            let _ = writeln!(out, "progress: step {s} of {t} ({:.0} %)", p * 100.0);
        }
        if let Some(eta) = i.eta {
            let _ = writeln!(out, "expected finish: {}", timestamp(eta));
        }
        if let Some(b) = &i.best_checkpoint {
            let _ = writeln!(out, "best checkpoint: {} (step {})", b.model, b.step);
        }
        if let Some(c) = i.cost_usd {
            let est = if i.cost_estimated == Some(true) {
                " (estimated)"
            } else {
                ""
            };
            let _ = writeln!(out, "cost: ${c:.2}{est}");
        }
    }
}

/// The checkpoint table, by step.
fn checkpoints(out: &mut String, m: &JobMetrics, width: usize) {
    if !m.checkpoints.is_empty() {
        let mut cps = m.checkpoints.clone();
        cps.sort_by_key(|c| c.step);
        let rows: Vec<Vec<String>> = cps
            .iter()
            .map(|c| {
                vec![
                    c.step.to_string(),
                    num(c.full_valid_loss),
                    num(c.valid_loss),
                    c.model.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                col("CHECKPOINT STEP", 0),
                col("FULL VALID LOSS", 1),
                col("VALID LOSS", 1),
                col_middle("MODEL", 2),
            ],
            &rows,
            width,
        ));
    }
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so a spreadsheet never runs it as a formula.
fn csv_field(s: &str) -> String {
    // OWASP's list: a cell starting with any of these may be read as a formula (TAB and CR
    // too, which some spreadsheets skip before looking for `=`).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The series as CSV, one row per step; then, after a blank line, the checkpoints.
pub fn csv(m: &JobMetrics) -> String {
    let n = |v: Option<f64>| v.map_or_else(String::new, |x| x.to_string());
    let mut out = String::from(
        "step,total_steps,created_at,train_loss,train_mean_token_accuracy,valid_loss,\
         valid_mean_token_accuracy,full_valid_loss,full_valid_mean_token_accuracy\n",
    );
    for p in &m.series {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            p.step,
            p.total_steps.map_or_else(String::new, |t| t.to_string()),
            p.at.map_or_else(String::new, |t| t.to_string()),
            n(p.train_loss),
            n(p.train_mean_token_accuracy),
            n(p.valid_loss),
            n(p.valid_mean_token_accuracy),
            n(p.full_valid_loss),
            n(p.full_valid_mean_token_accuracy)
        );
    }
    if !m.checkpoints.is_empty() {
        out.push_str("\ncheckpoint_step,fine_tuned_model_checkpoint,full_valid_loss,valid_loss\n");
        for c in &m.checkpoints {
            let _ = writeln!(
                out,
                "{},{},{},{}",
                c.step,
                csv_field(&c.model),
                n(c.full_valid_loss),
                n(c.valid_loss)
            );
        }
    }
    out
}

/// The loss chart as a PNG.
///
/// # Errors
/// When the series has no finite loss to draw (said in one sentence).
pub fn png(m: &JobMetrics) -> Result<Vec<u8>, crate::insight::chart::ChartError> {
    crate::insight::chart::png(
        &crate::insight::curve(&m.series),
        &format!("Loss of {} ({})", m.job_id, m.source),
    )
}

/// One line for `history`: what metrics are stored, and where to see them.
pub fn history_line(
    store: &Store,
    source: &str,
    job_id: &str,
) -> Result<Option<String>, StoreError> {
    let (series, checkpoints) = crate::insight::parsed(&store.job_metrics(source, job_id)?);
    if series.is_empty() && checkpoints.is_empty() {
        return Ok(None);
    }
    let last = series
        .last()
        .map(|p| match p.total_steps {
            Some(t) => format!(", last at step {} of {t}", p.step),
            None => format!(", last at step {}", p.step),
        })
        .unwrap_or_default();
    Ok(Some(format!(
        "metrics [{source}]: {} point(s){last}, {} checkpoint(s); `tunewatch metrics {}` shows them",
        series.len(),
        checkpoints.len(),
        Inert(job_id)
    )))
}

/// `metrics JOB_ID [--source NAME] [--csv | --png FILE]`.
///
/// # Errors
/// [`super::Failure`] when the job is unknown, has no chart, or the file cannot be written.
pub fn run(
    config: &crate::config::Config,
    job_id: &str,
    source: Option<&str>,
    csv_out: bool,
    png_out: Option<std::path::PathBuf>,
) -> Result<u8, super::Failure> {
    use super::Failure;
    let store = super::open_store(config)?;
    let found = find(&store, job_id, source).map_err(|e| Failure::one(e.to_string()))?;
    if let Some(path) = png_out {
        let bytes = png(&found)
            .map_err(|e| Failure::one(format!("no chart for job {}: {e}", found.job_id)))?;
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::one(format!("cannot write {}: {e}", path.display())))?;
        println!(
            "wrote the loss chart of {} ({} points) to {}",
            found.job_id,
            found.series.len(),
            path.display()
        );
    } else if csv_out {
        print!("{}", csv(&found));
    } else {
        print!("{}", text(&found, &config.prices, super::terminal_width()));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("ft:a,b"), "\"ft:a,b\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1.5"), "-1.5");
        assert_eq!(csv_field("\t=cmd|' /C calc'!A0"), "'\t=cmd|' /C calc'!A0");
        assert_eq!(csv_field("\r=1+1"), "\"'\r=1+1\"");
        assert_eq!(
            csv_field("ft:gpt-4o-mini:acme::ckpt-step-30"),
            "ft:gpt-4o-mini:acme::ckpt-step-30"
        );
    }
}
