//! The vocabulary, the ground floor: what a job, a batch, a status, an event, a change and
//! training insight are, the kinds of events, the clock, and the rules for strings from outside
//! (`inert`). No I/O, and nothing of the rest of the crate is imported here: every other room
//! builds on these words.

pub mod change;
pub mod clock;
pub mod decide;
pub mod evaluation;
pub mod event;
pub mod inert;
pub mod insight;
pub mod job;
pub mod kind;
pub mod plan;
pub mod schedule;
pub mod secret;
pub mod silence;

pub use change::Change;
pub use decide::{Decisions, EvaluationOrder, JobLists, Raised, Signals};
pub use kind::{EventDraft, EventKind};
