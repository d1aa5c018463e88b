//! Pure rendering of events into what notifiers send: the JSON envelope, e-mail subject and
//! text/HTML bodies (`email`), and Slack and Discord payloads (`chat`). Every format is built from
//! one list of typed [`facts`], so they all say the same things; `text` holds the escaping,
//! cutting and number formats they share. No I/O, no clock: times come from the event.

use crate::model::EventKind;
use serde_json::Value;

use crate::config::WebhookFormat;
use crate::event::Event;

mod batch;
mod chat;
mod email;
pub mod group;
mod insight;
pub mod lifecycle;
pub use insight::loss;
pub mod teams;
mod text;

pub use chat::{discord, slack};
pub use email::{CHART_CID, email_html, email_text};
use text::truncate;

/// `s` cut to `max` characters, with an ellipsis when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    truncate(s, max)
}
pub use text::{human, thousands, thousands_u, timestamp};

/// The most characters of one fact (an error message, a model name) in any message.
pub const FACT_CHARS: usize = 2000;
/// The most characters of an e-mail subject's content.
pub const SUBJECT_CHARS: usize = 200;
/// The most characters of an API string quoted in the opening sentence (the full text, up to
/// [`FACT_CHARS`], is in the facts below it).
const LEAD_QUOTE_CHARS: usize = 200;
/// Discord's limit on the sum of an embed's texts.
pub const DISCORD_EMBED_TOTAL: usize = 6000;

/// The link to a job in the OpenAI dashboard, for sources on OpenAI's own API.
pub fn dashboard_url(api_base: &url::Url, job_id: &str) -> Option<String> {
    let host = api_base.host_str()?;
    let page = if job_id.starts_with("batch_") {
        "batches"
    } else {
        "finetune"
    };
    if !(host == "api.openai.com" || host.ends_with(".openai.com")) {
        return None;
    }
    // The id is one path segment, percent-encoded: an id is an API string.
    let mut url = url::Url::parse("https://platform.openai.com/").ok()?;
    url.path_segments_mut().ok()?.push(page).push(job_id);
    Some(url.to_string())
}

/// The request body for a webhook of `format`.
///
/// # Errors
/// Only if serialisation fails, which a well-formed event does not.
pub fn webhook_body(
    event: &Event,
    format: WebhookFormat,
    link: Option<&str>,
) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        WebhookFormat::Json => serde_json::to_vec(&*event.for_receivers()),
        WebhookFormat::Slack => serde_json::to_vec(&slack(event, link)),
        WebhookFormat::Discord => serde_json::to_vec(&discord(event, link)),
        WebhookFormat::Teams => serde_json::to_vec(&teams::teams(event, link)),
    }
}

/// How an event went, for colours and symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Good,
    Bad,
    Neutral,
    Info,
}

/// The outcome an event stands for.
pub fn outcome(event: &Event) -> Outcome {
    use crate::model::job::JobStatus as S;
    let Some(kind) = event.kind() else {
        return Outcome::Info;
    };
    match kind {
        EventKind::Status(_, S::Succeeded | S::Completed) | EventKind::SourceRecovered => {
            Outcome::Good
        }
        EventKind::Status(_, S::Failed | S::Expired)
        | EventKind::SourceFailing
        | EventKind::Stalled(_)
        | EventKind::PartiallyFailed
        | EventKind::ModelRetiring
        | EventKind::ModelRetired
        | EventKind::Overfitting
        | EventKind::Diverging => Outcome::Bad,
        EventKind::Status(_, S::Cancelled) => Outcome::Neutral,
        _ => Outcome::Info,
    }
}

pub(super) fn symbol(o: Outcome) -> &'static str {
    match o {
        Outcome::Good => "✅",
        Outcome::Bad => "❌",
        Outcome::Neutral => "⏹",
        Outcome::Info => "🔔",
    }
}

/// A view of the job inside an event.
struct Job<'a>(Option<&'a Value>);

/// The event's job in OpenAI's field names, whatever its provider ([`crate::source::view`]).
fn shaped(event: &Event) -> Option<std::borrow::Cow<'_, Value>> {
    event.job.as_ref().map(crate::source::view::openai_shape)
}

impl<'a> Job<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.and_then(|j| j.get(key)).filter(|v| !v.is_null())
    }
    fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }
    /// A whole number, or for times also an RFC 3339 string (Together sends those).
    fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(crate::source::job::unix_time)
    }
    /// The fine-tuned model's name: `fine_tuned_model`, or Together's `model_output_name`.
    fn fine_tuned(&self) -> Option<&'a str> {
        self.str("fine_tuned_model")
            .or_else(|| self.str("model_output_name"))
    }
    fn error(&self) -> Option<(Option<&'a str>, Option<&'a str>, Option<&'a str>)> {
        let e = self.get("error")?;
        let f = |k: &str| e.get(k).and_then(Value::as_str);
        (f("code").is_some() || f("message").is_some())
            .then(|| (f("code"), f("message"), f("param")))
    }
    /// `hyperparameters`, or the method's own (DPO and reinforcement jobs have `null` at the top).
    fn hyperparameters(&self) -> Option<&'a serde_json::Map<String, Value>> {
        self.get("hyperparameters")
            .and_then(Value::as_object)
            .or_else(|| {
                let method = self.get("method")?;
                let kind = method.get("type")?.as_str()?;
                method.get(kind)?.get("hyperparameters")?.as_object()
            })
            .filter(|h| !h.is_empty())
    }
}

/// What the event is, in a few words: "succeeded", "created", "source failing".
fn what(event: &Event) -> String {
    if let Some(w) = insight::what(event) {
        return w;
    }
    match event.kind() {
        Some(k) => k.short(),
        None => event.event_type.replace(['_', '.'], " "),
    }
}

fn is_source_event(event: &Event) -> bool {
    event
        .kind()
        .is_some_and(|k| k.is_source() || k.is_notifier() || k == EventKind::Digest)
}

fn is_terminal(status: Option<&str>) -> bool {
    status.is_some_and(|s| crate::source::job::TERMINAL.contains(&s))
}

/// The e-mail subject: `[tunewatch] prod: ftjob-abc succeeded — ft:gpt-4o-mini:acme::abc`.
pub fn subject(event: &Event) -> String {
    if lifecycle::is_model(event) {
        return truncate(
            &crate::inert::excerpt(&lifecycle::subject(event), usize::MAX),
            SUBJECT_CHARS + "[tunewatch] ".len(),
        );
    }
    if is_source_event(event) {
        return format!("[tunewatch] {}: {}", event.source, what(event));
    }
    let what = truncate(&what(event), 64);
    let shaped = shaped(event);
    let job = Job(shaped.as_deref());
    let model = job
        .fine_tuned()
        .or_else(|| job.str("model"))
        .or_else(|| job.str("endpoint"));
    let mut s = format!("[tunewatch] {}: {} {what}", event.source, event.subject(),);
    if let Some(m) = model {
        s.push_str(" — ");
        s.push_str(m);
    }
    truncate(
        &crate::inert::excerpt(&s, usize::MAX),
        SUBJECT_CHARS + "[tunewatch] ".len(),
    )
}

/// One line for chat fallbacks and logs: the subject without the tag.
pub fn headline(event: &Event) -> String {
    let s = subject(event);
    s.strip_prefix("[tunewatch] ").unwrap_or(&s).to_string()
}

/// The opening sentence of a message: what happened and what it means.
pub fn lead(event: &Event) -> String {
    match event.reminder {
        Some(n) => format!("Reminder {n}: {}", lead_of(event)),
        None => lead_of(event),
    }
}

fn lead_of(event: &Event) -> String {
    if let Some(digest) = &event.digest {
        return truncate(&group::digest_sentence(&event.source, digest), 1500);
    }
    if let Some(evaluation) = &event.evaluation {
        return truncate(&evaluation.sentence(), 600);
    }
    if let Some(lead) = insight::lead(event) {
        return lead;
    }
    if batch::is_batch(event) {
        return batch::lead(event);
    }
    if lifecycle::is_model(event) {
        return lifecycle::lead(event);
    }
    let shaped = shaped(event);
    let job = Job(shaped.as_deref());
    let id = event.subject();
    let prev = event
        .previous_status
        .as_deref()
        .map(|p| format!(" (was {p})"))
        .unwrap_or_default();
    use crate::model::job::{JobStatus as S, Kind};
    match event.kind() {
        Some(EventKind::Status(Kind::FineTuning, S::Succeeded)) => match job.fine_tuned() {
            Some(m) => format!("Fine-tuning job {id} succeeded. The new model is ready: {m}"),
            None => format!("Fine-tuning job {id} succeeded."),
        },
        Some(EventKind::Status(Kind::FineTuning, S::Failed)) => match job.error() {
            Some((_, Some(message), _)) => format!(
                "Fine-tuning job {id} failed: {}",
                truncate(message, LEAD_QUOTE_CHARS)
            ),
            _ => format!("Fine-tuning job {id} failed; the API gave no error message."),
        },
        Some(EventKind::Status(Kind::FineTuning, S::Cancelled)) => {
            format!("Fine-tuning job {id} was cancelled{prev}.")
        }
        Some(EventKind::Created(Kind::FineTuning)) => format!(
            "A new fine-tuning job {id} was created ({}).",
            event.status.as_deref().unwrap_or("status unknown")
        ),
        Some(EventKind::Stalled(Kind::FineTuning)) => {
            stalled_sentence("Fine-tuning job", id, event)
        }
        Some(EventKind::SourceFailing) => format!(
            "tunewatch cannot poll source {}: {}",
            event.source,
            truncate(
                event.error.as_deref().unwrap_or("no error recorded"),
                LEAD_QUOTE_CHARS
            )
        ),
        Some(EventKind::SourceRecovered) => {
            format!("Polling source {} works again.", event.source)
        }
        Some(EventKind::NotifierFailing) => format!(
            "Alerts to notifier {} keep failing: {}",
            event.source,
            truncate(
                event.error.as_deref().unwrap_or("no error recorded"),
                LEAD_QUOTE_CHARS
            )
        ),
        Some(EventKind::NotifierRecovered) => {
            format!("Alerts to notifier {} are delivered again.", event.source)
        }
        _ => format!(
            "Fine-tuning job {id} is now {}{prev}.",
            event.status.as_deref().unwrap_or("in a new status")
        ),
    }
}

/// What a fact is about: formats decide by kind (code for a model, a link for the dashboard),
/// never by matching a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactKind {
    Source,
    Job,
    Status,
    BaseModel,
    FineTunedModel,
    Error,
    LastError,
    Duration,
    TrainedTokens,
    Method,
    Hyperparameters,
    TrainingFile,
    ValidationFile,
    ResultFiles,
    Dashboard,
    Time,
    Progress,
    Eta,
    TrainLoss,
    ValidLoss,
    BestCheckpoint,
    Cost,
    Batch,
    Endpoint,
    Requests,
    Expires,
    Window,
    InputFile,
    OutputFile,
    ErrorFile,
    /// A batch's model, or the model a `model.*` event is about.
    Model,
    /// When a model retires: "2027-01-14, in 39 days".
    Retires,
    /// A model's retirement date before it moved.
    PreviousDate,
    /// Where a batch reads and writes when that is a location (`gs://…`, `s3://…`), not a file.
    Input,
    Output,
}

impl FactKind {
    /// The label people read.
    pub fn label(self) -> &'static str {
        match self {
            FactKind::Source => "Source",
            FactKind::Job => "Job",
            FactKind::Status => "Status",
            FactKind::BaseModel => "Base model",
            FactKind::FineTunedModel => "Fine-tuned model",
            FactKind::Error => "Error",
            FactKind::LastError => "Last error",
            FactKind::Duration => "Duration",
            FactKind::TrainedTokens => "Trained tokens",
            FactKind::Method => "Method",
            FactKind::Hyperparameters => "Hyperparameters",
            FactKind::TrainingFile => "Training file",
            FactKind::ValidationFile => "Validation file",
            FactKind::ResultFiles => "Result files",
            FactKind::Dashboard => "Dashboard",
            FactKind::Time => "Time",
            FactKind::Progress => "Progress",
            FactKind::Eta => "Expected finish",
            FactKind::TrainLoss => "Training loss",
            FactKind::ValidLoss => "Validation loss",
            FactKind::BestCheckpoint => "Best checkpoint",
            FactKind::Cost => "Cost",
            FactKind::Batch => "Batch",
            FactKind::Endpoint => "Endpoint",
            FactKind::Requests => "Requests",
            FactKind::Expires => "Expires",
            FactKind::Window => "Completion window",
            FactKind::InputFile => "Input file",
            FactKind::OutputFile => "Output file",
            FactKind::ErrorFile => "Error file",
            FactKind::Model => "Model",
            FactKind::Retires => "Retires",
            FactKind::PreviousDate => "Previously",
            FactKind::Input => "Input",
            FactKind::Output => "Output",
        }
    }
}

/// One thing a person needs to know about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub kind: FactKind,
    /// At most [`FACT_CHARS`] characters.
    pub value: String,
}

impl Fact {
    pub fn label(&self) -> &'static str {
        self.kind.label()
    }
}

/// The facts of `event`, in the order every format shows them, each value cut to
/// [`FACT_CHARS`]: whatever the API sent, no single fact can take over a message or break a
/// format's limit.
pub fn facts(event: &Event, link: Option<&str>) -> Vec<Fact> {
    facts_unbounded(event, link)
        .into_iter()
        .map(|(kind, v)| Fact {
            kind,
            value: truncate(&v, FACT_CHARS),
        })
        .collect()
}

/// "succeeded (was running)": the status, with the one before it when known.
fn status_fact(event: &Event) -> Option<String> {
    let s = event.status.as_ref()?;
    Some(match &event.previous_status {
        Some(p) => format!("{s} (was {p})"),
        None => s.clone(),
    })
}

/// The facts a person needs to act; absent facts are left out.
fn facts_unbounded(event: &Event, link: Option<&str>) -> Vec<(FactKind, String)> {
    let mut out: Vec<(FactKind, String)> = vec![(FactKind::Source, event.source.clone())];
    if is_source_event(event) {
        if let Some(e) = &event.error {
            out.push((FactKind::LastError, e.clone()));
        }
        out.push((FactKind::Time, timestamp(event.created_at)));
        return out;
    }
    if lifecycle::is_model(event) {
        lifecycle::facts(event, &mut out);
        return out;
    }
    if batch::is_batch(event) {
        batch::facts(event, &mut out);
        if let Some(l) = link {
            out.push((FactKind::Dashboard, l.to_string()));
        }
        return out;
    }
    let shaped = shaped(event);
    let job = Job(shaped.as_deref());
    job_facts(event, &job, &mut out);
    setup_facts(&job, &mut out);
    if let Some(l) = link {
        out.push((FactKind::Dashboard, l.to_string()));
    }
    out
}

/// "KIND ID has stayed STATUS without a status change for 2h." (jobs and batches alike).
pub(super) fn stalled_sentence(kind: &str, id: &str, event: &crate::event::Event) -> String {
    format!(
        "{kind} {id} has stayed {} without a status change{}.",
        event.status.as_deref().unwrap_or("in one status"),
        event
            .stalled_for
            .map(|s| format!(" for {}", human(s)))
            .unwrap_or_default()
    )
}

/// A fine-tuning job's identity and outcome: the job, its status, its models, its error, the
/// training insight and how long it ran.
fn job_facts(event: &Event, job: &Job<'_>, out: &mut Vec<(FactKind, String)>) {
    out.push((FactKind::Job, event.subject().to_string()));
    if let Some(status) = status_fact(event) {
        out.push((FactKind::Status, status));
    }
    if let Some(m) = job.str("model") {
        out.push((FactKind::BaseModel, m.to_string()));
    }
    if let Some(m) = job.fine_tuned() {
        out.push((FactKind::FineTunedModel, m.to_string()));
    }
    if let Some((code, message, param)) = job.error() {
        let mut e = String::new();
        if let Some(c) = code {
            e.push_str(c);
            e.push_str(": ");
        }
        e.push_str(message.unwrap_or("(no message)"));
        if let Some(p) = param {
            e.push_str(&format!(" (param: {p})"));
        }
        out.push((FactKind::Error, e));
    }
    out.extend(insight::facts(event));
    if let Some(d) = duration(event, job) {
        out.push((FactKind::Duration, d));
    }
}

/// How long the job ran, or has run so far.
fn duration(event: &Event, job: &Job<'_>) -> Option<String> {
    let created = job.int("created_at")?;
    Some(match job.int("finished_at") {
        Some(finished) if finished >= created => {
            format!(
                "{} (finished {})",
                human(finished - created),
                timestamp(finished)
            )
        }
        // Failed jobs often have no finish time; the observation bounds the duration.
        _ if is_terminal(event.status.as_deref()) => format!(
            "at most {} (created {}; the API gave no finish time)",
            human(event.created_at - created),
            timestamp(created)
        ),
        _ => format!(
            "{} so far (created {})",
            human(event.created_at - created),
            timestamp(created)
        ),
    })
}

/// How the job was set up: tokens, method, hyperparameters and files.
fn setup_facts(job: &Job<'_>, out: &mut Vec<(FactKind, String)>) {
    if let Some(t) = job
        .int("trained_tokens")
        .or_else(|| job.get("token_count").and_then(Value::as_i64))
    {
        out.push((FactKind::TrainedTokens, thousands(t)));
    }
    if let Some(m) = job
        .get("method")
        .and_then(|m| m.get("type"))
        .and_then(Value::as_str)
    {
        out.push((FactKind::Method, m.to_string()));
    }
    if let Some(h) = job.hyperparameters() {
        let list: Vec<String> = h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        out.push((FactKind::Hyperparameters, list.join(", ")));
    }
    if let Some(f) = job.str("training_file") {
        out.push((FactKind::TrainingFile, f.to_string()));
    }
    if let Some(f) = job.str("validation_file") {
        out.push((FactKind::ValidationFile, f.to_string()));
    }
    if let Some(files) = job.get("result_files").and_then(Value::as_array) {
        let names: Vec<&str> = files.iter().filter_map(Value::as_str).collect();
        if !names.is_empty() {
            out.push((FactKind::ResultFiles, names.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests;
