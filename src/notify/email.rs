//! The e-mail notifier: a multipart text + HTML message through lettre's async SMTP transport.
//!
//! STARTTLS or implicit TLS by default, plaintext only when asked (and, by config validation, only
//! to loopback unless `allow_plaintext`); an optional `ca_file` adds private CAs. The `Message-ID`
//! derives from the event id, so a re-sent alert is recognisably the same message. SMTP 4xx and
//! connection failures are reported retryable, 5xx final; the dispatcher decides what follows.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Attempt, NotifyError, render};
use crate::config::{EmailConfig, Secret, SmtpTls};
use crate::event::Event;

/// Time allowed for one whole SMTP exchange when the notifier sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for each SMTP command (connecting included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// SMTP connections open at once to one notifier's server, kept and reused: relays limit a
/// client's concurrent sessions (often to 3 to 5) and leave the rest waiting for a greeting, so
/// twenty jobs finishing together send over three connections rather than open twenty.
pub const MAX_CONNECTIONS: u32 = 3;

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies and other autoresponders
/// must not answer an alert, so an alert can never start a mail loop.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// A configured e-mail destination.
pub struct EmailNotifier {
    pub name: String,
    host: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    /// One permit per connection the transport's pool may hold ([`MAX_CONNECTIONS`]).
    sending: tokio::sync::Semaphore,
}

/// The longest a delivery waits for its e-mail's chart (drawing one takes milliseconds).
const CHART_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

impl EmailNotifier {
    /// Builds the notifier. Must run inside the tokio runtime (the transport's pool lives there).
    ///
    /// # Errors
    /// A sentence naming what is wrong: an address that does not parse, an unreadable `ca_file`.
    pub fn new(
        name: &str,
        config: &EmailConfig,
        timeout: Option<Duration>,
        password: Option<&Secret>,
    ) -> Result<EmailNotifier, NotifyError> {
        let host = config.smtp_host.clone();
        let address = |key: &'static str, a: &str| {
            a.parse::<Mailbox>().map_err(|e| NotifyError::Address {
                key,
                value: a.to_string(),
                reason: e.to_string(),
            })
        };
        let from = address("from", &config.from)?;
        let to = config
            .to
            .iter()
            .map(|a| address("to", a))
            .collect::<Result<Vec<_>, _>>()?;
        let tls_mode = config.tls;
        let port = config.smtp_port;
        let tls = match tls_mode {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(host.clone());
                if let Some(path) = &config.ca_file {
                    let ca = |reason: String| NotifyError::CaFile {
                        path: path.display().to_string(),
                        reason,
                    };
                    let pem =
                        std::fs::read(path).map_err(|e| ca(format!("cannot be read: {e}")))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| ca(format!("holds no PEM certificate: {e}")))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params.build_rustls().map_err(|e| NotifyError::Tls {
                    host: host.clone(),
                    reason: e.to_string(),
                })?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT))
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(MAX_CONNECTIONS));
        if let Some(login) = &config.login {
            let password = password.map(Secret::expose).unwrap_or_default();
            builder = builder.credentials(Credentials::new(
                login.username.clone(),
                password.to_string(),
            ));
        }
        Ok(EmailNotifier {
            name: name.to_string(),
            host: format!("{host}:{port}"),
            transport: builder.build(),
            from,
            to,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            sending: tokio::sync::Semaphore::new(MAX_CONNECTIONS as usize),
        })
    }

    /// The recipients, for messages.
    pub fn recipients(&self) -> String {
        self.to
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Builds the message for `event`, with `chart` (a PNG) inline when there is one. Pure but
    /// for lettre's own `Date` header.
    ///
    /// # Errors
    /// Only if lettre refuses the message, which valid addresses do not cause.
    pub fn message(
        &self,
        event: &Event,
        link: Option<&str>,
        chart: Option<Vec<u8>>,
    ) -> Result<Message, NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(render::subject(event))
            .message_id(Some(format!("<{}@tunewatch>", event.id)))
            .header(AutoSubmitted);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(render::email_text(event, link));
        let html = SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(render::email_html(event, link, chart.is_some()));
        let alternative = MultiPart::alternative().singlepart(text);
        let alternative = match chart {
            Some(png) => alternative.multipart(
                MultiPart::related().singlepart(html).singlepart(
                    lettre::message::Attachment::new_inline(render::CHART_CID.to_string()).body(
                        png,
                        ContentType::parse("image/png")
                            .map_err(|e| NotifyError::Message(e.to_string()))?,
                    ),
                ),
            ),
            None => alternative.singlepart(html),
        };
        builder
            .multipart(alternative)
            .map_err(|e| NotifyError::Message(e.to_string()))
    }

    /// The loss chart of `event` as a PNG, when it carries a curve: drawn on a thread of its own
    /// within [`CHART_LIMIT`], so no curve can hold up a delivery round or shutdown. A chart that
    /// cannot be drawn (in time) is left out; the text and the facts still give the numbers.
    async fn chart(event: &Event) -> Option<Vec<u8>> {
        if event.loss_curve.is_empty() {
            return None;
        }
        crate::insight::chart::png_within(
            event.loss_curve.clone(),
            format!("Loss of {} ({})", event.subject(), event.source),
            CHART_LIMIT,
        )
        .await
        .inspect_err(|e| {
            tracing::warn!(event = %event.id, error = %e, "no loss chart in this e-mail");
        })
        .ok()
    }

    /// Sends `event` once and says how it went.
    pub async fn deliver(&self, event: &Event, link: Option<&str>) -> Attempt {
        let chart = Self::chart(event).await;
        let message = match self.message(event, link, chart) {
            Ok(m) => m,
            Err(error) => {
                return Attempt::Failed {
                    retryable: false,
                    status: None,
                    error: error.to_string(),
                    retry_after: None,
                };
            }
        };
        self.send(message).await
    }

    /// A group message, built from its stored parts, with `id` as its `Message-ID`.
    pub async fn send_rendered(&self, id: &str, subject: &str, text: &str, html: &str) -> Attempt {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{id}@tunewatch>")))
            .header(AutoSubmitted);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.to_string()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html.to_string()),
            );
        match builder.multipart(body) {
            Ok(message) => self.send(message).await,
            Err(e) => Attempt::Failed {
                retryable: false,
                status: None,
                error: format!("cannot build the message: {e}"),
                retry_after: None,
            },
        }
    }

    /// Sends a built message once and says how it went.
    async fn send(&self, message: Message) -> Attempt {
        // Waits for one of the connections; the semaphore is never closed.
        let _connection = self.sending.acquire().await;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(response)) => Attempt::Delivered {
                status: Some(u16::from(response.code())),
            },
            Ok(Err(e)) => {
                let status = e.status().map(u16::from);
                let detail = super::error_chain(&e);
                Attempt::Failed {
                    // 5xx is the server's final word; anything else (4xx, network, TLS) may pass.
                    retryable: !e.is_permanent(),
                    status,
                    error: format!("SMTP {} refused or failed: {detail}", self.host),
                    retry_after: None,
                }
            }
            Err(_) => Attempt::Failed {
                retryable: true,
                status: None,
                error: format!(
                    "SMTP {} timed out after {}",
                    self.host,
                    humantime::format_duration(self.timeout)
                ),
                retry_after: None,
            },
        }
    }
}
