//! The fine-tuning job as tunewatch sees it: a few typed fields for decisions and display, and the
//! raw JSON object the API returned, kept whole so that fields this program does not know are still
//! stored, diffed and shown.
//!
//! Parsing is deliberately lenient: only `id` and `status` must be strings. Everything else is read
//! when it has the expected type and ignored (but kept in `raw`) when it does not. No I/O here.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Every (normalised) status tunewatch knows by name; any other is kept as it came.
pub const KNOWN_STATUSES: &[&str] = &[
    "validating_files",
    "queued",
    "running",
    "paused",
    "cancelling",
    "succeeded",
    "failed",
    "cancelled",
];

/// The (normalised) statuses after which a job never changes status again: the one definition
/// that the scheduler, the store (in SQL too) and the renderers use. A batch ends `completed`,
/// `failed`, `expired` or `cancelled`; no fine-tuning job has `completed` or `expired`, so one
/// set serves both kinds.
pub const TERMINAL: &[&str] = &["succeeded", "failed", "cancelled", "completed", "expired"];

/// The batch statuses OpenAI documents (and its webhooks name events after).
pub const BATCH_STATUSES: &[&str] = &[
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
];

/// What a watched object is: a fine-tuning job or a batch. Events are named after it
/// (`fine_tuning.job.<status>`, `batch.<status>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Kind {
    #[default]
    FineTuning,
    Batch,
}

impl Kind {
    /// A batch is an object with `"object": "batch"`.
    pub fn of(raw: &Value) -> Kind {
        if raw.get("object").and_then(Value::as_str) == Some("batch") {
            Kind::Batch
        } else {
            Kind::FineTuning
        }
    }

    /// How it is stored (the `kind` column of `jobs`).
    pub fn column(self) -> &'static str {
        match self {
            Kind::FineTuning => "fine_tuning",
            Kind::Batch => "batch",
        }
    }

    /// The kind a `kind` column holds.
    pub fn from_column(word: &str) -> Kind {
        if word == "batch" {
            Kind::Batch
        } else {
            Kind::FineTuning
        }
    }

    /// The prefix of its events: `fine_tuning.job.` or `batch.`.
    pub fn event_prefix(self) -> &'static str {
        match self {
            Kind::FineTuning => "fine_tuning.job.",
            Kind::Batch => "batch.",
        }
    }
}

/// `TERMINAL` as an SQL list, `'succeeded', 'failed', 'cancelled'` (constants, not input).
pub fn terminal_sql() -> String {
    TERMINAL
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A job's status. Known values get variants; any other string is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobStatus {
    ValidatingFiles,
    Queued,
    Running,
    Paused,
    /// A cancellation was asked for and has not finished (every provider but OpenAI says so).
    Cancelling,
    Succeeded,
    Failed,
    Cancelled,
    /// A batch's statuses (OpenAI's words, the common batch vocabulary).
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    /// A status this version does not know yet; kept verbatim.
    Other(String),
}

impl JobStatus {
    pub fn parse(s: &str) -> JobStatus {
        match s {
            "validating_files" => JobStatus::ValidatingFiles,
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "paused" => JobStatus::Paused,
            "cancelling" => JobStatus::Cancelling,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            "validating" => JobStatus::Validating,
            "in_progress" => JobStatus::InProgress,
            "finalizing" => JobStatus::Finalizing,
            "completed" => JobStatus::Completed,
            "expired" => JobStatus::Expired,
            other => JobStatus::Other(other.to_string()),
        }
    }

    /// A status word as an API sent it, in tunewatch's spelling: white space around it dropped
    /// and lower-cased (`"SUCCEEDED"`, `"Running"` and `"succeeded "` are the words everyone
    /// routes on). `None` for a word that is empty once trimmed: that is no status.
    pub fn normalise(word: &str) -> Option<JobStatus> {
        let word = word.trim();
        (!word.is_empty()).then(|| JobStatus::parse(&word.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::ValidatingFiles => "validating_files",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Validating => "validating",
            JobStatus::InProgress => "in_progress",
            JobStatus::Finalizing => "finalizing",
            JobStatus::Completed => "completed",
            JobStatus::Expired => "expired",
            JobStatus::Other(s) => s,
        }
    }

    /// Succeeded, failed and cancelled jobs never change status again ([`TERMINAL`]).
    pub fn is_terminal(&self) -> bool {
        TERMINAL.contains(&self.as_str())
    }

    /// The statuses a job is created in; seeing a new job in one of them is just "created".
    pub fn is_initial(&self) -> bool {
        matches!(self, JobStatus::ValidatingFiles | JobStatus::Queued)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JSON value is not a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobParseError {
    #[error("a job must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("job has no string `{0}`")]
    Missing(&'static str),
    #[error("the entry is not readable JSON on its own: {0}")]
    Unreadable(String),
    #[error("{0}")]
    BadId(String),
    #[error(
        "its status is not a status word (over {MAX_STATUS_CHARS} characters or control characters)"
    )]
    BadStatus,
    #[error("its status is empty")]
    EmptyStatus,
}

/// The longest id accepted (OpenAI's are ~30 characters; other providers' UUIDs 36).
pub const MAX_ID_CHARS: usize = 200;
/// The longest status accepted (known ones are under 20 characters).
pub const MAX_STATUS_CHARS: usize = 64;

/// Refuses ids that could not be a job's: empty, too long, with white space or control
/// characters (a newline would forge a log line and be stripped from a URL, fetching another
/// job), with characters that change a URL's meaning (`/ ? # % \\`), or `.`/`..` (which would
/// fetch the list endpoint instead of a job).
///
/// # Errors
/// [`JobParseError::BadId`] with a sentence that shows the id escaped.
pub fn check_id(id: &str) -> Result<(), JobParseError> {
    let bad = |why: &str| {
        Err(JobParseError::BadId(format!(
            "id \"{}\" is not a job id: {why}",
            super::inert::Inert(id)
        )))
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.chars().count() > MAX_ID_CHARS {
        return bad("it is longer than 200 characters");
    }
    if id == "." || id == ".." {
        return bad("it is a path step");
    }
    if id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%' | '\\'))
    {
        return bad("it contains white space, control characters or one of / ? # % \\");
    }
    Ok(())
}

/// The error a failed job reports; present only when `code` or `message` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
}

/// One fine-tuning job as returned by the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub model: Option<String>,
    pub fine_tuned_model: Option<String>,
    pub created_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub trained_tokens: Option<i64>,
    pub error: Option<JobError>,
    /// The object exactly as the API sent it (all fields, known or not).
    pub raw: Value,
    /// The provider whose API sent it: `"openai"`, `"mistral"`, …
    pub provider: &'static str,
    /// A fine-tuning job or a batch.
    pub kind: Kind,
    /// The provider's own status word (`"FAILED_VALIDATION"`), before normalisation.
    pub provider_status: String,
    /// [`Job::content_digest`], computed once when the job is read: every poll compares it, and
    /// a changed job is stored with it.
    digest: [u8; 32],
}

impl Job {
    /// Reads a job from one element of a list's `data` or a retrieve response.
    ///
    /// # Errors
    /// [`JobParseError`] when the value is not an object or lacks a string `id` or `status`.
    pub fn from_value(raw: Value) -> Result<Job, JobParseError> {
        let obj = match &raw {
            Value::Object(o) => o,
            other => return Err(JobParseError::NotAnObject(json_type(other))),
        };
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(JobParseError::Missing("id"))?
            .to_string();
        check_id(&id)?;
        let status = obj
            .get("status")
            .and_then(Value::as_str)
            .ok_or(JobParseError::Missing("status"))?;
        if status.chars().count() > MAX_STATUS_CHARS || status.chars().any(char::is_control) {
            return Err(JobParseError::BadStatus);
        }
        let provider_status = status.to_string();
        let status = JobStatus::normalise(status).ok_or(JobParseError::EmptyStatus)?;
        let string = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let int = |k: &str| obj.get(k).and_then(Value::as_i64);
        let error = obj.get("error").and_then(Value::as_object).and_then(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let (code, message) = (s("code"), s("message"));
            (code.is_some() || message.is_some()).then(|| JobError {
                code,
                message,
                param: s("param"),
            })
        });
        let digest = Sha256::digest(raw.to_string().as_bytes()).into();
        Ok(Job {
            digest,
            status,
            model: string("model"),
            fine_tuned_model: string("fine_tuned_model"),
            created_at: int("created_at"),
            finished_at: int("finished_at"),
            trained_tokens: int("trained_tokens"),
            error,
            id,
            provider: "openai",
            provider_status,
            kind: Kind::of(&raw),
            raw,
        })
    }

    /// A job of a provider whose objects are not OpenAI's shape: `raw` as the API sent it, its
    /// id (a resource name, an ARN, checked by the provider), the provider's status word and
    /// the normalised status. The provider fills the other fields.
    pub fn from_parts(
        raw: Value,
        id: String,
        provider_status: &str,
        status: JobStatus,
        provider: &'static str,
        kind: Kind,
    ) -> Job {
        let digest = Sha256::digest(raw.to_string().as_bytes()).into();
        Job {
            digest,
            status,
            model: None,
            fine_tuned_model: None,
            created_at: None,
            finished_at: None,
            trained_tokens: None,
            error: None,
            id,
            provider,
            provider_status: provider_status.to_string(),
            kind,
            raw,
        }
    }

    /// Compares (and stores) the job by `part` of it instead of the whole object: for a
    /// provider whose list and fetch-by-id answer in different shapes, `part` is what both
    /// carry, so the same job never looks changed only because of how it was read.
    pub fn compare_by(&mut self, part: &Value) {
        self.digest = Sha256::digest(part.to_string().as_bytes()).into();
    }

    /// The job's JSON with keys in sorted order: equal content gives equal text.
    pub fn canonical_json(&self) -> String {
        // serde_json's map is a BTreeMap (no `preserve_order`), so keys serialise sorted.
        self.raw.to_string()
    }

    /// SHA-256 of the canonical JSON; a snapshot is stored only when this changes.
    pub fn content_digest(&self) -> [u8; 32] {
        self.digest
    }

    /// [`Job::content_digest`] in hex, as stored in the database.
    pub fn content_hash(&self) -> String {
        hex(&self.content_digest())
    }
}

/// A time as unix seconds: a whole number, or an RFC 3339 / ISO-8601 string
/// (`"2024-12-01T10:00:00.123Z"`). Anything else is `None`.
pub fn unix_time(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.len() <= 64 => humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
            .ok()
            .or_else(|| humantime::parse_rfc3339(s).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
        _ => None,
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (as written by [`hex`]); `None` if it is not one.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn fixtures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openai")
    }

    /// Every job object in a fixture: the file itself, or each element of its `data`.
    fn jobs_in(value: &Value) -> Vec<Value> {
        match value.get("object").and_then(Value::as_str) {
            Some("fine_tuning.job") => vec![value.clone()],
            Some("list") => value["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| j["object"] == "fine_tuning.job")
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_job_in_every_fixture_parses() {
        let mut parsed = 0;
        for entry in std::fs::read_dir(fixtures_dir()).expect("tests/fixtures/openai exists") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            for raw in jobs_in(&value) {
                let job = Job::from_value(raw.clone())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(job.raw, raw, "{}: raw JSON kept whole", path.display());
                parsed += 1;
            }
        }
        assert!(parsed >= 10, "only {parsed} jobs found in the fixtures");
    }

    #[test]
    fn paused_is_accepted_and_unknown_statuses_are_kept() {
        let paused = std::fs::read_to_string(fixtures_dir().join("ft_pause_job_paused.json"));
        let job = Job::from_value(serde_json::from_str(&paused.unwrap()).unwrap()).unwrap();
        assert_eq!(job.status, JobStatus::Paused);
        let job = Job::from_value(json!({"id": "ftjob-1", "status": "thawing"})).unwrap();
        assert_eq!(job.status, JobStatus::Other("thawing".into()));
        assert_eq!(job.status.as_str(), "thawing");
        assert!(!job.status.is_terminal());
    }

    #[test]
    fn statuses_are_trimmed_and_lower_cased_and_an_empty_one_is_no_status() {
        for (word, normal) in [
            ("SUCCEEDED", "succeeded"),
            ("Running", "running"),
            ("succeeded ", "succeeded"),
            ("  Warming_Up", "warming_up"),
        ] {
            let job = Job::from_value(json!({"id": "j", "status": word})).unwrap();
            assert_eq!(job.status.as_str(), normal, "{word:?}");
            assert_eq!(
                job.provider_status, word,
                "the provider's word is kept as sent"
            );
        }
        for word in ["", "   "] {
            assert_eq!(
                Job::from_value(json!({"id": "j", "status": word})),
                Err(JobParseError::EmptyStatus)
            );
        }
    }

    #[test]
    fn loose_errors_count_only_when_code_or_message_is_set() {
        for e in [
            json!(null),
            json!({}),
            json!({"code": null, "message": null, "param": null}),
        ] {
            let job = Job::from_value(json!({"id": "j", "status": "running", "error": e})).unwrap();
            assert_eq!(job.error, None);
        }
        let failed = std::fs::read_to_string(fixtures_dir().join("ft_job_failed.derived.json"));
        let job = Job::from_value(serde_json::from_str(&failed.unwrap()).unwrap()).unwrap();
        let error = job.error.expect("failed job has an error");
        assert_eq!(error.code.as_deref(), Some("invalid_n_examples"));
        assert_eq!(error.param.as_deref(), Some("training_file"));
        assert_eq!(job.finished_at, None);
    }

    #[test]
    fn unknown_fields_and_odd_types_are_kept_not_fatal() {
        let raw = json!({"id": "j", "status": "queued", "trained_tokens": "many",
                         "hyperparameters": null, "usage_metrics": {"x": 1}});
        let job = Job::from_value(raw.clone()).unwrap();
        assert_eq!(job.trained_tokens, None);
        assert_eq!(job.raw["usage_metrics"]["x"], 1);
    }

    #[test]
    fn non_jobs_are_refused_with_a_reason() {
        assert_eq!(
            Job::from_value(json!([1])),
            Err(JobParseError::NotAnObject("an array"))
        );
        assert_eq!(
            Job::from_value(json!({"status": "queued"})),
            Err(JobParseError::Missing("id"))
        );
        assert_eq!(
            Job::from_value(json!({"id": "j", "status": 3})),
            Err(JobParseError::Missing("status"))
        );
    }

    #[test]
    fn content_hash_ignores_key_order_but_not_values() {
        let a = Job::from_value(json!({"id": "j", "status": "queued", "seed": 1})).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"seed": 1, "status": "queued", "id": "j"}"#).unwrap();
        let b = Job::from_value(b).unwrap();
        let c = Job::from_value(json!({"id": "j", "status": "queued", "seed": 2})).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
