//! Notifiers: the ways an event leaves tunewatch. `webhook` posts (signed) JSON; `render` turns
//! events into bodies and texts. E-mail is configured and validated but not delivered yet.
//!
//! A notifier makes one attempt and reports an [`Attempt`]; it never retries or sleeps itself.

pub mod render;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Config, ConfigError, NotifierKind};
use crate::event::Event;
pub use webhook::{SigningKey, WebhookNotifier};

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
    /// E-mail: validated, but delivery is not implemented yet; attempts fail and are retried.
    Email {
        name: String,
    },
}

impl Notifier {
    /// Sends `event` once.
    pub async fn deliver(&self, event: &Event, now_unix: i64) -> Attempt {
        match self {
            Notifier::Webhook(w) => w.deliver(event, now_unix).await,
            Notifier::Email { name } => Attempt::Failed {
                retryable: true,
                status: None,
                error: format!(
                    "notifier {name:?}: e-mail delivery is not implemented in this version; \
                     the alert stays in the outbox"
                ),
                retry_after: None,
            },
        }
    }
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
            let owner = || format!("notifier {:?}", n.name);
            let notifier = match n.kind {
                NotifierKind::Webhook => {
                    let secret =
                        n.secret()
                            .map(|r| r.resolve())
                            .transpose()
                            .map_err(|message| ConfigError::Secret {
                                owner: owner(),
                                message,
                            })?;
                    Notifier::Webhook(WebhookNotifier::new(n, secret.as_ref()).map_err(
                        |message| ConfigError::Secret {
                            owner: owner(),
                            message,
                        },
                    )?)
                }
                NotifierKind::Email => Notifier::Email {
                    name: n.name.clone(),
                },
            };
            by_name.insert(n.name.clone(), notifier);
        }
        Ok(Notifiers { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Notifier> {
        self.by_name.get(name)
    }
}
