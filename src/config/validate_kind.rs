//! What each kind of source needs beyond the common keys: where its jobs are (`project` and
//! `location`, `region`, `account`, `namespace`), how it proves who it is (an API key, a Google
//! credential, an AWS access key), and which keys it refuses because they belong to another kind.
//! Every missing or misplaced key is one sentence with its line.

use super::credentials::{GoogleAuth, SourceAuth};
use super::raw::{RawSource, SourceKind};
use super::raw_source::GoogleAuthMode;
use super::validate::Validator;
use super::{ConfigError, Scope};

/// The kinds a key belongs to, with the key's name and whether the source set it.
fn owned_keys(s: &RawSource) -> Vec<(&'static str, bool, &'static [SourceKind])> {
    use SourceKind::*;
    let [id, secret, token] = s.aws();
    vec![
        ("organization", s.organization.is_some(), &[Openai]),
        ("project", s.project.is_some(), &[Openai, VertexAi]),
        ("api_version", s.api_version.is_some(), &[AzureOpenai]),
        ("location", s.location.is_some(), &[VertexAi]),
        ("region", s.region.is_some(), &[Bedrock]),
        ("account", s.account.is_some(), &[Fireworks]),
        ("namespace", s.namespace.is_some(), &[Huggingface]),
        ("labels", !s.labels.is_empty(), &[Huggingface]),
        (
            "google_credentials_file",
            s.google_credentials().is_some() || s.google_auth.is_some(),
            &[VertexAi],
        ),
        (
            "aws_access_key_id_file",
            id.is_some() || secret.is_some() || token.is_some(),
            &[Bedrock],
        ),
        (
            "api_key_file",
            s.api_key().is_some(),
            &[
                Openai,
                AzureOpenai,
                Mistral,
                Together,
                Bedrock,
                Fireworks,
                Huggingface,
                Anthropic,
                Gemini,
            ],
        ),
    ]
}

/// A name that goes into a URL path: letters, digits and `extra`, 1 to `max` characters.
fn url_word(value: &str, max: usize, extra: &[char]) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

impl Validator<'_> {
    /// Keys set on a kind they do not belong to are refused with their line, not ignored.
    pub(super) fn foreign_keys(&self, i: usize, s: &RawSource) -> Result<(), ConfigError> {
        for (key, set, kinds) in owned_keys(s) {
            if set && !kinds.contains(&s.kind) {
                let names: Vec<String> =
                    kinds.iter().map(|k| format!("\"{}\"", k.name())).collect();
                let key = self.present_key(i, key);
                return Err(self.at(
                    "source",
                    i,
                    key,
                    format!(
                        "`{key}` applies only to kind = {}, not to \"{}\"",
                        names.join(" and "),
                        s.kind.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The first key of a family (`api_key_env`, `_file`, `_credential`) that the source sets,
    /// for the line of an error about the family.
    fn present_key(&self, i: usize, key: &'static str) -> &'static str {
        let family: &[&'static str] = match key {
            "api_key_file" => &["api_key_env", "api_key_file", "api_key_credential"],
            "google_credentials_file" => &[
                "google_credentials_env",
                "google_credentials_file",
                "google_credentials_credential",
                "google_auth",
            ],
            "aws_access_key_id_file" => &[
                "aws_access_key_id_env",
                "aws_access_key_id_file",
                "aws_access_key_id_credential",
                "aws_secret_access_key_env",
                "aws_secret_access_key_file",
                "aws_secret_access_key_credential",
                "aws_session_token_env",
                "aws_session_token_file",
                "aws_session_token_credential",
            ],
            _ => return key,
        };
        family
            .iter()
            .copied()
            .find(|k| self.has_key("source", i, k))
            .unwrap_or(key)
    }

    /// Where the source's jobs are, by kind; a missing required key is named with the line of
    /// `kind`.
    pub(super) fn scope(&self, i: usize, s: &RawSource) -> Result<Scope, ConfigError> {
        let word = |key: &'static str, value: &Option<String>, example: &str, max, extra| {
            let Some(value) = value.as_deref() else {
                return Err(self.at(
                    "source",
                    i,
                    "kind",
                    format!("a {} source needs `{key}` ({example})", s.kind.name()),
                ));
            };
            if url_word(value, max, extra) {
                Ok(value.to_string())
            } else {
                Err(self.at(
                    "source",
                    i,
                    key,
                    format!("`{key}` {value:?} is not a {} name", s.kind.name()),
                ))
            }
        };
        Ok(match s.kind {
            SourceKind::VertexAi => Scope::Vertex {
                project: word(
                    "project",
                    &s.project,
                    "the Google Cloud project id",
                    63,
                    &['-'],
                )?,
                location: word(
                    "location",
                    &s.location,
                    "a region like \"us-central1\"",
                    40,
                    &['-'],
                )?,
            },
            SourceKind::Bedrock => Scope::Bedrock {
                region: word(
                    "region",
                    &s.region,
                    "an AWS region like \"us-east-1\"",
                    40,
                    &['-'],
                )?,
            },
            SourceKind::Fireworks => Scope::Fireworks {
                account: word(
                    "account",
                    &s.account,
                    "the Fireworks account id",
                    63,
                    &['-', '_'],
                )?,
            },
            SourceKind::Huggingface => {
                self.hf_labels(i, s)?;
                Scope::Huggingface {
                    namespace: word(
                        "namespace",
                        &s.namespace,
                        "your user or organisation name",
                        96,
                        &['-', '_', '.'],
                    )?,
                    labels: s.labels.clone(),
                }
            }
            _ => Scope::Account,
        })
    }

    /// Hugging Face Jobs labels: short URL words with short printable values.
    fn hf_labels(&self, i: usize, s: &RawSource) -> Result<(), ConfigError> {
        for (k, v) in &s.labels {
            if !url_word(k, 64, &['-', '_', '.', '/'])
                || v.len() > 128
                || v.chars().any(char::is_control)
            {
                return Err(self.at(
                    "source",
                    i,
                    "labels",
                    format!("label {k:?} = {v:?} is not a Hugging Face Jobs label"),
                ));
            }
        }
        Ok(())
    }

    /// How the source proves who it is: exactly one way, the one its kind takes.
    pub(super) fn auth(&self, i: usize, s: &RawSource) -> Result<SourceAuth, ConfigError> {
        let google = s.google_credentials();
        let [id, secret, token] = s.aws();
        let key = s.api_key();
        match s.kind {
            SourceKind::VertexAi => match (s.google_auth, google) {
                (Some(GoogleAuthMode::Metadata), None) => Ok(SourceAuth::Google(GoogleAuth::Metadata)),
                (Some(GoogleAuthMode::Metadata), Some(_)) => Err(self.at(
                    "source",
                    i,
                    "google_auth",
                    "google_auth = \"metadata\" takes no google_credentials_*: set one or the other".into(),
                )),
                (_, Some(r)) => Ok(SourceAuth::Google(GoogleAuth::ServiceAccount(r))),
                (_, None) => Err(self.at(
                    "source",
                    i,
                    "kind",
                    "a vertex_ai source needs one of `google_credentials_env`, \
                     `google_credentials_file`, `google_credentials_credential` (a service \
                     account's JSON key), or `google_auth = \"metadata\"`"
                        .into(),
                )),
            },
            SourceKind::Bedrock => match (key, id, secret, token) {
                (Some(k), None, None, None) => Ok(SourceAuth::Key(k)),
                (None, Some(access_key_id), Some(secret_access_key), session_token) => {
                    Ok(SourceAuth::Aws {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    })
                }
                (Some(_), ..) => Err(self.at(
                    "source",
                    i,
                    self.present_key(i, "api_key_file"),
                    "a bedrock source takes a Bedrock API key (api_key_*) or an AWS access key \
                     (aws_access_key_id_* and aws_secret_access_key_*), not both"
                        .into(),
                )),
                (None, ..) => Err(self.at(
                    "source",
                    i,
                    "kind",
                    "a bedrock source needs a Bedrock API key (api_key_env, _file or \
                     _credential), or both aws_access_key_id_* and aws_secret_access_key_*"
                        .into(),
                )),
            },
            _ => key.map(SourceAuth::Key).ok_or_else(|| {
                self.at(
                    "source",
                    i,
                    "name",
                    "source needs one of `api_key_env`, `api_key_file`, `api_key_credential`"
                        .into(),
                )
            }),
        }
    }
}
