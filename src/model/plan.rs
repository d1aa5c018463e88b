//! Where an event's outbox rows go and when (DESIGN.md, "Fewer, better alerts"): one plan per
//! notifier the routes name. Grouping, quiet hours and silences decide which message carries a row
//! and when — never whether the row exists.

use super::event::Event;

/// One notifier's row for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub notifier: String,
    /// Carried by a group message instead of its own.
    pub group: Option<GroupPlan>,
    /// Held by quiet hours: until when (unix ms) and by which window.
    pub held: Option<(i64, String)>,
}

/// The group a row joins: rows of one notifier with one key share a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// The route's index and the `group_by` values.
    pub key: String,
    /// The earliest time the group may be sent (now + `group_wait`, or the end of quiet hours).
    pub flush_at_ms: i64,
    /// After a group of this key was sent, the next waits this long.
    pub interval_ms: i64,
    /// Lines in the message before "+N more".
    pub max_items: u32,
}

impl Plan {
    /// A row sent on its own, at once.
    pub fn plain(notifier: &str) -> Plan {
        Plan {
            notifier: notifier.to_string(),
            group: None,
            held: None,
        }
    }
}

/// Plans the rows of an event (the pipeline's routing, given to the store).
pub type Route<'a> = &'a (dyn Fn(&Event) -> Vec<Plan> + Sync);
