//! `tunewatch evaluate`: a job's new model against its baseline, as the daemon runs it when the
//! job succeeds (`SOURCE JOB [--estimate] [--again]`), or any model against another
//! (`--model X --against Y --cases FILE`, to compare a retiring model with its replacement). On a
//! terminal a progress line (cases done of total, cost so far, time left); plain lines when not.
//! The verdict is stored with its event, which a running daemon delivers.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{EvaluateArgs, Failure};
use crate::clock::Clock;
use crate::config::{Baseline, Config, EvaluateConfig, SourceConfig};
use crate::evaluate::{cases, plan};
use crate::model::EvaluationOrder;
use crate::run::evaluator::{self, EvalSource, Progress, RunContext};
use crate::source::chat::ChatClient;
use crate::store::Store;

/// Runs `tunewatch evaluate`: exit 0 with a verdict, 1 when the evaluation failed.
///
/// # Errors
/// [`Failure`] when the source, the job, the cases or the database are not usable.
pub async fn run(config: &Config, args: EvaluateArgs) -> Result<u8, Failure> {
    if let Some(model) = args.model.clone() {
        return compare(config, &args, model).await;
    }
    let (Some(source_name), Some(job_id)) = (args.source.as_deref(), args.job_id.as_deref()) else {
        return Err(Failure::one("name a SOURCE and a JOB_ID, or use --model"));
    };
    let source = config
        .source(source_name)
        .ok_or_else(|| Failure::one(format!("no source named {source_name:?} in the config")))?;
    let evaluate = source.evaluate.clone().ok_or_else(|| {
        Failure::one(format!(
            "source {source_name:?} has no [source.evaluate] table (DESIGN.md, README: Evaluating)"
        ))
    })?;
    let store = Store::open_at(
        config.state_db.location(),
        config.state_db_password()?.as_ref(),
        false,
    )?;
    let job_id = store
        .full_job_id(job_id)?
        .unwrap_or_else(|| job_id.to_string());
    let raw = store.job_raw(source_name, &job_id)?.ok_or_else(|| {
        Failure::one(format!(
            "source {source_name:?} has no job {job_id:?} in the database (run the daemon first)"
        ))
    })?;
    let view = crate::source::view::openai_shape(&raw);
    let text = |k: &str| view.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let model = text("fine_tuned_model")
        .ok_or_else(|| Failure::one(format!("job {job_id} has no fine-tuned model (yet)")))?;
    let loaded = cases::load(&evaluate.cases_file).map_err(|e| {
        Failure::one(format!(
            "the cases file {}: {e}",
            evaluate.cases_file.display()
        ))
    })?;
    let order = EvaluationOrder {
        model,
        base_model: text("model"),
        cases_hash: loaded.hash.clone(),
    };
    if args.estimate {
        return estimate(config, &evaluate, &loaded, &job_id, &order);
    }
    let eval = eval_source(source, &evaluate)?;
    execute(
        config,
        &store,
        eval,
        (source_name, &job_id),
        &order,
        args.again,
    )
    .await
}

/// The pre-flight estimate, printed; nothing is asked.
fn estimate(
    config: &Config,
    evaluate: &EvaluateConfig,
    loaded: &cases::Cases,
    job_id: &str,
    order: &EvaluationOrder,
) -> Result<u8, Failure> {
    let picked = plan::sample(&loaded.cases, evaluate.sample, job_id);
    let mut models = vec![order.model.clone()];
    match &evaluate.baseline {
        Baseline::None => {}
        Baseline::Model(m) => models.push(m.clone()),
        Baseline::Base | Baseline::Previous => models.extend(order.base_model.clone()),
    }
    let mut prices = Vec::new();
    for m in &models {
        let p = config.inference_prices.of(m).ok_or_else(|| {
            Failure::one(format!(
                "no [inference_prices] entry matches {m}: the cap could not hold"
            ))
        })?;
        prices.push(plan::Price {
            input: p.input,
            output: p.output,
        });
    }
    let usd = plan::estimate(&picked, evaluate.max_tokens, &prices);
    println!(
        "{} cases × {} ({}); at most {} tokens an answer\nestimate ${usd:.2}, cap ${:.2}: {}",
        picked.len(),
        super::plural(models.len(), "model", "models"),
        models.join(" vs "),
        evaluate.max_tokens,
        evaluate.max_cost_usd,
        if usd > evaluate.max_cost_usd {
            "above the cap, the run would be refused"
        } else {
            "within the cap"
        }
    );
    Ok(0)
}

fn eval_source(source: &SourceConfig, evaluate: &EvaluateConfig) -> Result<EvalSource, Failure> {
    let secrets = source
        .auth
        .read_in(None)
        .map_err(|m| Failure::one(format!("source {:?}: {m}", source.name)))?;
    let key = crate::source::key_of(source, &secrets).map_err(|e| Failure::one(e.to_string()))?;
    let client = ChatClient::new(source, evaluate, key).map_err(|e| Failure::one(e.to_string()))?;
    Ok(EvalSource {
        source: source.clone(),
        evaluate: evaluate.clone(),
        client,
    })
}

/// Runs (or shows) the evaluation of `job` in `store`, with a progress line.
async fn execute(
    config: &Config,
    store: &Store,
    eval: EvalSource,
    (source, job): (&str, &str),
    order: &EvaluationOrder,
    again: bool,
) -> Result<u8, Failure> {
    let holder = format!("cli-{}", std::process::id());
    let clock = Clock::system();
    let now = clock.now_ms();
    let row = store.start_evaluation(source, job, order, again, &holder, (now, now + 60_000))?;
    if let (Some(result), "done" | "failed") = (&row.result, row.state.as_str()) {
        let stored: crate::model::evaluation::Evaluation = serde_json::from_str(result)
            .map_err(|e| Failure::one(format!("the stored evaluation is unreadable: {e}")))?;
        println!("{}", stored.sentence());
        println!("(stored; --again runs it again)");
        return Ok(u8::from(row.state == "failed"));
    }
    let terminal = std::io::stderr().is_terminal();
    let shown = std::sync::atomic::AtomicUsize::new(0);
    let progress = move |p: Progress| {
        let left = match p.done {
            0 => String::from("?"),
            d => {
                let per = p.elapsed.as_secs_f64() / d as f64;
                humantime::format_duration(Duration::from_secs(
                    (per * p.total.saturating_sub(d) as f64) as u64,
                ))
                .to_string()
            }
        };
        let line = format!(
            "{}/{} answers · ${:.2} · about {left} left",
            p.done, p.total, p.cost_usd
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            // Plain lines, one per tenth of the run.
            let tenth = (p.done * 10) / p.total.max(1);
            if shown.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth
                || p.done == p.total
            {
                eprintln!("{line}");
            }
        }
    };
    let ctx = RunContext {
        store,
        config,
        eval: &eval,
        clock: &clock,
        holder,
        daemon: false,
        stop: CancellationToken::new(),
        progress: Some(&progress),
    };
    let outcome = evaluator::run(&ctx, row).await?;
    if terminal {
        eprintln!();
    }
    let Some((evaluation, failed)) = outcome else {
        return Err(Failure::one("the evaluation was stopped"));
    };
    println!("{}", evaluation.sentence());
    for w in &evaluation.worst {
        println!("  failed {} ({}: {})", w.id, w.grader, w.reason);
    }
    Ok(u8::from(failed))
}

/// `--model X --against Y --cases FILE`: run in a scratch database, printed, not stored.
async fn compare(config: &Config, args: &EvaluateArgs, model: String) -> Result<u8, Failure> {
    let (Some(against), Some(cases_file)) = (args.against.clone(), args.cases.clone()) else {
        return Err(Failure::one("--model needs --against and --cases"));
    };
    let source = match args.source.as_deref() {
        Some(name) => config
            .source(name)
            .ok_or_else(|| Failure::one(format!("no source named {name:?} in the config")))?,
        None => config
            .sources
            .iter()
            .find(|s| s.evaluate.is_some())
            .or_else(|| config.sources.first())
            .ok_or_else(|| Failure::one("the config has no source"))?,
    };
    let mut evaluate = source.evaluate.clone().unwrap_or_else(|| EvaluateConfig {
        cases_file: cases_file.clone(),
        baseline: Baseline::None,
        sample: 0,
        max_cost_usd: 1.0,
        max_tokens: 512,
        temperature: 0.0,
        concurrency: 4,
        request_timeout: crate::config::Dur::secs(60),
        deadline: crate::config::Dur::secs(20 * 60),
        wait_ready: crate::config::Dur::secs(0),
        api_base: None,
        deployment: None,
        show_outputs: false,
        max_runs_per_day: 1000,
    });
    evaluate.cases_file = cases_file;
    evaluate.baseline = Baseline::Model(against.clone());
    evaluate.sample = 0;
    if let Some(usd) = args.max_cost {
        evaluate.max_cost_usd = usd;
    }
    let loaded = cases::load(&evaluate.cases_file).map_err(|e| {
        Failure::one(format!(
            "the cases file {}: {e}",
            evaluate.cases_file.display()
        ))
    })?;
    let scratch = tempfile::tempdir()
        .map_err(|e| Failure::one(format!("cannot make a scratch folder: {e}")))?;
    let store = Store::open(&scratch.path().join("compare.db"))?;
    let order = EvaluationOrder {
        model: model.clone(),
        base_model: Some(against),
        cases_hash: loaded.hash,
    };
    let eval = eval_source(source, &evaluate)?;
    let label = format!("{model} (compared)");
    execute(config, &store, eval, (&source.name, &label), &order, false).await
}
