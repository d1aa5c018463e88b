//! The models a source's account can call, and when each fine-tuned one retires (DESIGN.md,
//! "Model lifecycle"): OpenAI's `GET /models` (`{data: [{id, created, owned_by, shutdown_date}]}`,
//! a date `YYYY-MM-DD` or null) and Azure OpenAI's `GET /models?api-version=…` (a fine-tune names
//! its base in `model` and its job in `fine_tune`; `deprecation.inference` is unix seconds). A
//! model is *ours* when it is a fine-tune; its retirement is its own date, else its base's, found
//! in the same list. Pure reading here; the store decides what changed.

use std::collections::HashMap;

use serde_json::Value;

use super::client::{ApiClient, parse_json};
use super::{RequestObserver, SourceError};
use crate::config::{Secret, SourceConfig};
use crate::inert::Inert;

/// Models read from one answer, at most (OpenAI lists a few hundred).
pub const MAX_MODELS: usize = 20_000;

/// A fine-tuned model as tunewatch keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: String,
    /// The model it was tuned from.
    pub base: Option<String>,
    /// Unix seconds it was created.
    pub created: Option<i64>,
    /// When it retires (unix seconds, 00:00 UTC of the date), its own date or its base's.
    pub retires_at: Option<i64>,
    /// The job that made it, when the list says (Azure's `fine_tune`).
    pub job: Option<String>,
    /// The object as the API sent it.
    pub raw: Value,
}

/// A date `YYYY-MM-DD` as unix seconds at 00:00 UTC; `None` for anything else.
pub fn date_start(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() != 10 {
        return None;
    }
    humantime::parse_rfc3339(&format!("{t}T00:00:00Z"))
        .ok()
        .and_then(|s| s.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// `YYYY-MM-DD` of unix seconds (UTC).
pub fn date_of(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// A model's own retirement: OpenAI's `shutdown_date`, or Azure's `deprecation.inference`.
fn own_date(raw: &Value) -> Option<i64> {
    raw.get("shutdown_date")
        .and_then(Value::as_str)
        .and_then(date_start)
        .or_else(|| {
            raw.pointer("/deprecation/inference")
                .and_then(super::job::unix_time)
                // Azure's date is a day's start too; a time within it counts as that day.
                .map(|t| t - t.rem_euclid(86_400))
        })
        .or_else(|| raw.get("shutdown_date").and_then(Value::as_i64))
}

/// The base of an OpenAI fine-tune: `ft:BASE:ORG:SUFFIX:ID` (checkpoints add `:ckpt-step-N`).
fn openai_base(id: &str) -> Option<String> {
    let rest = id.strip_prefix("ft:")?;
    rest.split(':')
        .next()
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

/// The fine-tuned models of a list answer, their dates filled from their bases.
pub fn fine_tunes(entries: &[Value]) -> Vec<Model> {
    let dates: HashMap<&str, i64> = entries
        .iter()
        .filter_map(|m| Some((m.get("id")?.as_str()?, own_date(m)?)))
        .collect();
    entries
        .iter()
        .filter_map(|raw| {
            let id = raw.get("id")?.as_str()?;
            super::job::check_id(id).ok()?;
            let azure_job = raw.get("fine_tune").and_then(Value::as_str);
            let base = match azure_job {
                Some(_) => raw.get("model").and_then(Value::as_str).map(str::to_string),
                None => openai_base(id),
            };
            // Ours: an OpenAI `ft:` id, or an Azure model that names the job that made it.
            if azure_job.is_none() && base.is_none() {
                return None;
            }
            let retires_at =
                own_date(raw).or_else(|| base.as_deref().and_then(|b| dates.get(b).copied()));
            Some(Model {
                id: id.to_string(),
                base,
                created: raw
                    .get("created")
                    .or_else(|| raw.get("created_at"))
                    .and_then(Value::as_i64),
                retires_at,
                job: azure_job
                    .filter(|j| super::job::check_id(j).is_ok())
                    .map(str::to_string),
                raw: raw.clone(),
            })
        })
        .collect()
}

/// Reads a source's model list.
pub struct ModelsClient {
    core: ApiClient,
}

impl ModelsClient {
    /// # Errors
    /// [`SourceError::Setup`] when the key cannot be a header.
    pub fn new(config: &SourceConfig, key: &Secret) -> Result<ModelsClient, SourceError> {
        Ok(ModelsClient {
            core: super::openai::core(config, key)?,
        })
    }

    /// Every fine-tuned model the list holds, with one request (and its retries).
    ///
    /// # Errors
    /// [`SourceError`] when the list cannot be read; a list of more than [`MAX_MODELS`] is cut
    /// there, not refused.
    pub async fn list(&self, observe: RequestObserver<'_>) -> Result<Vec<Model>, SourceError> {
        let url = self.core.url("models", &[])?;
        let (body, _) = self.core.get(&url, observe).await?;
        let shown = self.core.shown(&url);
        let value = parse_json(&shown, &body)?;
        let Some(data) = value.get("data").and_then(Value::as_array) else {
            return Err(SourceError::Body {
                url: shown,
                message: "the answer is not a model list (no `data` array)".into(),
            });
        };
        if data.len() > MAX_MODELS {
            tracing::warn!(url = %Inert(&shown), models = data.len(),
                "the model list is longer than {MAX_MODELS}; the rest is not read");
        }
        Ok(fine_tunes(&data[..data.len().min(MAX_MODELS)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fine_tunes_take_their_own_date_else_their_bases_and_others_are_not_ours() {
        let list = vec![
            json!({"id": "gpt-4o-mini-2024-07-18", "object": "model", "created": 1, "owned_by": "system", "shutdown_date": "2027-03-01"}),
            json!({"id": "gpt-4.1-2025-04-14", "object": "model", "created": 2, "owned_by": "system"}),
            json!({"id": "ft:gpt-4o-mini-2024-07-18:acme:support:Ab12", "object": "model", "created": 3, "owned_by": "acme"}),
            json!({"id": "ft:gpt-4.1-2025-04-14:acme::Cd34", "object": "model", "created": 4, "owned_by": "acme", "shutdown_date": "2027-01-14"}),
            json!({"id": "ft:gpt-4.1-2025-04-14:acme::Ef56", "object": "model", "created": 5, "owned_by": "acme"}),
            json!({"id": "gpt-4o-mini-2024-07-18.ft-0123456789abcdef", "object": "model", "created_at": 6,
                   "model": "gpt-4o-mini-2024-07-18", "fine_tune": "ftjob-0123456789abcdef",
                   "deprecation": {"fine_tune": 1800000000, "inference": 1801440000}, "status": "succeeded"}),
            json!({"id": "bad id with spaces", "shutdown_date": "2027-01-01"}),
        ];
        let models = fine_tunes(&list);
        type Row<'a> = (&'a str, Option<&'a str>, Option<String>, Option<&'a str>);
        let got: Vec<Row<'_>> = models
            .iter()
            .map(|m| {
                (
                    m.id.as_str(),
                    m.base.as_deref(),
                    m.retires_at.map(date_of),
                    m.job.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "ft:gpt-4o-mini-2024-07-18:acme:support:Ab12",
                    Some("gpt-4o-mini-2024-07-18"),
                    Some("2027-03-01".into()),
                    None
                ),
                (
                    "ft:gpt-4.1-2025-04-14:acme::Cd34",
                    Some("gpt-4.1-2025-04-14"),
                    Some("2027-01-14".into()),
                    None
                ),
                (
                    "ft:gpt-4.1-2025-04-14:acme::Ef56",
                    Some("gpt-4.1-2025-04-14"),
                    None,
                    None
                ),
                (
                    "gpt-4o-mini-2024-07-18.ft-0123456789abcdef",
                    Some("gpt-4o-mini-2024-07-18"),
                    Some("2027-02-01".into()),
                    Some("ftjob-0123456789abcdef")
                ),
            ]
        );
        assert_eq!(date_start("2027-01-14"), Some(1_799_884_800));
        assert_eq!(date_start("2027-13-01"), None);
        assert_eq!(date_start("soon"), None);
    }
}
