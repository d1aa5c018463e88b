//! What a metric series says: how far a job is, when it will finish, which checkpoint is best,
//! and whether it is overfitting or diverging. Pure functions over any series.

use super::metrics::{Checkpoint, MetricPoint};

/// Weight of the newest point in the exponential moving average that smooths the losses
/// (batch losses are noisy; a single bad batch must not raise an alert).
const SMOOTHING: f64 = 0.3;
/// Divergence: the training loss above this many times its smoothed minimum…
const DIVERGE_FACTOR: f64 = 3.0;
/// …after this share of the steps (the first steps of a run are allowed to wobble).
const DIVERGE_AFTER: f64 = 0.10;

/// How far a job is: from its newest metric point with a `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub step: u64,
    pub total_steps: u64,
    /// `step / total_steps`, within 0..=1.
    pub fraction: f64,
    /// Projected from the pace of the points (unix seconds), when it can be.
    pub eta: Option<i64>,
}

/// The progress of `series` (sorted by step), if any point knows the total.
pub fn progress(series: &[MetricPoint]) -> Option<Progress> {
    let last = series.iter().rev().find(|p| p.total_steps.is_some())?;
    let total = last.total_steps?.max(1);
    let fraction = (last.step as f64 / total as f64).clamp(0.0, 1.0);
    // The pace between the first and the last timed points.
    let timed: Vec<&MetricPoint> = series.iter().filter(|p| p.at.is_some()).collect();
    let eta = match (timed.first(), timed.last()) {
        (Some(a), Some(b)) if b.step > a.step => {
            let (ta, tb) = (a.at? as f64, b.at? as f64);
            let per_step = (tb - ta) / (b.step - a.step) as f64;
            let left = total.saturating_sub(b.step) as f64 * per_step;
            (per_step.is_finite() && per_step >= 0.0 && left < 1e12).then_some((tb + left) as i64)
        }
        _ => None,
    };
    Some(Progress {
        step: last.step,
        total_steps: total,
        fraction,
        eta,
    })
}

/// The checkpoint to use: the lowest finite `full_valid_loss`, else the lowest `valid_loss`.
pub fn best_checkpoint(checkpoints: &[Checkpoint]) -> Option<&Checkpoint> {
    let lowest = |key: fn(&Checkpoint) -> Option<f64>| {
        checkpoints
            .iter()
            .filter_map(|c| key(c).filter(|l| l.is_finite()).map(|l| (l, c)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c)
    };
    lowest(|c| c.full_valid_loss).or_else(|| lowest(|c| c.valid_loss))
}

/// An exponential moving average that skips values that are not finite.
#[derive(Debug, Default, Clone, Copy)]
struct Smoothed(Option<f64>);

impl Smoothed {
    fn add(&mut self, v: Option<f64>) -> Option<f64> {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.0 = Some(match self.0 {
                Some(s) => s + SMOOTHING * (v - s),
                None => v,
            });
        }
        self.0
    }
}

/// The validation loss has turned up while the training loss did not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overfitting {
    /// The step at which it was established.
    pub step: u64,
    /// Where the smoothed validation loss was lowest: the point to go back to.
    pub best_step: u64,
    pub best_valid_loss: f64,
    pub valid_loss: f64,
}

/// Whether `series` (sorted by step) shows overfitting: the smoothed validation loss at least
/// `tolerance` (a fraction) above its minimum for `patience` consecutive points, while the
/// smoothed training loss stayed at or below where it was at that minimum.
pub fn overfitting(series: &[MetricPoint], tolerance: f64, patience: u32) -> Option<Overfitting> {
    let (mut valid, mut train) = (Smoothed::default(), Smoothed::default());
    // (step, smoothed valid loss, smoothed train loss) at the validation minimum.
    let mut best: Option<(u64, f64, Option<f64>)> = None;
    let mut above = 0u32;
    for p in series {
        let t = train.add(p.train_loss);
        let v_raw = p.valid_loss.or(p.full_valid_loss);
        if !v_raw.is_some_and(f64::is_finite) {
            continue;
        }
        let Some(v) = valid.add(v_raw) else { continue };
        match best {
            Some((_, min, _)) if v >= min => {}
            _ => {
                best = Some((p.step, v, t));
                above = 0;
                continue;
            }
        }
        let Some((best_step, min, train_at_min)) = best else {
            continue;
        };
        let train_held = match (t, train_at_min) {
            (Some(now), Some(then)) => now <= then * 1.01,
            _ => true,
        };
        if v >= min * (1.0 + tolerance.max(0.0)) && train_held {
            above += 1;
            if above >= patience.max(1) {
                return Some(Overfitting {
                    step: p.step,
                    best_step,
                    best_valid_loss: min,
                    valid_loss: v,
                });
            }
        } else {
            above = 0;
        }
    }
    None
}

/// The training loss blew up.
#[derive(Debug, Clone, PartialEq)]
pub struct Diverging {
    pub step: u64,
    /// "the training loss is NaN", "the training loss 9.1 is over 3× its low of 1.2".
    pub reason: String,
}

/// Whether `series` (sorted by step) diverges: a training loss that is NaN or infinite, or,
/// after the first 10 % of the steps, above three times its smoothed minimum.
pub fn diverging(series: &[MetricPoint]) -> Option<Diverging> {
    let total = series
        .iter()
        .rev()
        .find_map(|p| p.total_steps)
        .or_else(|| series.last().map(|p| p.step))
        .unwrap_or(0);
    let warm_up = (total as f64 * DIVERGE_AFTER) as u64;
    let mut smoothed = Smoothed::default();
    let mut low: Option<f64> = None;
    for p in series {
        let Some(loss) = p.train_loss else { continue };
        if !loss.is_finite() {
            return Some(Diverging {
                step: p.step,
                reason: format!("the training loss is {loss}"),
            });
        }
        if p.step > warm_up
            && let Some(l) = low
            && loss > DIVERGE_FACTOR * l
        {
            return Some(Diverging {
                step: p.step,
                reason: format!("the training loss {loss:.4} is over 3× its low of {l:.4}"),
            });
        }
        if let Some(s) = smoothed.add(Some(loss)) {
            low = Some(low.map_or(s, |l: f64| l.min(s)));
        }
    }
    None
}

/// What a running job's series raises, before "once per job" is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// The progress marks (percent) the series has reached, ascending.
    pub marks: Vec<u32>,
    pub overfitting: Option<Overfitting>,
    pub diverging: Option<Diverging>,
}

/// The signals of `series` (sorted by step) for the given marks and thresholds.
pub fn signals(series: &[MetricPoint], marks: &[u32], tolerance: f64, patience: u32) -> Signals {
    let percent = progress(series).map_or(0.0, |p| p.fraction * 100.0);
    Signals {
        marks: marks
            .iter()
            .copied()
            .filter(|m| f64::from(*m) <= percent)
            .collect(),
        overfitting: overfitting(series, tolerance, patience),
        diverging: diverging(series),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A series from (train, valid) losses, 10 steps apart, 100 steps in all, a minute a point.
    fn curve(points: &[(f64, f64)]) -> Vec<MetricPoint> {
        points
            .iter()
            .enumerate()
            .map(|(i, (t, v))| MetricPoint {
                step: 10 * (i as u64 + 1),
                total_steps: Some(10 * points.len() as u64),
                at: Some(1_000_000 + 60 * i as i64),
                train_loss: Some(*t),
                valid_loss: Some(*v),
                ..MetricPoint::default()
            })
            .collect()
    }

    fn falling(n: usize, noise: f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                let base = 2.0 * (-(i as f64) / 8.0).exp() + 0.5;
                // A deterministic zig-zag of ±noise.
                let wobble = if i % 2 == 0 { noise } else { -noise };
                (base * (1.0 + wobble), base * 1.05 * (1.0 - wobble))
            })
            .collect()
    }

    #[test]
    fn a_clean_falling_curve_raises_nothing() {
        let s = curve(&falling(40, 0.0));
        assert_eq!(overfitting(&s, 0.10, 3), None);
        assert_eq!(diverging(&s), None);
    }

    #[test]
    fn a_noisy_falling_curve_raises_nothing() {
        let s = curve(&falling(40, 0.06));
        assert_eq!(overfitting(&s, 0.10, 3), None);
        assert_eq!(diverging(&s), None);
    }

    #[test]
    fn validation_loss_turning_up_while_training_falls_is_overfitting_at_the_right_point() {
        let mut points = falling(20, 0.0);
        // From point 20 on, training keeps falling and validation climbs 4 % a point.
        let (mut t, mut v) = *points.last().unwrap();
        for _ in 0..20 {
            t *= 0.97;
            v *= 1.04;
            points.push((t, v));
        }
        let s = curve(&points);
        let o = overfitting(&s, 0.10, 3).expect("overfitting");
        assert!(
            (200..=330).contains(&o.step),
            "raised soon after the turn (step 200), not at once and not late: {o:?}"
        );
        assert!(o.best_step >= 150 && o.best_step <= 220, "{o:?}");
        assert!(o.valid_loss >= o.best_valid_loss * 1.10);
        assert_eq!(diverging(&s), None);
    }

    #[test]
    fn both_losses_rising_is_not_overfitting() {
        let mut points = falling(20, 0.0);
        let (mut t, mut v) = *points.last().unwrap();
        for _ in 0..20 {
            t *= 1.04;
            v *= 1.04;
            points.push((t, v));
        }
        assert_eq!(overfitting(&curve(&points), 0.10, 3), None);
    }

    #[test]
    fn nan_or_a_blow_up_is_divergence() {
        let mut points = falling(20, 0.0);
        points[12].0 = f64::NAN;
        let d = diverging(&curve(&points)).expect("NaN diverges");
        assert_eq!(d.step, 130);
        assert!(d.reason.contains("NaN"), "{d:?}");

        let mut points = falling(20, 0.0);
        points[15].0 = 50.0;
        let d = diverging(&curve(&points)).expect("a blow-up diverges");
        assert_eq!(d.step, 160);
        // Early wobbles (the first 10 % of steps) are forgiven.
        let mut points = falling(20, 0.0);
        points[1].0 = 20.0;
        assert_eq!(diverging(&curve(&points)), None);
    }

    #[test]
    fn progress_and_eta_follow_the_pace() {
        let s = curve(&falling(10, 0.0));
        let p = progress(&s[..4]).unwrap();
        assert_eq!((p.step, p.total_steps), (40, 100));
        assert!((p.fraction - 0.4).abs() < 1e-9);
        // 60 s per 10 steps; 60 steps left after the point at 1_000_180.
        assert_eq!(p.eta, Some(1_000_180 + 360));
        assert_eq!(progress(&[]), None);
    }

    #[test]
    fn the_best_checkpoint_has_the_lowest_full_validation_loss() {
        let c = |step, full: Option<f64>, valid: Option<f64>| Checkpoint {
            step,
            model: format!("ft:m:ckpt-step-{step}"),
            full_valid_loss: full,
            valid_loss: valid,
            full_valid_mean_token_accuracy: None,
        };
        let all = [
            c(1, Some(0.3), None),
            c(2, Some(f64::NAN), None),
            c(3, Some(0.2), None),
        ];
        assert_eq!(best_checkpoint(&all).unwrap().step, 3);
        let valid_only = [c(1, None, Some(0.5)), c(2, None, Some(0.4))];
        assert_eq!(best_checkpoint(&valid_only).unwrap().step, 2);
        assert_eq!(best_checkpoint(&[]), None);
    }
}
