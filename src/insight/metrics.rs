//! Metric points and checkpoints as the API sends them, read loosely: any field may be missing,
//! numbers may come as strings (`"0.42"`, `"NaN"`), unknown fields are ignored (the raw event is
//! kept by whoever stores it).

use serde_json::Value;

/// One `type = "metrics"` event's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MetricPoint {
    pub step: u64,
    pub total_steps: Option<u64>,
    /// Unix seconds of the event, for the pace of training.
    pub at: Option<i64>,
    pub train_loss: Option<f64>,
    pub train_mean_token_accuracy: Option<f64>,
    pub valid_loss: Option<f64>,
    pub valid_mean_token_accuracy: Option<f64>,
    pub full_valid_loss: Option<f64>,
    pub full_valid_mean_token_accuracy: Option<f64>,
    /// Tokens trained so far, when the provider reports them with the metrics.
    pub trained_tokens: Option<u64>,
}

/// A number, or a string holding one (`"NaN"` is NaN; anything else is absent).
fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            t if t.eq_ignore_ascii_case("nan") => Some(f64::NAN),
            t => t.parse().ok(),
        },
        _ => None,
    }
}

/// A step count: a non-negative whole number, or a string holding one.
fn count(v: Option<&Value>) -> Option<u64> {
    let n = number(v)?;
    (n.is_finite() && n >= 0.0 && n <= u64::MAX as f64).then_some(n as u64)
}

impl MetricPoint {
    /// The point of a job event, when it is a metrics event with a step.
    pub fn from_event(event: &Value) -> Option<MetricPoint> {
        if event.get("type").and_then(Value::as_str) != Some("metrics") {
            return None;
        }
        let data = event.get("data")?;
        let f = |k: &str| number(data.get(k));
        Some(MetricPoint {
            step: count(data.get("step"))?,
            total_steps: count(data.get("total_steps")),
            at: event.get("created_at").and_then(Value::as_i64),
            train_loss: f("train_loss"),
            train_mean_token_accuracy: f("train_mean_token_accuracy"),
            valid_loss: f("valid_loss"),
            valid_mean_token_accuracy: f("valid_mean_token_accuracy"),
            full_valid_loss: f("full_valid_loss"),
            full_valid_mean_token_accuracy: f("full_valid_mean_token_accuracy"),
            trained_tokens: count(data.get("trained_tokens")),
        })
    }
}

/// The metric points among `events` (in any order), sorted by step, one per step (the last
/// given wins).
pub fn series(events: &[Value]) -> Vec<MetricPoint> {
    let mut points: Vec<MetricPoint> = events.iter().filter_map(MetricPoint::from_event).collect();
    points.sort_by_key(|p| p.step);
    let mut out: Vec<MetricPoint> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(last) if last.step == p.step => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// One checkpoint of a job: a model that can be used instead of the final one.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub step: u64,
    pub model: String,
    pub full_valid_loss: Option<f64>,
    pub valid_loss: Option<f64>,
    pub full_valid_mean_token_accuracy: Option<f64>,
}

impl Checkpoint {
    /// A checkpoint object of `GET …/checkpoints`, when it names a model and a step.
    pub fn from_value(v: &Value) -> Option<Checkpoint> {
        let metrics = v.get("metrics");
        let m = |k: &str| number(metrics.and_then(|m| m.get(k)));
        Some(Checkpoint {
            step: count(v.get("step_number"))?,
            model: v
                .get("fine_tuned_model_checkpoint")
                .and_then(Value::as_str)?
                .to_string(),
            full_valid_loss: m("full_valid_loss"),
            valid_loss: m("valid_loss"),
            full_valid_mean_token_accuracy: m("full_valid_mean_token_accuracy"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_events_are_read_loosely() {
        let e = json!({"type": "metrics", "created_at": 100, "data": {"step": "40",
            "total_steps": 100, "train_loss": "1.25", "valid_loss": "NaN",
            "train_mean_token_accuracy": 0.7, "extra": {"x": 1}}});
        let p = MetricPoint::from_event(&e).unwrap();
        assert_eq!((p.step, p.total_steps, p.at), (40, Some(100), Some(100)));
        assert_eq!(p.train_loss, Some(1.25));
        assert!(p.valid_loss.unwrap().is_nan());
        assert_eq!(p.full_valid_loss, None);
        assert_eq!(
            MetricPoint::from_event(&json!({"type": "message", "data": null})),
            None
        );
        assert_eq!(
            MetricPoint::from_event(&json!({"type": "metrics", "data": {}})),
            None
        );
        assert_eq!(
            MetricPoint::from_event(&json!({"type": "metrics", "data": {"step": -3}})),
            None
        );
    }

    #[test]
    fn a_series_is_sorted_by_step_with_one_point_each() {
        let ev = |step: u64, loss: f64| json!({"type": "metrics", "data": {"step": step, "train_loss": loss}});
        let s = series(&[ev(3, 0.3), ev(1, 0.9), ev(2, 0.5), ev(2, 0.6)]);
        let steps: Vec<u64> = s.iter().map(|p| p.step).collect();
        assert_eq!(steps, [1, 2, 3]);
        assert_eq!(s[1].train_loss, Some(0.6), "the last given wins");
    }

    #[test]
    fn the_checkpoint_fixture_reads() {
        let v: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai/ft_list_checkpoints.json"
        ))
        .unwrap();
        let c: Vec<Checkpoint> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Checkpoint::from_value)
            .collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].step, 2000);
        assert_eq!(c[0].full_valid_loss, Some(0.134));
        assert!(c[1].model.ends_with(":ckpt-step-1000"));
    }
}
