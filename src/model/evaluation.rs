//! What an evaluation of a new model says (DESIGN.md, "Evaluating a new model"): each side's pass
//! rate with its interval, the cases fixed and broken, the paired test, the verdict, the graders'
//! counts, the worst cases, cost and duration. It travels in the `evaluation` object of
//! `fine_tuning.job.evaluated` and `fine_tuning.job.evaluation_failed`. No prompt or output text
//! is part of it, unless the source asked for outputs (`show_outputs`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The verdict of a paired comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    NoDifference,
    Inconclusive,
}

impl Verdict {
    /// The word alerts use: "improved", "no difference".
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::NoDifference => "no difference",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Why an evaluation did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The estimate was above `max_cost_usd`, or the run reached it.
    Budget,
    /// The run passed its `deadline`.
    Deadline,
    /// The model still answered 404 `model_not_found` after `wait_ready`.
    ModelNotReady,
    /// The provider refused or failed a request for good.
    ProviderError,
    /// The cases file could not be read.
    Cases,
    /// The source ran `max_runs_per_day` evaluations in the last 24 hours.
    DailyLimit,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Budget => "budget",
            FailReason::Deadline => "deadline",
            FailReason::ModelNotReady => "model_not_ready",
            FailReason::ProviderError => "provider_error",
            FailReason::Cases => "cases",
            FailReason::DailyLimit => "daily_limit",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model's side: its cases passed of those answered, and the Wilson 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub model: String,
    pub passed: u32,
    pub total: u32,
    /// passed / total (0 when nothing was answered).
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// A grader's count over the new model's answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraderCount {
    pub passed: u32,
    pub failed: u32,
}

/// A case the new model failed: its id, the grader that failed and why (no output text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worst {
    pub id: String,
    pub grader: String,
    pub reason: String,
    /// With `show_outputs`: at most 120 characters of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A fine-tune's suffix (`ft:BASE:ORG:SUFFIX:ID` → `SUFFIX`), for the `previous` baseline;
/// `None` for an id without one.
pub fn suffix_of(model: &str) -> Option<&str> {
    let rest = model.strip_prefix("ft:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [_, _, suffix, _] if !suffix.is_empty() => Some(suffix),
        _ => None,
    }
}

/// Which model of an evaluation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Model,
    Baseline,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Model => "model",
            Role::Baseline => "baseline",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "model" => Some(Role::Model),
            "baseline" => Some(Role::Baseline),
            _ => None,
        }
    }
}

/// One (case, model) result, as stored the moment it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub case_id: String,
    pub role: Role,
    pub passed: bool,
    /// The first grader that failed, and why (no output text).
    pub grader: Option<String>,
    pub reason: Option<String>,
    /// What the request cost, in millionths of a USD.
    pub cost_micros: i64,
    /// With `show_outputs`: at most 120 characters of the answer.
    pub output: Option<String>,
}

/// The `evaluation` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The job whose model was evaluated.
    pub job: String,
    pub model: Side,
    /// `None` when the baseline is "none".
    pub baseline: Option<Side>,
    /// Cases the new model passes and the baseline fails.
    pub fixed: u32,
    /// Cases the baseline passes and the new model fails.
    pub broken: u32,
    /// The exact two-sided sign test on fixed and broken; `None` without a baseline.
    pub p: Option<f64>,
    pub verdict: Verdict,
    /// Cases in the run (after `sample`).
    pub cases: u32,
    pub graders: BTreeMap<String, GraderCount>,
    /// Up to three cases the new model failed.
    pub worst: Vec<Worst>,
    pub cost_usd: f64,
    pub duration_s: f64,
    /// Whether the run stopped before every case was answered (budget, deadline).
    pub stopped_early: bool,
    /// For `evaluation_failed`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailReason>,
    /// For `evaluation_failed`: one sentence on what happened (no case text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Evaluation {
    /// The one sentence alerts lead with: "`ft:…:AbC` passed 46/50 (92 %, 81–97 %); base passed
    /// 31/50 (62 %): improved (16 fixed, 1 broke, p < 0.001); cost $0.41".
    pub fn sentence(&self) -> String {
        let pct = |x: f64| format!("{:.0} %", x * 100.0);
        let m = &self.model;
        let mut s = format!(
            "{} passed {}/{} ({}, {}–{})",
            m.model,
            m.passed,
            m.total,
            pct(m.rate),
            (m.low * 100.0).round(),
            pct(m.high)
        );
        if let Some(b) = &self.baseline {
            s.push_str(&format!(
                "; {} passed {}/{} ({})",
                b.model,
                b.passed,
                b.total,
                pct(b.rate)
            ));
        }
        match (&self.reason, &self.baseline) {
            (Some(r), _) => {
                s = format!(
                    "Evaluation stopped ({}): {}. So far: {s}",
                    r.as_str(),
                    self.detail.as_deref().unwrap_or("no verdict")
                );
            }
            (None, Some(_)) => {
                let p = match self.p {
                    Some(p) if p < 0.001 => "p < 0.001".to_string(),
                    Some(p) => format!("p = {p:.3}"),
                    None => "no test".to_string(),
                };
                s.push_str(&format!(
                    ": {} ({} fixed, {} broke, {p})",
                    self.verdict.words(),
                    self.fixed,
                    self.broken
                ));
            }
            (None, None) => s.push_str(": no baseline"),
        }
        let cost = match self.cost_usd {
            c if c > 0.0 && c < 0.01 => "under $0.01".to_string(),
            c => format!("${c:.2}"),
        };
        format!("{s}; cost {cost}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(model: &str, passed: u32, total: u32, low: f64, high: f64) -> Side {
        Side {
            model: model.into(),
            passed,
            total,
            rate: f64::from(passed) / f64::from(total),
            low,
            high,
        }
    }

    #[test]
    fn the_sentence_reads_like_the_design() {
        let e = Evaluation {
            job: "ftjob-1".into(),
            model: side("ft:gpt-4.1-mini:acme::AbC", 46, 50, 0.81, 0.97),
            baseline: Some(side("gpt-4.1-mini", 31, 50, 0.48, 0.74)),
            fixed: 16,
            broken: 1,
            p: Some(0.0003),
            verdict: Verdict::Improved,
            cases: 50,
            graders: BTreeMap::new(),
            worst: Vec::new(),
            cost_usd: 0.41,
            duration_s: 12.0,
            stopped_early: false,
            reason: None,
            detail: None,
        };
        assert_eq!(
            e.sentence(),
            "ft:gpt-4.1-mini:acme::AbC passed 46/50 (92 %, 81–97 %); gpt-4.1-mini passed 31/50 \
             (62 %): improved (16 fixed, 1 broke, p < 0.001); cost $0.41"
        );
    }
}
