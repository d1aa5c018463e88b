//! The `insight` object of a job alert: what the series, the checkpoints and the job say, in one
//! value that is stored with the event (so every retry sends the same numbers) and rendered by
//! every notifier. Fields are absent when unknown; nothing here guesses.

use serde_json::Value;

use super::analysis::{Diverging, Overfitting, best_checkpoint, progress};
use super::metrics::{Checkpoint, MetricPoint};
use crate::config::Prices;

/// Points of the loss curve kept with an event, at most (the chart is 600 px wide).
pub const CURVE_POINTS: usize = 300;

pub use crate::model::insight::{BestCheckpoint, CurvePoint, DivergeNote, Insight, OverfitNote};

/// What one job's stored events and checkpoints say, with the job object (`raw`) for
/// `estimated_finish`, `trained_tokens` and the base model. `None` when nothing is known.
pub fn summarize(
    raw: &Value,
    series: &[MetricPoint],
    checkpoints: &[Checkpoint],
    prices: &Prices,
) -> Option<Insight> {
    let mut insight = Insight::default();
    let status = raw.get("status").and_then(Value::as_str).unwrap_or("");
    let finished = status == "succeeded";
    if let Some(p) = progress(series) {
        insight.step = Some(p.step);
        insight.total_steps = Some(p.total_steps);
        insight.progress = Some(if finished { 1.0 } else { p.fraction });
        insight.eta = p.eta;
    } else if let Some(last) = series.last() {
        insight.step = Some(last.step);
    }
    if finished {
        insight.eta = None;
    } else if let Some(at) = raw.get("estimated_finish").and_then(Value::as_i64) {
        insight.eta = Some(at);
    }
    if !matches!(
        status,
        "running" | "paused" | "validating_files" | "queued" | ""
    ) {
        // A finished job has no time left.
        insight.eta = None;
    }
    // The latest value of each metric (points may lack some: validation runs less often).
    let latest = |f: fn(&MetricPoint) -> Option<f64>| series.iter().rev().find_map(f);
    insight.train_loss = latest(|p| p.train_loss);
    insight.valid_loss = latest(|p| p.valid_loss);
    insight.full_valid_loss = latest(|p| p.full_valid_loss);
    insight.train_mean_token_accuracy = latest(|p| p.train_mean_token_accuracy);
    insight.valid_mean_token_accuracy = latest(|p| p.valid_mean_token_accuracy);
    insight.best_checkpoint = best_checkpoint(checkpoints).map(|c| BestCheckpoint {
        step: c.step,
        model: crate::inert::excerpt(&c.model, 300),
        valid_loss: c.valid_loss.filter(|v| v.is_finite()),
        full_valid_loss: c.full_valid_loss.filter(|v| v.is_finite()),
    });
    let price = raw
        .get("model")
        .and_then(Value::as_str)
        .and_then(|m| prices.per_million(m));
    if let Some(price) = price {
        let final_tokens = raw.get("trained_tokens").and_then(Value::as_u64);
        match final_tokens {
            Some(t) if finished || status == "failed" || status == "cancelled" => {
                insight.cost_usd = Some(round_cents(t as f64 * price / 1e6));
                insight.cost_estimated = Some(false);
            }
            // While running: the tokens trained so far (from the job, or the newest metric point
            // that reports them), projected to the whole run by progress.
            _ => {
                let so_far =
                    final_tokens.or_else(|| series.iter().rev().find_map(|p| p.trained_tokens));
                if let (Some(t), Some(f)) = (so_far, insight.progress.filter(|f| *f > 0.0)) {
                    insight.cost_usd = Some(round_cents(t as f64 / f * price / 1e6));
                    insight.cost_estimated = Some(true);
                }
            }
        }
    }
    job_numbers(raw, &mut insight, finished);
    (!insight.is_empty()).then_some(insight)
}

/// What the job object itself says where the series says nothing (providers without a metrics
/// list): its progress (with an ETA projected from its pace since it was created), its final
/// losses, and the cost the provider estimates.
fn job_numbers(raw: &Value, insight: &mut Insight, finished: bool) {
    let num = |k: &str| raw.get(k).and_then(Value::as_f64).filter(|v| v.is_finite());
    if insight.progress.is_none()
        && let Some(p) = num("progress").map(|p| p.clamp(0.0, 1.0))
    {
        insight.progress = Some(if finished { 1.0 } else { p });
        let (start, at) = (
            raw.get("created_at").and_then(Value::as_i64),
            raw.get("updated_at").and_then(Value::as_i64),
        );
        if let (Some(start), Some(at), false) = (start, at, finished)
            && p > 0.0
            && p < 1.0
            && at > start
        {
            let total = (at - start) as f64 / p;
            insight.eta = Some(start.saturating_add(total.min(1e10) as i64));
        }
    }
    insight.train_loss = insight.train_loss.or_else(|| num("train_loss"));
    insight.valid_loss = insight.valid_loss.or_else(|| num("valid_loss"));
    if insight.cost_usd.is_none()
        && let Some(c) = num("cost_usd")
    {
        insight.cost_usd = Some(round_cents(c));
        insight.cost_estimated = Some(!finished);
    }
}

fn round_cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

impl From<Overfitting> for OverfitNote {
    fn from(o: Overfitting) -> OverfitNote {
        OverfitNote {
            step: o.step,
            best_step: o.best_step,
            best_valid_loss: o.best_valid_loss,
            valid_loss: o.valid_loss,
        }
    }
}

impl From<Diverging> for DivergeNote {
    fn from(d: Diverging) -> DivergeNote {
        DivergeNote {
            step: d.step,
            reason: d.reason,
        }
    }
}

/// The loss curve of `series` for a chart: at most [`CURVE_POINTS`] points, evenly picked (the
/// last point always kept).
pub fn curve(series: &[MetricPoint]) -> Vec<CurvePoint> {
    let points: Vec<&MetricPoint> = series
        .iter()
        .filter(|p| p.train_loss.is_some() || p.valid_loss.is_some())
        .collect();
    let n = points.len();
    if n == 0 {
        return Vec::new();
    }
    let keep = n.min(CURVE_POINTS);
    let mut out: Vec<CurvePoint> = (0..keep)
        .map(|i| {
            points[if keep == 1 {
                n - 1
            } else {
                i * (n - 1) / (keep - 1)
            }]
        })
        .map(|p| (p.step, p.train_loss, p.valid_loss))
        .collect();
    out.dedup_by_key(|p| p.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(step: u64, train: f64, valid: Option<f64>) -> MetricPoint {
        MetricPoint {
            step,
            total_steps: Some(100),
            at: Some(1_000_000 + step as i64 * 6),
            train_loss: Some(train),
            valid_loss: valid,
            ..MetricPoint::default()
        }
    }

    fn prices() -> Prices {
        Prices(
            [
                ("gpt-4o-mini".to_string(), 3.0),
                ("gpt-4o".to_string(), 25.0),
            ]
            .into(),
        )
    }

    #[test]
    fn a_running_job_has_progress_eta_and_latest_losses_but_no_cost_without_tokens() {
        let s = [point(10, 2.0, Some(2.1)), point(40, 1.2, None)];
        let raw = json!({"status": "running", "model": "gpt-4o-mini-2024-07-18"});
        let i = summarize(&raw, &s, &[], &prices()).unwrap();
        assert_eq!(
            (i.step, i.total_steps, i.progress),
            (Some(40), Some(100), Some(0.4))
        );
        assert_eq!(i.eta, Some(1_000_000 + 600), "projected from the pace");
        assert_eq!(i.train_loss, Some(1.2));
        assert_eq!(i.valid_loss, Some(2.1), "the latest known validation loss");
        assert_eq!(
            i.cost_usd, None,
            "no tokens reported: no cost, never a guess"
        );
    }

    #[test]
    fn the_job_s_estimated_finish_wins_over_the_projection() {
        let raw = json!({"status": "running", "estimated_finish": 42});
        let i = summarize(&raw, &[point(10, 2.0, None)], &[], &Prices::default()).unwrap();
        assert_eq!(i.eta, Some(42));
    }

    #[test]
    fn cost_is_final_on_success_estimated_while_running_and_absent_without_a_price() {
        let done = json!({"status": "succeeded", "model": "gpt-4o-mini-2024-07-18",
                          "trained_tokens": 1_000_000});
        let i = summarize(&done, &[], &[], &prices()).unwrap();
        assert_eq!((i.cost_usd, i.cost_estimated), (Some(3.0), Some(false)));
        let running = json!({"status": "running", "model": "gpt-4o-2024-08-06",
                             "trained_tokens": 100_000});
        let i = summarize(&running, &[point(25, 1.0, None)], &[], &prices()).unwrap();
        assert_eq!((i.cost_usd, i.cost_estimated), (Some(10.0), Some(true)));
        let unknown = json!({"status": "succeeded", "model": "llama-3", "trained_tokens": 5});
        assert_eq!(summarize(&unknown, &[], &[], &prices()), None);
    }

    #[test]
    fn the_best_checkpoint_is_named_and_nothing_known_is_none() {
        let c = Checkpoint {
            step: 30,
            model: "ft:gpt-4o-mini:acme::ckpt-step-30".into(),
            full_valid_loss: Some(1.27),
            valid_loss: Some(1.25),
            full_valid_mean_token_accuracy: None,
        };
        let i = summarize(
            &json!({"status": "succeeded"}),
            &[],
            &[c],
            &Prices::default(),
        )
        .unwrap();
        let b = i.best_checkpoint.unwrap();
        assert_eq!((b.step, b.full_valid_loss), (30, Some(1.27)));
        assert_eq!(summarize(&json!({}), &[], &[], &Prices::default()), None);
    }

    #[test]
    fn nan_losses_travel_as_strings_and_come_back() {
        let i = Insight {
            train_loss: Some(f64::NAN),
            valid_loss: Some(1.5),
            ..Insight::default()
        };
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["train_loss"], "NaN");
        let back: Insight = serde_json::from_value(v).unwrap();
        assert!(back.train_loss.unwrap().is_nan());
    }

    #[test]
    fn the_curve_is_bounded_and_keeps_the_ends() {
        let s: Vec<MetricPoint> = (1..=1000).map(|i| point(i, 1.0, None)).collect();
        let c = curve(&s);
        assert!(c.len() <= CURVE_POINTS);
        assert_eq!((c[0].0, c[c.len() - 1].0), (1, 1000));
        assert!(curve(&[]).is_empty());
        assert_eq!(curve(&s[..1]).len(), 1);
    }
}
