//! One field that changed between two snapshots of a job.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field that changed, by dotted path (`hyperparameters.n_epochs`); a missing field is `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub from: Value,
    pub to: Value,
}
