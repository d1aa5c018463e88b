//! Training insight, the pure part: metric points read loosely from a job's events, checkpoints,
//! and what a series says — progress, the best checkpoint, overfitting and divergence.
//!
//! `analysis` and `metrics` are pure: no I/O and no clock, and every function takes any series
//! (empty, one point, unsorted, NaN, huge) without panicking. The reading of a job's lists from a
//! provider into the store is a loop: `crate::run::insight_reader`.

pub mod analysis;
pub mod axis;
pub mod chart;
pub mod metrics;
pub mod summary;

pub use analysis::{Diverging, Overfitting, best_checkpoint, diverging, overfitting, progress};
pub use metrics::{Checkpoint, MetricPoint, series};
pub use summary::{Insight, curve, summarize};

/// A job's stored lists read: its metric series (by step) and its checkpoints.
pub fn parsed(lists: &crate::model::JobLists) -> (Vec<MetricPoint>, Vec<Checkpoint>) {
    (
        series(&lists.metric_events),
        lists
            .checkpoints
            .iter()
            .filter_map(Checkpoint::from_value)
            .collect(),
    )
}
