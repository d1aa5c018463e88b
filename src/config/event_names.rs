//! The event types a route may name, and the suggestion for one that is misspelt.

/// The event types tunewatch raises, as prefixes a route pattern may name.
pub const EVENT_PREFIXES: &[&str] = &["fine_tuning.job.", "batch.", "model.", "tunewatch.source."];
/// The `model.*` event types (DESIGN.md, "Model lifecycle").
pub const MODEL_EVENTS: &[&str] = &[
    "model.created",
    "model.retiring",
    "model.retirement_changed",
    "model.retired",
];
/// The `tunewatch.source.*` event types.
pub const SOURCE_EVENTS: &[&str] = &["tunewatch.source.failing", "tunewatch.source.recovered"];

/// The job events tunewatch raises besides entering a status.
pub const JOB_EVENTS: &[&str] = &["created", "stalled", "progress", "overfitting", "diverging"];

/// Every job event a route may name exactly: a known status, or one of [`JOB_EVENTS`].
pub fn job_event_names() -> impl Iterator<Item = &'static str> {
    crate::source::job::KNOWN_STATUSES
        .iter()
        .chain(JOB_EVENTS)
        .copied()
}

/// The batch events besides entering a status.
pub const BATCH_EVENTS: &[&str] = &["created", "stalled", "partially_failed"];

/// Every batch event a route may name exactly: a documented batch status, or one of
/// [`BATCH_EVENTS`].
pub fn batch_event_names() -> impl Iterator<Item = &'static str> {
    crate::source::job::BATCH_STATUSES
        .iter()
        .chain(BATCH_EVENTS)
        .copied()
}

/// Whether a route may name `e`: a type tunewatch raises, or a prefix of some with a trailing
/// `*`. `Err` carries the sentence for an unknown one, with a suggestion when one is close.
pub(super) fn known_event_pattern(e: &str) -> Result<(), String> {
    let expected = "expected fine_tuning.job.<status>, fine_tuning.job.created, \
                    fine_tuning.job.stalled, .progress, .overfitting, .diverging, \
                    batch.<status>, batch.created, batch.stalled, batch.partially_failed, \
                    model.created, model.retiring, model.retirement_changed, model.retired, \
                    tunewatch.source.failing or tunewatch.source.recovered; \
                    a trailing * matches a prefix";
    if let Some(prefix) = e.strip_suffix('*') {
        let ok = !prefix.contains('*')
            && EVENT_PREFIXES
                .iter()
                .any(|k| k.starts_with(prefix) || prefix.starts_with(k));
        return if ok {
            Ok(())
        } else {
            Err(format!("unknown event type {e:?} ({expected})"))
        };
    }
    let known: Vec<String> = job_event_names()
        .map(|n| format!("fine_tuning.job.{n}"))
        .chain(batch_event_names().map(|n| format!("batch.{n}")))
        .chain(MODEL_EVENTS.iter().map(|s| s.to_string()))
        .chain(SOURCE_EVENTS.iter().map(|s| s.to_string()))
        .collect();
    if known.iter().any(|k| k == e) {
        return Ok(());
    }
    let closest = known
        .iter()
        .map(|k| (edit_distance(k, e), k))
        .min()
        .filter(|(d, _)| *d <= 3);
    Err(match closest {
        Some((_, k)) => format!("unknown event type {e:?}: did you mean {k:?}?"),
        None => format!(
            "unknown event type {e:?} ({expected}; a status tunewatch does not know yet is \
             routed with a wildcard such as \"fine_tuning.job.*\")"
        ),
    })
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
