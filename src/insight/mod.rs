//! Training insight, the pure part: metric points read loosely from a job's events, checkpoints,
//! and what a series says — progress, the best checkpoint, overfitting and divergence.
//!
//! No I/O and no clock here: the reading of `…/events` and `…/checkpoints` and the storing of
//! what they hold belong to the source and the store. Every function takes any series (empty,
//! one point, unsorted, NaN, huge) without panicking.

pub mod analysis;
pub mod metrics;

pub use analysis::{Diverging, Overfitting, best_checkpoint, diverging, overfitting, progress};
pub use metrics::{Checkpoint, MetricPoint, series};
