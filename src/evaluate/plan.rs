//! What a run asks and what it concludes: the deterministic sample, the pre-flight estimate, and
//! the `evaluation` object summed from the stored (case, model) results.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::cases::Case;
use super::verdict;
use crate::model::evaluation::{CaseResult, Evaluation, FailReason, GraderCount, Role, Worst};

/// A model's price, USD per 1M tokens, input and output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    /// What `input` and `output` tokens cost, in millionths of a USD (rounded up).
    pub fn micros(self, input: u64, output: u64) -> i64 {
        let usd = (input as f64 * self.input + output as f64 * self.output) / 1e6;
        (usd * 1e6).ceil().clamp(0.0, i64::MAX as f64) as i64
    }
}

/// The cases of a run: all when `sample` is 0 or covers them, else `sample` of them picked by a
/// hash of the job id and each case id (the same job always gets the same cases), in file order.
pub fn sample<'a>(cases: &'a [Case], sample: u32, seed: &str) -> Vec<&'a Case> {
    let n = sample as usize;
    if n == 0 || n >= cases.len() {
        return cases.iter().collect();
    }
    let mut keyed: Vec<(Vec<u8>, usize)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut h = Sha256::new();
            h.update(seed.as_bytes());
            h.update([0]);
            h.update(c.id.as_bytes());
            (h.finalize().to_vec(), i)
        })
        .collect();
    keyed.sort();
    let mut picked: Vec<usize> = keyed.into_iter().take(n).map(|(_, i)| i).collect();
    picked.sort_unstable();
    picked.into_iter().map(|i| &cases[i]).collect()
}

/// The pre-flight estimate in USD: per case and model, (prompt chars / 4 + `max_tokens`) tokens
/// at that model's price (input for the prompt, output for the answer).
pub fn estimate(cases: &[&Case], max_tokens: u32, prices: &[Price]) -> f64 {
    let prompt: u64 = cases.iter().map(|c| c.prompt_chars() as u64 / 4).sum();
    let answers = cases.len() as u64 * u64::from(max_tokens);
    prices
        .iter()
        .map(|p| (prompt as f64 * p.input + answers as f64 * p.output) / 1e6)
        .sum()
}

/// What a finished (or stopped) run says.
pub struct Outcome<'a> {
    pub job: &'a str,
    pub model: &'a str,
    pub baseline: Option<&'a str>,
    /// The cases of the run, in order.
    pub cases: &'a [&'a Case],
    pub results: &'a [CaseResult],
    pub duration_s: f64,
    /// Why it stopped before the end, with one sentence; `None` when it finished.
    pub stopped: Option<(FailReason, String)>,
}

/// The `evaluation` object of `o`.
pub fn summarize(o: &Outcome<'_>) -> Evaluation {
    let by: HashMap<(&str, Role), &CaseResult> = o
        .results
        .iter()
        .map(|r| ((r.case_id.as_str(), r.role), r))
        .collect();
    let count = |role| {
        let answered: Vec<&&CaseResult> = o
            .cases
            .iter()
            .filter_map(|c| by.get(&(c.id.as_str(), role)))
            .collect();
        let passed = answered.iter().filter(|r| r.passed).count();
        (passed as u32, answered.len() as u32)
    };
    let (mp, mt) = count(Role::Model);
    let mut graders: BTreeMap<String, GraderCount> = BTreeMap::new();
    let mut worst = Vec::new();
    let (mut fixed, mut broken) = (0, 0);
    for case in o.cases {
        let Some(m) = by.get(&(case.id.as_str(), Role::Model)) else {
            continue;
        };
        for g in &case.graders.0 {
            let count = graders.entry(g.name().to_string()).or_default();
            if m.grader.as_deref() == Some(g.name()) {
                count.failed += 1;
            } else {
                count.passed += 1;
            }
        }
        if !m.passed && worst.len() < 3 {
            worst.push(Worst {
                id: case.id.clone(),
                grader: m.grader.clone().unwrap_or_default(),
                reason: m.reason.clone().unwrap_or_default(),
                output: m.output.clone(),
            });
        }
        if let Some(b) = by.get(&(case.id.as_str(), Role::Baseline)) {
            match (m.passed, b.passed) {
                (true, false) => fixed += 1,
                (false, true) => broken += 1,
                _ => {}
            }
        }
    }
    let baseline = o.baseline.map(|b| {
        let (bp, bt) = count(Role::Baseline);
        verdict::side(b, bp, bt)
    });
    let (v, p) = verdict::verdict(fixed, broken, o.stopped.is_some());
    let cost: i64 = o.results.iter().map(|r| r.cost_micros).sum();
    Evaluation {
        job: o.job.to_string(),
        model: verdict::side(o.model, mp, mt),
        p: baseline.as_ref().map(|_| p),
        baseline,
        fixed,
        broken,
        verdict: v,
        cases: o.cases.len() as u32,
        graders,
        worst,
        cost_usd: cost as f64 / 1e6,
        duration_s: o.duration_s,
        stopped_early: o.stopped.is_some(),
        reason: o.stopped.as_ref().map(|(r, _)| *r),
        detail: o.stopped.as_ref().map(|(_, d)| d.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::cases::parse;
    use crate::model::evaluation::Verdict;

    fn cases(n: usize) -> Vec<Case> {
        let text: String = (0..n)
            .map(|i| format!("{{\"id\": \"c{i}\", \"prompt\": \"12345678\", \"expect\": {{\"equals\": \"x\"}}}}\n"))
            .collect();
        parse(text.as_bytes()).unwrap().cases
    }

    #[test]
    fn the_sample_is_deterministic_per_job_and_in_file_order() {
        let all = cases(100);
        let a: Vec<&str> = sample(&all, 10, "ftjob-1")
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        let b: Vec<&str> = sample(&all, 10, "ftjob-1")
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        let c: Vec<&str> = sample(&all, 10, "ftjob-2")
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 10);
        assert!(
            a.windows(2)
                .all(|w| w[0][1..].parse::<u32>().unwrap() < w[1][1..].parse::<u32>().unwrap())
        );
        assert_eq!(sample(&all, 0, "x").len(), 100);
    }

    #[test]
    fn the_estimate_counts_prompt_and_answer_tokens_per_model() {
        let all = cases(10);
        let picked: Vec<&Case> = all.iter().collect();
        // 10 cases × (2 prompt tokens at $1/M + 100 answer tokens at $2/M), two models.
        let p = Price {
            input: 1.0,
            output: 2.0,
        };
        let usd = estimate(&picked, 100, &[p, p]);
        assert!((usd - 2.0 * 10.0 * (2.0 + 200.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn the_summary_pairs_cases_and_names_the_worst() {
        let all = cases(10);
        let picked: Vec<&Case> = all.iter().collect();
        let mut results = Vec::new();
        for (i, c) in all.iter().enumerate() {
            let fail = |role| CaseResult {
                case_id: c.id.clone(),
                role,
                passed: false,
                grader: Some("equals".into()),
                reason: Some("the answer is not the expected text".into()),
                cost_micros: 10,
                output: None,
            };
            let pass = |role| CaseResult {
                passed: true,
                grader: None,
                reason: None,
                ..fail(role)
            };
            results.push(if i < 9 {
                pass(Role::Model)
            } else {
                fail(Role::Model)
            });
            results.push(if i < 2 {
                pass(Role::Baseline)
            } else {
                fail(Role::Baseline)
            });
        }
        let e = summarize(&Outcome {
            job: "ftjob-1",
            model: "ft:m",
            baseline: Some("m"),
            cases: &picked,
            results: &results,
            duration_s: 1.0,
            stopped: None,
        });
        assert_eq!((e.model.passed, e.model.total), (9, 10));
        assert_eq!(e.baseline.as_ref().map(|b| b.passed), Some(2));
        assert_eq!((e.fixed, e.broken), (7, 0));
        assert_eq!(e.verdict, Verdict::Improved);
        assert_eq!(e.worst.len(), 1);
        assert_eq!(e.graders["equals"].failed, 1);
        assert!((e.cost_usd - 0.0002).abs() < 1e-12);
    }
}
