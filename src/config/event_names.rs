//! The event types a route may name, and the suggestion for one that is misspelt.

use crate::model::EventKind;
use crate::model::kind::PREFIXES;

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
            && PREFIXES
                .iter()
                .any(|k| k.starts_with(prefix) || prefix.starts_with(k));
        return if ok {
            Ok(())
        } else {
            Err(format!("unknown event type {e:?} ({expected})"))
        };
    }
    let known: Vec<String> = EventKind::all().iter().map(EventKind::name).collect();
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
