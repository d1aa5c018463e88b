//! What training insight adds to a message: the facts (progress, ETA, losses, the best
//! checkpoint, cost) and the opening sentence of the insight events. Numbers are read from the
//! event's stored `insight`, so every retry says the same.

use super::text::{human, timestamp};
use super::{FactKind, LEAD_QUOTE_CHARS, truncate};
use crate::event::Event;
use crate::insight::Insight;
use crate::model::EventKind;

/// A loss for people: four significant decimals, or what it is when it is not a number.
pub fn loss(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        v.to_string()
    }
}

fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", v * 100.0)
    } else {
        v.to_string()
    }
}

/// "1.2345 (accuracy 71.0 %)".
fn with_accuracy(loss_v: Option<f64>, accuracy: Option<f64>) -> Option<String> {
    match (loss_v, accuracy) {
        (Some(l), Some(a)) => Some(format!("{} (accuracy {})", loss(l), percent(a))),
        (Some(l), None) => Some(loss(l)),
        (None, Some(a)) => Some(format!("accuracy {}", percent(a))),
        (None, None) => None,
    }
}

/// The insight facts of `event`, in the order every format shows them.
pub(super) fn facts(event: &Event) -> Vec<(FactKind, String)> {
    let Some(i) = &event.insight else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match (i.step, i.total_steps, i.progress) {
        (Some(s), Some(t), Some(p)) => out.push((
            FactKind::Progress,
            format!("step {s} of {t} ({:.0} %)", p * 100.0),
        )),
        (Some(s), _, _) => out.push((FactKind::Progress, format!("step {s}"))),
        _ => {}
    }
    if let Some(eta) = i.eta {
        let left = eta - event.created_at;
        let when = if left > 0 {
            format!("{} (in about {})", timestamp(eta), human(left))
        } else {
            format!("{} (overdue)", timestamp(eta))
        };
        out.push((FactKind::Eta, when));
    }
    if let Some(t) = with_accuracy(i.train_loss, i.train_mean_token_accuracy) {
        out.push((FactKind::TrainLoss, t));
    }
    let valid = match (i.valid_loss, i.full_valid_loss) {
        (Some(v), Some(f)) => Some(format!("{}; full validation {}", loss(v), loss(f))),
        (Some(v), None) => Some(loss(v)),
        (None, Some(f)) => Some(format!("full validation {}", loss(f))),
        (None, None) => None,
    };
    let valid = match (valid, i.valid_mean_token_accuracy) {
        (Some(v), Some(a)) => Some(format!("{v} (accuracy {})", percent(a))),
        (v, None) => v,
        (None, Some(a)) => Some(format!("accuracy {}", percent(a))),
    };
    if let Some(v) = valid {
        out.push((FactKind::ValidLoss, v));
    }
    if let Some(b) = &i.best_checkpoint {
        let metric = match (b.full_valid_loss, b.valid_loss) {
            (Some(f), _) => format!(", full validation loss {}", loss(f)),
            (None, Some(v)) => format!(", validation loss {}", loss(v)),
            _ => String::new(),
        };
        out.push((
            FactKind::BestCheckpoint,
            format!("{} (step {}{metric})", b.model, b.step),
        ));
    }
    if let Some(c) = i.cost_usd {
        let text = if i.cost_estimated == Some(true) {
            format!("about ${c:.2} (estimated from progress)")
        } else {
            format!("${c:.2}")
        };
        out.push((FactKind::Cost, text));
    }
    out
}

/// The few words of the subject for an insight event: "at 50 %", "overfitting", "diverging".
pub(super) fn what(event: &Event) -> Option<String> {
    let i = event.insight.as_ref()?;
    match event.kind()? {
        EventKind::Progress => i.mark.map(|m| format!("at {m} %")),
        _ => None,
    }
}

/// The opening sentence of an insight event.
pub(super) fn lead(event: &Event) -> Option<String> {
    let id = event.subject();
    let i: &Insight = event.insight.as_ref()?;
    let steps = match (i.step, i.total_steps) {
        (Some(s), Some(t)) => format!(" (step {s} of {t})"),
        _ => String::new(),
    };
    Some(match event.kind()? {
        EventKind::Progress => format!(
            "Fine-tuning job {id} has passed {} %{steps}.",
            i.mark.unwrap_or_default()
        ),
        EventKind::Overfitting => {
            let o = i.overfitting.as_ref()?;
            let rise = if o.best_valid_loss > 0.0 {
                format!(" {:.0} %", (o.valid_loss / o.best_valid_loss - 1.0) * 100.0)
            } else {
                String::new()
            };
            let instead = match &i.best_checkpoint {
                Some(b) => format!(" Use checkpoint {} (step {}) instead.", b.model, b.step),
                None => format!(
                    " Consider the checkpoint nearest step {}, or fewer epochs.",
                    o.best_step
                ),
            };
            truncate(
                &format!(
                    "Fine-tuning job {id} is overfitting: the validation loss has risen{rise} \
                     above its low of {} at step {} (now {} at step {}) while the training loss \
                     kept falling.{instead}",
                    loss(o.best_valid_loss),
                    o.best_step,
                    loss(o.valid_loss),
                    o.step
                ),
                LEAD_QUOTE_CHARS * 3,
            )
        }
        EventKind::Diverging => {
            let d = i.diverging.as_ref()?;
            format!(
                "Fine-tuning job {id} is diverging at step {}: {}. Consider cancelling it and \
                 lowering the learning rate.",
                d.step,
                truncate(&d.reason, LEAD_QUOTE_CHARS)
            )
        }
        _ => return None,
    })
}
