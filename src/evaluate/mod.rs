//! Evaluating a new model (DESIGN.md, "Evaluating a new model"), the pure parts: the cases file
//! and its graders, the sample, the pre-flight estimate, and the verdict over stored results.
//! The requests are `crate::source::chat`'s; the run, its budget and deadline are
//! `crate::run::evaluator`'s; the results are the store's.

pub mod cases;
pub mod grade;
pub mod plan;
pub mod schema;
pub mod verdict;

pub use cases::{Case, Cases, CasesError};
