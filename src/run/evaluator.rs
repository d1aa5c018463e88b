//! Evaluations, run (DESIGN.md, "Evaluating a new model"): the loop that takes enqueued
//! evaluations (on PostgreSQL only the leader, and each by a claim), and one run — the cases
//! sampled, the estimate checked against `max_cost_usd`, every (case, model) not yet answered
//! asked at `concurrency`, graded and stored as it arrives, the cap and the deadline held, then the
//! verdict raised as an event. A run killed midway resumes where it was: what is stored is never
//! asked again. No case or answer text is logged: ids, counts, graders and reasons only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Baseline, Config, EvaluateConfig, SourceConfig};
use crate::evaluate::cases::{self, Case};
use crate::evaluate::plan::{self, Outcome, Price};
use crate::event::Event;
use crate::model::EventKind;
use crate::model::evaluation::{CaseResult, Evaluation, FailReason, Role};
use crate::source::chat::{ChatClient, ChatError};
use crate::store::{EvaluationRow, Finish, Store, StoreError};

/// How long a claim on a running evaluation lasts without renewal.
const CLAIM_MS: i64 = 60_000;
/// How often the loop looks for a new evaluation.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// The longest pause between two tries of a model that is not ready.
const NOT_READY_PAUSE: Duration = Duration::from_secs(30);

/// One evaluating source: its settings and its chat client.
#[derive(Clone)]
pub struct EvalSource {
    pub source: SourceConfig,
    pub evaluate: EvaluateConfig,
    pub client: ChatClient,
}

/// Where a run is, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub cost_usd: f64,
    pub elapsed: Duration,
}

/// What a run needs besides its row.
pub struct RunContext<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub eval: &'a EvalSource,
    pub clock: &'a Clock,
    /// The claim's holder: the daemon's instance, or `cli-PID`.
    pub holder: String,
    /// A daemon's run holds `max_runs_per_day` and fences its event by the leader's epoch.
    pub daemon: bool,
    pub stop: CancellationToken,
    pub progress: Option<&'a (dyn Fn(Progress) + Sync)>,
}

/// Takes and runs enqueued evaluations until `stop`.
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn evaluator(
    sources: HashMap<String, EvalSource>,
    store: Store,
    config: Arc<Config>,
    outbox: Arc<Notify>,
    clock: Clock,
    stop: CancellationToken,
) -> Result<(), StoreError> {
    loop {
        if !crate::run::leader::wait_to_lead(&store, &stop).await {
            return Ok(());
        }
        let holder = store.cluster().instance();
        let now = clock.now_ms();
        let h = holder.clone();
        let row = store
            .blocking(move |s| s.claim_evaluation(now, &h, now + CLAIM_MS))
            .await?;
        let Some(row) = row else {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(LOOK_EVERY) => continue,
            }
        };
        let Some(eval) = sources.get(&row.source) else {
            warn!(source = %row.source, job = %crate::inert::Inert(&row.job_id),
                  "an evaluation waits for a source that no longer evaluates; left waiting");
            let (id, h) = (row.id, holder.clone());
            store
                .blocking(move |s| s.renew_evaluation(id, &h, now + 3_600_000))
                .await?;
            continue;
        };
        let ctx = RunContext {
            store: &store,
            config: &config,
            eval,
            clock: &clock,
            holder,
            daemon: true,
            stop: stop.clone(),
            progress: None,
        };
        match run(&ctx, row).await {
            Ok(Some(_)) => outbox.notify_one(),
            Ok(None) => return Ok(()),
            Err(StoreError::Deposed { message, .. }) => warn!("{message}"),
            Err(e) => return Err(e),
        }
    }
}

/// Runs one evaluation to its end (or its stop) and raises its event; `None` when `stop` came
/// first (the run stays claimed and resumes after a restart).
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn run(
    ctx: &RunContext<'_>,
    row: EvaluationRow,
) -> Result<Option<(Evaluation, bool)>, StoreError> {
    let started = Instant::now();
    let e = &ctx.eval.evaluate;
    if let Some(detail) = over_daily_limit(ctx, &row).await? {
        return fail(
            ctx,
            &row,
            &[],
            None,
            FailReason::DailyLimit,
            detail,
            started,
        )
        .await;
    }
    let loaded = match cases::load(&e.cases_file) {
        Ok(c) => c,
        Err(err) => {
            let detail = format!("the cases file {}: {err}", e.cases_file.display());
            return fail(ctx, &row, &[], None, FailReason::Cases, detail, started).await;
        }
    };
    let picked = plan::sample(&loaded.cases, e.sample, &row.job_id);
    let baseline = baseline_of(ctx, &row).await?;
    let mut models = vec![(Role::Model, row.model.clone())];
    models.extend(baseline.clone().map(|b| (Role::Baseline, b)));
    let prices = match prices_of(ctx.config, &models) {
        Ok(p) => p,
        Err(detail) => {
            let b = baseline.as_deref();
            return fail(ctx, &row, &picked, b, FailReason::Budget, detail, started).await;
        }
    };
    let each: Vec<Price> = prices.values().copied().collect();
    let estimate = plan::estimate(&picked, e.max_tokens, &each);
    let id = row.id;
    let stored = ctx.store.blocking(move |s| s.case_results(id)).await?;
    if stored.is_empty() && estimate > e.max_cost_usd {
        let detail = format!(
            "the estimate ${estimate:.2} is above max_cost_usd ${:.2}; nothing was asked",
            e.max_cost_usd
        );
        let b = baseline.as_deref();
        return fail(ctx, &row, &picked, b, FailReason::Budget, detail, started).await;
    }
    info!(source = %row.source, job = %crate::inert::Inert(&row.job_id), cases = picked.len(),
          models = models.len(), resumed = stored.len(), estimate_usd = estimate, "evaluating");
    let plan = Asking {
        ctx,
        row: &row,
        models: &models,
        prices: &prices,
        spent: AtomicI64::new(stored.iter().map(|r| r.cost_micros).sum()),
        reserved: AtomicI64::new(0),
        over_budget: AtomicBool::new(false),
        done: std::sync::atomic::AtomicUsize::new(stored.len()),
        total: picked.len() * models.len(),
        started,
    };
    let stopped = plan.ask_all(&picked, &stored).await?;
    if ctx.stop.is_cancelled() && stopped.is_none() {
        return Ok(None);
    }
    let results = ctx.store.blocking(move |s| s.case_results(id)).await?;
    let evaluation = plan::summarize(&Outcome {
        job: &row.job_id,
        model: &row.model,
        baseline: baseline.as_deref(),
        cases: &picked,
        results: &results,
        duration_s: started.elapsed().as_secs_f64(),
        stopped,
    });
    finish(ctx, &row, evaluation).await.map(Some)
}

/// A daemon's run beyond `max_runs_per_day`: the sentence saying so.
async fn over_daily_limit(
    ctx: &RunContext<'_>,
    row: &EvaluationRow,
) -> Result<Option<String>, StoreError> {
    if !ctx.daemon {
        return Ok(None);
    }
    let (source, since) = (row.source.clone(), ctx.clock.now_ms() - 86_400_000);
    let runs = ctx
        .store
        .blocking(move |s| s.evaluations_started_since(&source, since))
        .await?;
    let most = ctx.eval.evaluate.max_runs_per_day;
    Ok((runs > i64::from(most)).then(|| {
        format!(
            "the source ran {} evaluations in 24 hours (max_runs_per_day)",
            runs - 1
        )
    }))
}

/// Each model's inference price, or the sentence saying which has none.
fn prices_of(config: &Config, models: &[(Role, String)]) -> Result<HashMap<Role, Price>, String> {
    let mut prices = HashMap::new();
    for (role, m) in models {
        let p = config.inference_prices.of(m).ok_or_else(|| {
            format!("no [inference_prices] entry matches {m}: the cost cap could not hold")
        })?;
        prices.insert(
            *role,
            Price {
                input: p.input,
                output: p.output,
            },
        );
    }
    Ok(prices)
}

/// The baseline model of `row`, as the source's `baseline` says.
async fn baseline_of(
    ctx: &RunContext<'_>,
    row: &EvaluationRow,
) -> Result<Option<String>, StoreError> {
    Ok(match &ctx.eval.evaluate.baseline {
        Baseline::None => None,
        Baseline::Base => row.base_model.clone(),
        Baseline::Model(m) => Some(m.clone()),
        Baseline::Previous => {
            let suffix = crate::model::evaluation::suffix_of(&row.model).map(str::to_string);
            let found = match suffix {
                Some(suffix) => {
                    let (source, model) = (row.source.clone(), row.model.clone());
                    ctx.store
                        .blocking(move |s| s.previous_evaluated(&source, &model, &suffix))
                        .await?
                }
                None => None,
            };
            found.or_else(|| row.base_model.clone())
        }
    })
}

/// A run that could not start: its `evaluation_failed` with what it has.
async fn fail(
    ctx: &RunContext<'_>,
    row: &EvaluationRow,
    picked: &[&Case],
    baseline: Option<&str>,
    reason: FailReason,
    detail: String,
    started: Instant,
) -> Result<Option<(Evaluation, bool)>, StoreError> {
    let evaluation = plan::summarize(&Outcome {
        job: &row.job_id,
        model: &row.model,
        baseline,
        cases: picked,
        results: &[],
        duration_s: started.elapsed().as_secs_f64(),
        stopped: Some((reason, detail)),
    });
    finish(ctx, row, evaluation).await.map(Some)
}

/// Stores the end of a run with its event.
async fn finish(
    ctx: &RunContext<'_>,
    row: &EvaluationRow,
    evaluation: Evaluation,
) -> Result<(Evaluation, bool), StoreError> {
    let failed = evaluation.reason.is_some();
    let kind = if failed {
        EventKind::EvaluationFailed
    } else {
        EventKind::Evaluated
    };
    let now = ctx.clock.now();
    let event = Event::about_evaluation(&kind, &row.source, evaluation.clone(), None, now);
    info!(source = %row.source, job = %crate::inert::Inert(&row.job_id), event = %event.event_type,
          id = %event.id, verdict = ?evaluation.verdict, reason = ?evaluation.reason,
          cost_usd = evaluation.cost_usd, "evaluation finished");
    let config = Arc::new(ctx.config.clone());
    let (id, fenced) = (row.id, ctx.daemon);
    ctx.store
        .blocking(move |s| {
            let route = |e: &crate::event::Event| {
                crate::pipeline::routing::plan(&config, e, now.saturating_mul(1000))
            };
            s.finish_evaluation(Finish {
                id,
                event,
                failed,
                route: &route,
                now,
                fenced,
            })
        })
        .await?;
    Ok((evaluation, failed))
}

/// One run's asking: the budget, the progress and the stop signals its requests share.
struct Asking<'a> {
    ctx: &'a RunContext<'a>,
    row: &'a EvaluationRow,
    models: &'a [(Role, String)],
    prices: &'a HashMap<Role, Price>,
    /// Millionths of a USD paid (stored) and reserved by requests in flight.
    spent: AtomicI64,
    reserved: AtomicI64,
    over_budget: AtomicBool,
    done: std::sync::atomic::AtomicUsize,
    total: usize,
    started: Instant,
}

/// How one request ended.
enum Asked {
    Stored,
    /// Not asked: the budget, the deadline or a stop came first.
    Skipped,
    Fatal(FailReason, String),
}

impl Asking<'_> {
    /// Asks every (case, model) not in `stored`; why the run stopped early, if it did.
    async fn ask_all(
        &self,
        picked: &[&Case],
        stored: &[CaseResult],
    ) -> Result<Option<(FailReason, String)>, StoreError> {
        let have: HashSet<(&str, Role)> = stored
            .iter()
            .map(|r| (r.case_id.as_str(), r.role))
            .collect();
        // Owned, so the requests' futures borrow nothing but `self`.
        let work: Vec<(Case, Role, String)> = picked
            .iter()
            .flat_map(|c| self.models.iter().map(move |(role, m)| (*c, *role, m)))
            .filter(|(c, role, _)| !have.contains(&(c.id.as_str(), *role)))
            .map(|(c, role, m)| (c.clone(), role, m.clone()))
            .collect();
        let e = &self.ctx.eval.evaluate;
        let deadline = tokio::time::Instant::now() + e.deadline.0;
        let mut fatal = None;
        let mut stream = futures_util::stream::iter(work)
            .map(|(case, role, model)| async move { self.ask(&case, role, &model).await })
            .buffer_unordered(e.concurrency as usize);
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = tokio::time::sleep_until(deadline) => {
                    let detail = format!("the deadline of {} passed", e.deadline);
                    return Ok(Some((FailReason::Deadline, detail)));
                }
                _ = self.ctx.stop.cancelled() => return Ok(None),
            };
            match next {
                None => break,
                Some(Ok(Asked::Fatal(reason, detail))) => {
                    fatal.get_or_insert((reason, detail));
                    self.over_budget.store(true, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
            }
        }
        if let Some(f) = fatal {
            return Ok(Some(f));
        }
        if self.over_budget.load(Ordering::Relaxed) {
            let detail = format!(
                "the run reached max_cost_usd ${:.2} after ${:.2}",
                e.max_cost_usd,
                self.spent.load(Ordering::Relaxed) as f64 / 1e6
            );
            return Ok(Some((FailReason::Budget, detail)));
        }
        Ok(None)
    }

    /// Asks one (case, model), grades and stores the answer.
    async fn ask(&self, case: &Case, role: Role, model: &str) -> Result<Asked, StoreError> {
        let e = &self.ctx.eval.evaluate;
        let price = self.prices[&role];
        let worst = price.micros(case.prompt_chars() as u64 / 4 + 1, u64::from(e.max_tokens));
        let cap = (e.max_cost_usd * 1e6) as i64;
        let reserved = self.reserved.fetch_add(worst, Ordering::SeqCst) + worst;
        if self.over_budget.load(Ordering::Relaxed)
            || self.spent.load(Ordering::SeqCst) + reserved > cap
        {
            self.reserved.fetch_sub(worst, Ordering::SeqCst);
            self.over_budget.store(true, Ordering::Relaxed);
            return Ok(Asked::Skipped);
        }
        let answer = self.complete(model, role == Role::Model, case).await;
        self.reserved.fetch_sub(worst, Ordering::SeqCst);
        let completion = match answer {
            Ok(c) => c,
            Err(fatal) => return Ok(fatal),
        };
        let cost = price.micros(completion.input_tokens, completion.output_tokens);
        let failed = case.graders.grade(&completion.text);
        let result = CaseResult {
            case_id: case.id.clone(),
            role,
            passed: failed.is_none(),
            grader: failed.as_ref().map(|f| f.grader.to_string()),
            reason: failed.map(|f| f.reason),
            cost_micros: cost,
            output: e
                .show_outputs
                .then(|| crate::inert::excerpt(&completion.text, 120)),
        };
        let (id, holder) = (self.row.id, self.ctx.holder.clone());
        let until = self.ctx.clock.now_ms() + CLAIM_MS;
        self.ctx
            .store
            .blocking(move |s| {
                s.record_case_result(id, &result)?;
                s.renew_evaluation(id, &holder, until)
            })
            .await?;
        self.spent.fetch_add(cost, Ordering::SeqCst);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(progress) = self.ctx.progress {
            progress(Progress {
                done,
                total: self.total,
                cost_usd: self.spent.load(Ordering::Relaxed) as f64 / 1e6,
                elapsed: self.started.elapsed(),
            });
        }
        Ok(Asked::Stored)
    }

    /// The completion, waiting out `wait_ready` while the model answers 404.
    async fn complete(
        &self,
        model: &str,
        fine_tune: bool,
        case: &Case,
    ) -> Result<crate::source::chat::Completion, Asked> {
        let e = &self.ctx.eval.evaluate;
        let mut pause = Duration::from_secs(1);
        loop {
            match self
                .ctx
                .eval
                .client
                .complete(model, fine_tune, &case.messages)
                .await
            {
                Ok(c) => return Ok(c),
                Err(ChatError::NotReady { .. })
                    if self.started.elapsed() + pause <= e.wait_ready.0 =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(NOT_READY_PAUSE);
                }
                Err(err @ ChatError::NotReady { .. }) => {
                    return Err(Asked::Fatal(
                        FailReason::ModelNotReady,
                        format!(
                            "{model} was not served within wait_ready ({}): {err}",
                            e.wait_ready
                        ),
                    ));
                }
                Err(err) => {
                    warn!(source = %self.row.source, case = %crate::inert::Inert(&case.id),
                          error = %err, "an evaluation request failed");
                    return Err(Asked::Fatal(FailReason::ProviderError, err.to_string()));
                }
            }
        }
    }
}
