//! What a `model.*` alert says (DESIGN.md, "Model lifecycle"): the model, its base, the day it
//! retires and how many days are left, and the job that made it — in one plain sentence first
//! ("ft:gpt-4o-mini:acme:support:Ab12 retires on 2027-01-14, in 39 days; made by ftjob-…").

use super::FactKind;
use crate::event::{Event, ModelFacts};
use crate::model::EventKind;

/// Whether the event is about a model.
pub(super) fn is_model(event: &Event) -> bool {
    event.kind().is_some_and(|k| k.is_model())
}

/// "in 39 days", "tomorrow", "today", "3 days ago".
pub fn days(n: i64) -> String {
    match n {
        0 => "today".into(),
        1 => "tomorrow".into(),
        -1 => "yesterday".into(),
        n if n > 1 => format!("in {n} days"),
        n => format!("{} days ago", -n),
    }
}

/// "2027-01-14, in 39 days".
fn when(m: &ModelFacts) -> Option<String> {
    let date = m.retires_on.as_deref()?;
    Some(match m.days_left {
        Some(d) => format!("{date}, {}", days(d)),
        None => date.to_string(),
    })
}

fn made_by(m: &ModelFacts) -> String {
    m.job
        .as_deref()
        .map(|j| format!("; made by {j}"))
        .unwrap_or_default()
}

/// The e-mail subject of a model event.
pub(super) fn subject(event: &Event) -> String {
    let id = event.subject();
    let kind = event.kind();
    let what = match event.model.as_ref().and_then(when) {
        Some(w) if kind != Some(EventKind::ModelRetired) => format!("retires {w}"),
        _ => kind.map_or_else(|| event.event_type.clone(), |k| k.short()),
    };
    format!("[tunewatch] {}: {id} {what}", event.source)
}

/// The opening sentence of a model alert.
pub(super) fn lead(event: &Event) -> String {
    let id = event.subject();
    let Some(m) = &event.model else {
        return format!("Model {id}: {}.", event.event_type);
    };
    let by = made_by(m);
    match event.kind() {
        Some(EventKind::ModelCreated) => match when(m) {
            Some(w) => format!("A new fine-tuned model {id} is ready; it retires on {w}{by}."),
            None => format!("A new fine-tuned model {id} is ready{by}."),
        },
        Some(EventKind::ModelRetiring) => match when(m) {
            Some(w) => format!("{id} retires on {w}{by}."),
            None => format!("{id} is retiring{by}."),
        },
        Some(EventKind::ModelRetirementChanged) => {
            let was = m
                .previous_retires_on
                .as_deref()
                .map_or_else(|| "no date before".to_string(), |d| format!("was {d}"));
            match when(m) {
                Some(w) => format!("{id} now retires on {w} ({was}){by}."),
                None => format!("{id} no longer has a retirement date ({was}){by}."),
            }
        }
        Some(EventKind::ModelRetired) if m.reason.as_deref() == Some("removed") => format!(
            "{id} is no longer in {}'s model list: it was retired or deleted{by}.",
            event.source
        ),
        Some(EventKind::ModelRetired) => format!(
            "{id} retired on {}: calls to it now fail{by}.",
            m.retires_on.as_deref().unwrap_or("its date")
        ),
        _ => format!("Model {id}: {}{by}.", event.event_type),
    }
}

/// The facts of a model alert, after the source.
pub(super) fn facts(event: &Event, out: &mut Vec<(FactKind, String)>) {
    out.push((FactKind::Model, event.subject().to_string()));
    let Some(m) = &event.model else { return };
    if let Some(b) = &m.base {
        out.push((FactKind::BaseModel, b.clone()));
    }
    if let Some(w) = when(m) {
        out.push((FactKind::Retires, w));
    }
    if let Some(p) = &m.previous_retires_on {
        out.push((FactKind::PreviousDate, p.clone()));
    }
    if let Some(j) = &m.job {
        out.push((FactKind::Job, j.clone()));
    }
}
