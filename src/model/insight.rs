//! Training insight as events carry it (DESIGN.md's `insight` object): where a run is, its
//! losses, the checkpoint to use, its cost, and what the overfitting and divergence checks
//! found. The types only; the `insight` module computes them.

use serde::{Deserialize, Serialize};

/// The checkpoint to use, as alerts name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    pub step: u64,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_valid_loss: Option<f64>,
}

/// What `fine_tuning.job.overfitting` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverfitNote {
    /// The step at which it was established.
    pub step: u64,
    /// Where the smoothed validation loss was lowest.
    pub best_step: u64,
    pub best_valid_loss: f64,
    pub valid_loss: f64,
}

/// What `fine_tuning.job.diverging` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergeNote {
    pub step: u64,
    pub reason: String,
}

/// One point of the loss chart: step, training loss, validation loss.
pub type CurvePoint = (u64, Option<f64>, Option<f64>);

/// DESIGN.md's `insight` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<u64>,
    /// `step / total_steps`, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Unix seconds: the job's `estimated_finish`, else projected from the metrics' pace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nan")]
    pub train_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nan")]
    pub valid_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nan")]
    pub full_valid_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nan")]
    pub train_mean_token_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nan")]
    pub valid_mean_token_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_checkpoint: Option<BestCheckpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// True while running (projected from progress), false once `trained_tokens` is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_estimated: Option<bool>,
    /// For `fine_tuning.job.progress`: the mark crossed, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overfitting: Option<OverfitNote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverging: Option<DivergeNote>,
}

/// JSON has no NaN: a loss that is NaN or infinite is sent as the string `"NaN"`, `"inf"`.
mod nan {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) if x.is_finite() => s.serialize_f64(*x),
            Some(x) => s.serialize_str(&x.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }
}

impl Insight {
    /// Whether nothing is known (then alerts carry no `insight`).
    pub fn is_empty(&self) -> bool {
        *self == Insight::default()
    }
}
