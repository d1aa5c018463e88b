//! The daemon's metrics for `/metrics`, on the Prometheus project's own client
//! (`prometheus-client`): every series declared once here with its help text and a typed label
//! set, so that a label key that does not exist cannot be written. A registry per daemon, not a
//! process-global one: tests run several daemons in one process, each reporting its own numbers.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabel {
    pub instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceOutcome {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceCode {
    pub source: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStatus {
    pub source: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventType {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifierOutcome {
    pub notifier: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifierLabel {
    pub notifier: String,
}

type Histograms = Family<SourceLabel, Histogram, fn() -> Histogram>;

/// Every series tunewatch exports.
pub struct Metrics {
    registry: Registry,
    pub build_info: Family<VersionLabel, Gauge>,
    pub leader: Family<InstanceLabel, Gauge>,
    pub polls: Family<SourceOutcome, Counter>,
    pub webhooks: Family<SourceOutcome, Counter>,
    pub api_requests: Family<SourceCode, Counter>,
    pub api_duration: Histograms,
    pub jobs: Family<SourceStatus, Gauge>,
    pub events: Family<EventType, Counter>,
    pub deliveries: Family<NotifierOutcome, Counter>,
    pub outbox_pending: Gauge,
    pub outbox_dead: Gauge,
    pub last_success: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    pub deliveries_held: Gauge,
    pub deliveries_silenced: Counter,
    /// The silenced rows counted so far (the counter follows the database's count).
    silenced_seen: AtomicU64,
    pub groups_sent: Family<NotifierLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A label value as the exposition format writes it: `\\`, `"` and newlines escaped (the
/// client writes values as given).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            build_info: Family::default(),
            leader: Family::default(),
            polls: Family::default(),
            webhooks: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(histogram),
            jobs: Family::default(),
            events: Family::default(),
            deliveries: Family::default(),
            outbox_pending: Gauge::default(),
            outbox_dead: Gauge::default(),
            last_success: Family::default(),
            deliveries_held: Gauge::default(),
            deliveries_silenced: Counter::default(),
            silenced_seen: AtomicU64::new(0),
            groups_sent: Family::default(),
        };
        m.register();
        m
    }
}

impl Metrics {
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tunewatch_build_info",
            "Always 1; the version is a label",
            self.build_info.clone(),
        );
        r.register(
            "tunewatch_leader",
            "1 while this daemon (instance) leads and polls, 0 while another does",
            self.leader.clone(),
        );
        r.register(
            "tunewatch_polls",
            "Polls of a source, by outcome (ok or error)",
            self.polls.clone(),
        );
        r.register(
            "tunewatch_webhooks_received",
            "OpenAI webhooks received, by source and outcome (accepted, duplicate, bad_signature, \
             stale, bad_body, unknown_source, error); 413s for oversized bodies are not counted",
            self.webhooks.clone(),
        );
        r.register(
            "tunewatch_api_requests",
            "API requests, by source and HTTP status (or \"error\" when no answer came)",
            self.api_requests.clone(),
        );
        r.register(
            "tunewatch_api_request_duration_seconds",
            "Time to complete one API request, body included",
            self.api_duration.clone(),
        );
        r.register(
            "tunewatch_jobs",
            "Watched jobs, by source and status",
            self.jobs.clone(),
        );
        r.register(
            "tunewatch_events",
            "Events raised, by type",
            self.events.clone(),
        );
        r.register(
            "tunewatch_deliveries",
            "Delivery attempts, by notifier and outcome (delivered, retry or dead)",
            self.deliveries.clone(),
        );
        r.register(
            "tunewatch_outbox_pending",
            "Deliveries waiting in the outbox (including ones being retried)",
            self.outbox_pending.clone(),
        );
        r.register(
            "tunewatch_outbox_dead",
            "Deliveries that were rejected or gave up; see `tunewatch outbox`",
            self.outbox_dead.clone(),
        );
        r.register(
            "tunewatch_deliveries_held",
            "Deliveries held by quiet hours or waiting in an open group",
            self.deliveries_held.clone(),
        );
        r.register(
            "tunewatch_deliveries_silenced",
            "Deliveries a silence kept from being sent (kept, never replayed)",
            self.deliveries_silenced.clone(),
        );
        r.register(
            "tunewatch_groups_sent",
            "Group messages delivered, by notifier",
            self.groups_sent.clone(),
        );
        r.register(
            "tunewatch_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll, by source",
            self.last_success.clone(),
        );
    }

    /// A group message to `notifier` was delivered.
    pub fn group_sent(&self, notifier: &str) {
        self.groups_sent
            .get_or_create(&NotifierLabel {
                notifier: label(notifier),
            })
            .inc();
    }

    /// The silenced rows in the database now: the counter moves up to it.
    pub fn silenced_total(&self, now: u64) {
        use std::sync::atomic::Ordering;
        let before = self.silenced_seen.fetch_max(now, Ordering::Relaxed);
        if now > before {
            self.deliveries_silenced.inc_by(now - before);
        }
    }

    /// A poll of `source` ended `outcome` (`ok`, `error`).
    pub fn poll(&self, source: &str, outcome: &str) {
        self.polls
            .get_or_create(&SourceOutcome {
                source: label(source),
                outcome: label(outcome),
            })
            .inc();
    }

    /// A webhook for `source` was answered `outcome`.
    pub fn webhook(&self, source: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&SourceOutcome {
                source: label(source),
                outcome: label(outcome),
            })
            .inc();
    }

    /// One API request of `source`: its status (`code`) and how long it took.
    pub fn api_request(&self, source: &str, code: &str, seconds: f64) {
        self.api_requests
            .get_or_create(&SourceCode {
                source: label(source),
                code: label(code),
            })
            .inc();
        self.api_duration
            .get_or_create(&SourceLabel {
                source: label(source),
            })
            .observe(seconds);
    }

    /// An event was raised (its type bounded by [`event_type_label`]).
    pub fn event(&self, event_type: &str) {
        self.events
            .get_or_create(&EventType {
                r#type: label(&event_type_label(event_type)),
            })
            .inc();
    }

    /// A delivery attempt through `notifier` ended `outcome`.
    pub fn delivery(&self, notifier: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&NotifierOutcome {
                notifier: label(notifier),
                outcome: label(outcome),
            })
            .inc();
    }

    /// Deliveries by `notifier` that ended `outcome`, so far (tests and status lines).
    pub fn deliveries_of(&self, notifier: &str, outcome: &str) -> u64 {
        self.deliveries
            .get(&NotifierOutcome {
                notifier: label(notifier),
                outcome: label(outcome),
            })
            .map_or(0, |c| c.get())
    }

    /// Whether this daemon (`instance`) leads.
    pub fn leads(&self, instance: &str, leading: bool) {
        self.leader
            .get_or_create(&InstanceLabel {
                instance: label(instance),
            })
            .set(i64::from(leading));
    }

    /// The build's version, as `tunewatch_build_info`.
    pub fn build(&self, version: &str) {
        self.build_info
            .get_or_create(&VersionLabel {
                version: label(version),
            })
            .set(1);
    }

    /// The last successful poll of `source`, in unix seconds.
    pub fn succeeded(&self, source: &str, unix_seconds: f64) {
        self.last_success
            .get_or_create(&SourceLabel {
                source: label(source),
            })
            .set(unix_seconds);
    }

    /// The watched jobs by (source, status), replacing the previous counts.
    pub fn set_jobs(&self, counts: impl IntoIterator<Item = ((String, String), i64)>) {
        self.jobs.clear();
        for ((source, status), n) in counts {
            self.jobs
                .get_or_create(&SourceStatus {
                    source: label(&source),
                    status: label(&status),
                })
                .set(n);
        }
    }

    /// Everything, in the OpenMetrics text format (which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A job status as a metric label: the statuses tunewatch knows, else `"other"` (statuses
/// come from the API, and every distinct label value is a new series).
pub fn status_label(status: &str) -> &str {
    if crate::source::job::KNOWN_STATUSES.contains(&status) {
        status
    } else {
        "other"
    }
}

/// An event type as a metric label: `fine_tuning.job.other` for statuses tunewatch does not
/// know, so that the series stay bounded.
pub fn event_type_label(event_type: &str) -> std::borrow::Cow<'_, str> {
    use crate::model::EventKind;
    use crate::model::job::{JobStatus, Kind};
    match EventKind::parse(event_type) {
        None | Some(EventKind::Status(_, JobStatus::Other(_))) => {
            EventKind::Status(Kind::FineTuning, JobStatus::Other("other".into()))
                .name()
                .into()
        }
        Some(_) => event_type.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms_in_the_exposition_format() {
        let m = Metrics::default();
        m.poll("prod", "ok");
        m.poll("prod", "ok");
        m.outbox_pending.set(3);
        m.deliveries_held.set(4);
        m.silenced_total(2);
        m.silenced_total(5);
        m.silenced_total(5);
        m.group_sent("chat");
        m.api_request("prod", "200", 0.2);
        m.set_jobs([(("a\"b".to_string(), "running".to_string()), 1)]);
        let text = m.render();
        assert!(text.contains("# TYPE tunewatch_polls counter\n"), "{text}");
        assert!(
            text.contains("tunewatch_polls_total{source=\"prod\",outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("tunewatch_outbox_pending 3\n"), "{text}");
        assert!(text.contains("tunewatch_deliveries_held 4\n"), "{text}");
        assert!(
            text.contains("tunewatch_deliveries_silenced_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("tunewatch_groups_sent_total{notifier=\"chat\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "tunewatch_api_request_duration_seconds_bucket{le=\"0.1\",source=\"prod\"} 0\n"
            ) || text.contains(
                "tunewatch_api_request_duration_seconds_bucket{source=\"prod\",le=\"0.1\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("tunewatch_api_request_duration_seconds_count{source=\"prod\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tunewatch_jobs{source=\"a\\\"b\",status=\"running\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        m.set_jobs([]);
        assert!(!m.render().contains("tunewatch_jobs{"));
    }
}
