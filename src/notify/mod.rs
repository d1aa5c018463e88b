//! Notifiers: the ways an event leaves tunewatch. `webhook` posts (signed) JSON or a chat payload;
//! `email` sends a multipart message over SMTP; `render` turns events into bodies and texts.
//!
//! A notifier makes one attempt and reports an [`Attempt`]; it never retries or sleeps itself.

mod answer;
pub mod email;
pub mod http;
pub mod pagerduty;
pub mod render;
pub mod telegram;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, ConfigError, NotifierConfig, NotifierKind, SecretKind, SecretRef};
use crate::event::Event;
pub use email::EmailNotifier;
pub use webhook::{SigningKey, WebhookNotifier};

/// Why a notifier cannot be built or a message cannot be made. Every variant says what is wrong
/// in one sentence and never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("the webhook secret must be \"whsec_\" followed by base64")]
    BadSecret,
    #[error("a {kind} notifier needs `{key}`")]
    Missing {
        kind: &'static str,
        key: &'static str,
    },
    #[error("{0}")]
    Url(String),
    #[error("`{key}` {value:?} is not an e-mail address: {reason}")]
    Address {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS for {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot build the message: {0}")]
    Message(String),
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status: Option<u16>,
    },
    Failed {
        /// Worth trying again (timeouts, connection errors, 408/425/429/5xx, SMTP 4xx).
        retryable: bool,
        status: Option<u16>,
        error: String,
        /// How long the receiver asked us to wait.
        retry_after: Option<Duration>,
    },
}

/// One configured notifier, ready to send.
pub enum Notifier {
    Webhook(WebhookNotifier),
    Email(EmailNotifier),
    PagerDuty(pagerduty::PagerDutyNotifier),
    Telegram(telegram::TelegramNotifier),
    Http(http::HttpNotifier),
}

impl Notifier {
    /// Builds one notifier from its config, reading its secrets. Call inside the tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError::Secret`] naming the notifier whose secret or setting is unusable.
    pub fn from_config(n: &NotifierConfig) -> Result<Notifier, ConfigError> {
        let fail = |message: String| ConfigError::Secret {
            owner: format!("notifier {:?}", n.name),
            message,
        };
        let unusable = |e: NotifyError| fail(e.to_string());
        let read = |r: Option<&SecretRef>, kind| r.map(|r| r.read(kind)).transpose().map_err(fail);
        Ok(match &n.kind {
            NotifierKind::Webhook(w) => Notifier::Webhook(
                WebhookNotifier::new(
                    &n.name,
                    w,
                    n.timeout,
                    read(w.secret.as_ref(), SecretKind::WebhookSecret)?.as_ref(),
                )
                .map_err(unusable)?,
            ),
            NotifierKind::Email(e) => Notifier::Email(
                EmailNotifier::new(
                    &n.name,
                    e,
                    n.timeout,
                    read(e.login.as_ref().map(|l| &l.password), SecretKind::Password)?.as_ref(),
                )
                .map_err(unusable)?,
            ),
            NotifierKind::PagerDuty(p) => Notifier::PagerDuty(
                pagerduty::PagerDutyNotifier::new(
                    p,
                    n.timeout,
                    read(Some(&p.routing_key), SecretKind::ApiKey)?
                        .ok_or_else(|| fail("the routing key was not read".into()))?,
                )
                .map_err(unusable)?,
            ),
            NotifierKind::Telegram(t) => Notifier::Telegram(
                telegram::TelegramNotifier::new(
                    t,
                    n.timeout,
                    read(Some(&t.bot_token), SecretKind::ApiKey)?
                        .ok_or_else(|| fail("the bot token was not read".into()))?,
                )
                .map_err(unusable)?,
            ),
            NotifierKind::Http(h) => {
                let url = match &h.url {
                    crate::config::UrlSource::Secret(r) => read(Some(r), SecretKind::Url)?,
                    crate::config::UrlSource::Inline(_) => None,
                };
                Notifier::Http(
                    http::HttpNotifier::new(h, n.timeout, url.as_ref()).map_err(unusable)?,
                )
            }
        })
    }

    /// Renders a group of `events` for this notifier (`away`: the quiet hours it was held by;
    /// `page`: the status page, for "+N more").
    pub fn render_group(
        &self,
        events: &[Event],
        max_items: u32,
        away: Option<&str>,
        page: Option<&str>,
    ) -> render::group::Rendered {
        let summary = render::group::summarize(events, max_items, away, page);
        match self {
            Notifier::Webhook(w) => render::group::chat(&summary, w.format()),
            Notifier::Email(_) => render::group::email(&summary),
            Notifier::Telegram(_) => render::group::Rendered::Text {
                text: telegram::group(&summary),
            },
            // Never grouped (one request per event); a summary in words, should one be asked.
            Notifier::PagerDuty(_) | Notifier::Http(_) => render::group::Rendered::Text {
                text: summary.title,
            },
        }
    }

    /// Sends a group message once, with `id` as its `webhook-id` or `Message-ID`.
    pub async fn deliver_rendered(
        &self,
        rendered: &render::group::Rendered,
        id: &str,
        now_unix: i64,
    ) -> Attempt {
        match (self, rendered) {
            (Notifier::Webhook(w), render::group::Rendered::Http { body }) => {
                w.post(id, now_unix, body.clone().into_bytes()).await
            }
            (
                Notifier::Email(e),
                render::group::Rendered::Email {
                    subject,
                    text,
                    html,
                },
            ) => e.send_rendered(id, subject, text, html).await,
            (Notifier::Telegram(t), render::group::Rendered::Text { text }) => t.send(text).await,
            _ => Attempt::Failed {
                retryable: false,
                status: None,
                error: "the stored group message is not of this notifier's kind".into(),
                retry_after: None,
            },
        }
    }

    /// Sends `event` once; `link` is the job's dashboard page, when there is one.
    pub async fn deliver(&self, event: &Event, now_unix: i64, link: Option<&str>) -> Attempt {
        match self {
            Notifier::Webhook(w) => w.deliver(event, now_unix, link).await,
            Notifier::Email(e) => e.deliver(event, link).await,
            Notifier::PagerDuty(p) => p.deliver(event, link).await,
            Notifier::Telegram(t) => t.deliver(event).await,
            Notifier::Http(h) => h.deliver(event).await,
        }
    }
}

/// A realistic event for `notify-test`: a job that just succeeded. Its ids say it is a test
/// (`evt_test_…`, `ftjob-tunewatch-test`, source `notify-test`), so a receiver can tell.
pub fn sample_event(now: i64) -> Event {
    let job = serde_json::json!({
        "object": "fine_tuning.job", "id": "ftjob-tunewatch-test",
        "model": "gpt-4o-mini-2024-07-18", "created_at": now - 8_100, "finished_at": now,
        "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:tunewatch:notify-test:Tw7eSt01",
        "organization_id": "org-tunewatch-test", "result_files": ["file-tunewatch-test-results"],
        "status": "succeeded", "validation_file": "file-tunewatch-test-valid",
        "training_file": "file-tunewatch-test-train", "trained_tokens": 1_843_200,
        "error": null, "seed": 42, "estimated_finish": null, "integrations": [],
        "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.8},
        "method": {"type": "supervised", "supervised": {"hyperparameters":
            {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": 1.8}}},
        "metadata": null, "user_provided_suffix": "notify-test"
    });
    Event {
        id: format!("evt_test_{}", &Event::new_id()[4..]),
        object: "event".into(),
        event_type: crate::model::EventKind::Status(
            crate::model::job::Kind::FineTuning,
            crate::model::job::JobStatus::Succeeded,
        )
        .name(),
        created_at: now,
        data: crate::event::EventData {
            id: "ftjob-tunewatch-test".into(),
        },
        source: "notify-test".into(),
        previous_status: Some("running".into()),
        status: Some("succeeded".into()),
        provider: None,
        provider_status: None,
        changes: crate::pipeline::diff::diff(
            &serde_json::json!({"status": "running", "fine_tuned_model": null, "finished_at": null}),
            &serde_json::json!({"status": "succeeded",
                "fine_tuned_model": job["fine_tuned_model"], "finished_at": now}),
        ),
        job: Some(job),
        error: None,
        stalled_for: None,
        insight: Some(crate::insight::Insight {
            step: Some(300),
            total_steps: Some(300),
            progress: Some(1.0),
            // The last point of the curve below.
            train_loss: Some(0.4293),
            valid_loss: Some(0.4793),
            train_mean_token_accuracy: Some(0.874),
            valid_mean_token_accuracy: Some(0.851),
            best_checkpoint: Some(crate::insight::summary::BestCheckpoint {
                step: 300,
                model: "ft:gpt-4o-mini-2024-07-18:tunewatch:notify-test:Tw7eSt01:ckpt-step-300"
                    .into(),
                valid_loss: Some(0.4793),
                full_valid_loss: Some(0.4821),
            }),
            cost_usd: Some(5.53),
            cost_estimated: Some(false),
            ..crate::insight::Insight::default()
        }),
        // A smooth, made-up curve: the test message shows what a real chart looks like.
        loss_curve: (1u32..=30)
            .map(|i| {
                let x = f64::from(i) / 30.0;
                let train = 0.4 + 1.6 * (-4.0 * x).exp();
                (
                    u64::from(i) * 10,
                    Some(train),
                    (i % 3 == 0).then_some(train + 0.05),
                )
            })
            .collect(),
        model: None,
        evaluation: None,
        reminder: None,
        digest: None,
    }
}

/// An error with its causes, each once: "request failed: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// Every configured notifier by name.
#[derive(Default)]
pub struct Notifiers {
    by_name: HashMap<String, Notifier>,
}

impl Notifiers {
    /// Builds every notifier of `config`, reading its secrets.
    ///
    /// # Errors
    /// [`ConfigError::Secret`] naming the notifier whose secret is missing or malformed.
    pub fn from_config(config: &Config) -> Result<Notifiers, ConfigError> {
        let mut by_name = HashMap::new();
        for n in &config.notifiers {
            by_name.insert(n.name.clone(), Notifier::from_config(n)?);
        }
        Ok(Notifiers { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Notifier> {
        self.by_name.get(name)
    }
}
