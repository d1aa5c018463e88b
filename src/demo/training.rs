//! A simulated training run: the metric events and checkpoints a running job accumulates, in
//! the shapes of OpenAI's `…/events` and `…/checkpoints`, on the simulation's clock. The curves
//! are smooth with a little deterministic noise; an overfitting run's validation loss turns up
//! after 45 % of the steps while its training loss keeps falling.

use std::time::Duration;

use serde_json::{Value, json};

/// How a simulated job trains.
#[derive(Debug, Clone)]
pub struct Training {
    /// When the first step is taken and when the last is, from the simulation's start.
    pub from: Duration,
    pub to: Duration,
    pub total_steps: u64,
    /// A metric event every this many steps.
    pub every: u64,
    /// Epochs: a checkpoint at the end of each.
    pub epochs: u64,
    /// Whether the validation loss turns up.
    pub overfits: bool,
    /// Unix seconds of the simulation's start, for `created_at`.
    pub epoch_unix: i64,
    /// For checkpoint model names: `ft:BASE:demo:NAME:ckpt-step-N`.
    pub model_prefix: String,
}

impl Training {
    fn x(&self, step: u64) -> f64 {
        step as f64 / self.total_steps.max(1) as f64
    }

    pub fn train_loss(&self, step: u64) -> f64 {
        let x = self.x(step);
        0.35 + 1.65 * (-4.5 * x).exp() + 0.03 * (37.0 * x).sin()
    }

    pub fn valid_loss(&self, step: u64) -> f64 {
        let x = self.x(step);
        if self.overfits {
            0.45 + 1.6 * (-4.5 * x).exp() + 2.5 * (x - 0.45).max(0.0).powf(1.5)
        } else {
            self.train_loss(step) + 0.08 + 0.01 * (23.0 * x).cos()
        }
    }

    /// When `step` is taken, from the simulation's start.
    fn time_of(&self, step: u64) -> Duration {
        let span = self.to.saturating_sub(self.from);
        self.from + span.mul_f64(self.x(step))
    }

    fn unix(&self, at: Duration) -> i64 {
        self.epoch_unix + at.as_secs() as i64
    }

    /// The job's events at `elapsed`, newest first.
    pub fn events(&self, job_id: &str, elapsed: Duration) -> Vec<Value> {
        if elapsed < self.from {
            return Vec::new();
        }
        let mut out = vec![json!({
            "object": "fine_tuning.job.event", "id": format!("ftevent-{job_id}-start"),
            "created_at": self.unix(self.from), "level": "info",
            "message": "Fine-tuning job started", "data": null, "type": "message"})];
        let mut step = self.every;
        while step <= self.total_steps && self.time_of(step) <= elapsed {
            let accuracy = |loss: f64| (1.0 - loss / 3.0).clamp(0.0, 1.0);
            let (t, v) = (self.train_loss(step), self.valid_loss(step));
            out.push(json!({
                "object": "fine_tuning.job.event", "id": format!("ftevent-{job_id}-{step}"),
                "created_at": self.unix(self.time_of(step)), "level": "info",
                "message": format!("Step {step}/{}: training loss={t:.4}, validation loss={v:.4}",
                                   self.total_steps),
                "type": "metrics",
                "data": {"step": step, "total_steps": self.total_steps,
                         "train_loss": t, "train_mean_token_accuracy": accuracy(t),
                         "valid_loss": v, "valid_mean_token_accuracy": accuracy(v)}}));
            step += self.every;
        }
        out.reverse();
        out
    }

    /// The job's checkpoints at `elapsed` (one per finished epoch), newest first.
    pub fn checkpoints(&self, job_id: &str, elapsed: Duration) -> Vec<Value> {
        let per_epoch = self.total_steps / self.epochs.max(1);
        let mut out: Vec<Value> = (1..=self.epochs)
            .map(|e| if e == self.epochs { self.total_steps } else { e * per_epoch })
            .filter(|s| self.time_of(*s) <= elapsed)
            .map(|step| {
                let v = self.valid_loss(step);
                json!({
                    "object": "fine_tuning.job.checkpoint",
                    "id": format!("ftckpt-{job_id}-{step}"),
                    "created_at": self.unix(self.time_of(step)),
                    "fine_tuned_model_checkpoint": format!("{}:ckpt-step-{step}", self.model_prefix),
                    "fine_tuning_job_id": job_id, "step_number": step,
                    "metrics": {"step": step, "train_loss": self.train_loss(step),
                                "valid_loss": v, "full_valid_loss": v + 0.01,
                                "full_valid_mean_token_accuracy": (1.0 - v / 3.0).clamp(0.0, 1.0)}})
            })
            .collect();
        out.reverse();
        out
    }
}

/// One page of a newest-first list, OpenAI-style: `after` an id, `limit` items.
pub fn page(items: Vec<Value>, after: Option<&str>, limit: usize) -> Value {
    let start = after
        .and_then(|a| items.iter().position(|i| i["id"] == a).map(|p| p + 1))
        .unwrap_or(0);
    let rest: Vec<Value> = items.into_iter().skip(start).collect();
    let has_more = rest.len() > limit;
    let data: Vec<Value> = rest.into_iter().take(limit).collect();
    json!({"object": "list", "data": data, "has_more": has_more})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::{overfitting, series};

    fn run(overfits: bool) -> Training {
        Training {
            from: Duration::from_secs(0),
            to: Duration::from_secs(10),
            total_steps: 200,
            every: 10,
            epochs: 3,
            overfits,
            epoch_unix: 1_700_000_000,
            model_prefix: "ft:m:demo:x".into(),
        }
    }

    #[test]
    fn the_overfitting_run_is_caught_before_it_ends_and_the_clean_one_never() {
        let all = Duration::from_secs(10);
        let bad = series(&run(true).events("j", all));
        assert_eq!(bad.len(), 20);
        let o = overfitting(&bad, 0.10, 3).expect("the demo shows one overfitting warning");
        assert!(o.step < 200 && o.best_step < o.step, "{o:?}");
        assert_eq!(
            overfitting(&series(&run(false).events("j", all)), 0.10, 3),
            None
        );
    }

    #[test]
    fn events_and_checkpoints_appear_in_time_and_page_newest_first() {
        let t = run(false);
        assert_eq!(t.events("j", Duration::from_secs(5)).len(), 1 + 10);
        let c = t.checkpoints("j", Duration::from_secs(10));
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["step_number"], 200);
        let p = page(t.events("j", Duration::from_secs(10)), None, 5);
        assert_eq!(p["data"][0]["data"]["step"], 200);
        assert_eq!(p["has_more"], true);
        let last_id = p["data"][4]["id"].as_str().unwrap().to_string();
        let next = page(t.events("j", Duration::from_secs(10)), Some(&last_id), 5);
        assert_eq!(next["data"][0]["data"]["step"], 150);
    }
}
