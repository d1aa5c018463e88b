//! `tunewatch notify-test NOTIFIER`: a sample alert through one notifier, now, with its outcome
//! (the outbox is untouched).

use crate::config::Config;
use crate::notify::{Attempt, Notifier};

use super::Failure;

/// Renders a sample event and sends it through the notifier `name`, synchronously.
///
/// # Errors
/// [`Failure`] when there is no such notifier or the delivery failed.
pub async fn run(config: Config, name: &str) -> Result<u8, Failure> {
    let Some(n) = config.notifier(name) else {
        let names: Vec<&str> = config.notifiers.iter().map(|n| n.name.as_str()).collect();
        return Err(Failure {
            code: 2,
            message: format!(
                "{} has no notifier named {name:?} (it has: {})",
                config.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
    };
    let notifier = Notifier::from_config(n)?;
    let event = crate::notify::sample_event(crate::store::unix_now());
    let destination = match &notifier {
        Notifier::Webhook(w) => format!("webhook {}", w.shown_url()),
        Notifier::Email(e) => format!("e-mail to {}", e.recipients()),
        Notifier::PagerDuty(p) => {
            format!("PagerDuty {p:?} (a test incident, triggered and resolved)")
        }
        Notifier::Telegram(t) => format!("Telegram {t:?}"),
        Notifier::Http(_) => "an HTTP endpoint (its template, rendered for the sample)".to_string(),
    };
    println!(
        "sending a sample {} ({}) through notifier {name:?}: {destination}",
        event.event_type, event.id
    );
    let attempt = match &notifier {
        Notifier::PagerDuty(p) => p.test(&event).await,
        n => n.deliver(&event, event.created_at, None).await,
    };
    match attempt {
        Attempt::Delivered { status } => {
            let status = status
                .map(|s| format!(" (answered {s})"))
                .unwrap_or_default();
            println!("delivered{status}");
            Ok(0)
        }
        Attempt::Failed { error, .. } => Err(Failure {
            code: 1,
            message: format!("notifier {name:?}: {error}"),
        }),
    }
}
