//! `[source.evaluate]` and `[inference_prices]` (DESIGN.md, "Evaluating a new model"): the keys
//! as written, their defaults and ranges, and the typed result. The cases file itself is read and
//! checked by `check` and by each run (`crate::evaluate::cases`), not when the config loads: it
//! may change between runs, and the daemon must still start when it is briefly missing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::raw::RawSource;
use super::validate::Validator;
use super::{ConfigError, Dur, SafeUrl, SourceKind};

/// `[source.evaluate]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvaluate {
    /// JSONL cases, relative to the config file.
    pub cases_file: PathBuf,
    /// "base" (the job's model), "none", "previous" (the last evaluated fine-tune of the same
    /// suffix) or a model id.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// Cases per model; 0 = all. A deterministic pick seeded by the job id.
    #[serde(default = "default_sample")]
    pub sample: u32,
    /// Required: the hard cap in USD for the whole evaluation, both models.
    pub max_cost_usd: f64,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default)]
    pub temperature: f64,
    /// Requests in flight at once, apart from polling.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// The whole evaluation; past it, a partial result.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
    /// How long 404 `model_not_found` is retried while a new model is deployed.
    #[serde(default = "default_wait_ready")]
    pub wait_ready: Dur,
    /// The inference endpoint when it differs from the source's `api_base` (vLLM, a gateway).
    #[serde(default)]
    pub api_base: Option<SafeUrl>,
    /// azure_openai: the deployment that serves the fine-tune.
    #[serde(default)]
    pub deployment: Option<String>,
    /// At most 120 characters of each failing answer in alerts and on the page.
    #[serde(default)]
    pub show_outputs: bool,
    /// Evaluations a source starts in 24 hours, at most.
    #[serde(default = "default_max_runs_per_day")]
    pub max_runs_per_day: u32,
}

fn default_baseline() -> String {
    "base".into()
}
fn default_sample() -> u32 {
    50
}
fn default_max_tokens() -> u32 {
    512
}
fn default_concurrency() -> u32 {
    4
}
fn default_request_timeout() -> Dur {
    Dur::secs(60)
}
fn default_deadline() -> Dur {
    Dur::secs(20 * 60)
}
fn default_wait_ready() -> Dur {
    Dur::secs(15 * 60)
}
fn default_max_runs_per_day() -> u32 {
    20
}

/// What the new model is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// The model the job fine-tuned.
    Base,
    /// No comparison: pass rates only.
    None,
    /// The last evaluated fine-tune of the same suffix (the base when there is none).
    Previous,
    /// This model.
    Model(String),
}

/// `[source.evaluate]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateConfig {
    pub cases_file: PathBuf,
    pub baseline: Baseline,
    pub sample: u32,
    pub max_cost_usd: f64,
    pub max_tokens: u32,
    pub temperature: f64,
    pub concurrency: u32,
    pub request_timeout: Dur,
    pub deadline: Dur,
    pub wait_ready: Dur,
    pub api_base: Option<SafeUrl>,
    pub deployment: Option<String>,
    pub show_outputs: bool,
    pub max_runs_per_day: u32,
}

/// One model's inference price, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrice {
    pub input: f64,
    pub output: f64,
}

/// `[inference_prices]`: by model prefix, the longest matching prefix wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferencePrices(pub BTreeMap<String, TokenPrice>);

impl InferencePrices {
    /// The price of `model`; `None` when no prefix matches (never a guess).
    pub fn of(&self, model: &str) -> Option<TokenPrice> {
        self.0
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| *p)
    }
}

/// The kinds whose inference speaks OpenAI's chat completions at the source's own `api_base`.
fn chat_kind(kind: SourceKind) -> bool {
    matches!(
        kind,
        SourceKind::Openai
            | SourceKind::AzureOpenai
            | SourceKind::Together
            | SourceKind::Fireworks
            | SourceKind::Mistral
    )
}

impl Validator<'_> {
    /// `[source.evaluate]` of the `i`-th source, checked; `None` when absent.
    pub(super) fn evaluate(
        &self,
        i: usize,
        s: &RawSource,
    ) -> Result<Option<EvaluateConfig>, ConfigError> {
        let Some(e) = &s.evaluate else {
            return Ok(None);
        };
        let at = |key: &str, message: String| self.at_sub("source", i, "evaluate", key, message);
        if !chat_kind(s.kind) {
            return Err(at(
                "cases_file",
                format!(
                    "[source.evaluate] needs OpenAI-compatible chat completions with an API key: \
                     kind {} has none (openai, azure_openai, together, fireworks and mistral \
                     do; an openai source with evaluate.api_base reaches any other, e.g. vLLM)",
                    s.kind.name()
                ),
            ));
        }
        if s.kind == SourceKind::AzureOpenai && e.deployment.as_deref().is_none_or(str::is_empty) {
            return Err(at(
                "deployment",
                "azure_openai: `deployment` names the deployment that serves the fine-tune".into(),
            ));
        }
        self.evaluate_ranges(i, e)?;
        let baseline = self.baseline(i, e)?;
        Ok(Some(EvaluateConfig {
            cases_file: e.cases_file.clone(),
            baseline,
            sample: e.sample,
            max_cost_usd: e.max_cost_usd,
            max_tokens: e.max_tokens,
            temperature: e.temperature,
            concurrency: e.concurrency,
            request_timeout: e.request_timeout,
            deadline: e.deadline,
            wait_ready: e.wait_ready,
            api_base: e.api_base.clone(),
            deployment: e.deployment.clone().filter(|d| !d.is_empty()),
            show_outputs: e.show_outputs,
            max_runs_per_day: e.max_runs_per_day,
        }))
    }

    /// The numbers of `[source.evaluate]` within their ranges.
    fn evaluate_ranges(&self, i: usize, e: &RawEvaluate) -> Result<(), ConfigError> {
        let at = |key: &str, message: String| self.at_sub("source", i, "evaluate", key, message);
        if !(e.max_cost_usd.is_finite() && e.max_cost_usd > 0.0 && e.max_cost_usd <= 10_000.0) {
            return Err(at(
                "max_cost_usd",
                format!("max_cost_usd {} is outside (0, 10000]", e.max_cost_usd),
            ));
        }
        if !(0.0..=2.0).contains(&e.temperature) {
            return Err(at(
                "temperature",
                format!("temperature {} is outside 0..=2", e.temperature),
            ));
        }
        for (key, value, least, most) in [
            ("sample", e.sample, 0, 10_000),
            ("max_tokens", e.max_tokens, 1, 32_768),
            ("concurrency", e.concurrency, 1, 32),
            ("max_runs_per_day", e.max_runs_per_day, 1, 1000),
        ] {
            if !(least..=most).contains(&value) {
                return Err(at(
                    key,
                    format!("{key} {value} is outside {least}..={most}"),
                ));
            }
        }
        for (key, d, least, most) in [
            ("request_timeout", e.request_timeout, 1, 600),
            ("deadline", e.deadline, 1, 86_400),
            ("wait_ready", e.wait_ready, 0, 86_400),
        ] {
            if d.0.as_secs() < least || d.0.as_secs() > most {
                return Err(at(
                    key,
                    format!(
                        "`{key}` = \"{d}\" is outside its range, {} to {}",
                        Dur::secs(least),
                        Dur::secs(most)
                    ),
                ));
            }
        }
        if let Some(base) = &e.api_base
            && !matches!(base.scheme(), "http" | "https")
        {
            return Err(at(
                "api_base",
                format!("api_base {base} is not an http(s) URL"),
            ));
        }
        Ok(())
    }

    /// What the new model is compared with; a model baseline needs a price.
    fn baseline(&self, i: usize, e: &RawEvaluate) -> Result<Baseline, ConfigError> {
        let at = |key: &str, message: String| self.at_sub("source", i, "evaluate", key, message);
        let baseline = match e.baseline.trim() {
            "" => return Err(at("baseline", "baseline is empty".into())),
            "base" => Baseline::Base,
            "none" => Baseline::None,
            "previous" => Baseline::Previous,
            m => Baseline::Model(m.to_string()),
        };
        if let Baseline::Model(m) = &baseline
            && self.inference_prices().of(m).is_none()
        {
            return Err(at(
                "baseline",
                format!(
                    "no [inference_prices] entry matches the baseline {m:?}: the cost cap could \
                     not hold"
                ),
            ));
        }
        if self.inference_prices().0.is_empty() {
            return Err(at(
                "max_cost_usd",
                "[source.evaluate] needs [inference_prices] (USD per 1M input and output tokens \
                 by model prefix): the cost cap could not hold without them"
                    .into(),
            ));
        }
        Ok(baseline)
    }

    /// `[inference_prices]`, as written.
    pub(super) fn inference_prices(&self) -> InferencePrices {
        InferencePrices(self.file.inference_prices.clone())
    }

    /// An error located at `key` of the subtable `sub` of the `i`-th `[[table]]`.
    pub(super) fn at_sub(
        &self,
        table: &str,
        i: usize,
        sub: &str,
        key: &str,
        message: String,
    ) -> ConfigError {
        let line = super::locate::locate_sub(self.text, table, i, sub, key)
            .or_else(|| super::locate::locate(self.text, table, i, sub))
            .unwrap_or(1);
        let message = if message.contains(&format!("`{key}`")) {
            message
        } else {
            format!("key `{sub}.{key}`: {message}")
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            message,
        }
    }
}
