//! Counters, gauges and histograms, rendered in Prometheus text format for `/metrics`.
//!
//! A small registry owned by each daemon instead of a process-global recorder: tests run several
//! daemons in one process, and each must report only its own numbers. Every series tunewatch
//! exports is declared in [`SERIES`], with its type and help text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// (name, type, help) of every series.
pub const SERIES: &[(&str, &str, &str)] = &[
    (
        "tunewatch_build_info",
        "gauge",
        "Always 1; the version is a label.",
    ),
    (
        "tunewatch_leader",
        "gauge",
        "1 while this daemon (instance) leads and polls, 0 while another does.",
    ),
    (
        "tunewatch_polls_total",
        "counter",
        "Polls of a source, by outcome (ok or error).",
    ),
    (
        "tunewatch_webhooks_received_total",
        "counter",
        "OpenAI webhooks received, by source and outcome (accepted, duplicate, bad_signature, \
         stale, bad_body, unknown_source, error); 413s for oversized bodies are not counted.",
    ),
    (
        "tunewatch_api_requests_total",
        "counter",
        "API requests, by source and HTTP status (or \"error\" when no answer came).",
    ),
    (
        "tunewatch_api_request_duration_seconds",
        "histogram",
        "Time to complete one API request, body included.",
    ),
    (
        "tunewatch_jobs",
        "gauge",
        "Watched jobs, by source and status.",
    ),
    (
        "tunewatch_events_total",
        "counter",
        "Events raised, by type.",
    ),
    (
        "tunewatch_deliveries_total",
        "counter",
        "Delivery attempts, by notifier and outcome (delivered, retry or dead).",
    ),
    (
        "tunewatch_outbox_pending",
        "gauge",
        "Deliveries waiting in the outbox (including ones being retried).",
    ),
    (
        "tunewatch_outbox_dead",
        "gauge",
        "Deliveries that were rejected or gave up; see `tunewatch outbox`.",
    ),
    (
        "tunewatch_last_successful_poll_timestamp_seconds",
        "gauge",
        "Unix time of the last successful poll, by source.",
    ),
];

/// Upper bounds (seconds) of the request-duration histogram buckets.
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The daemon's metrics.
#[derive(Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Metrics {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Only plain numbers are updated under the lock; a poisoned lock still holds valid data.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds 1 to a counter.
    pub fn inc(&self, name: &'static str, l: &[(&str, &str)]) {
        *self.registry().values.entry((name, labels(l))).or_default() += 1.0;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, l: &[(&str, &str)], value: f64) {
        self.registry().values.insert((name, labels(l)), value);
    }

    /// Replaces every series of a gauge (e.g. jobs by status, recomputed at each scrape).
    pub fn replace(&self, name: &'static str, series: Vec<(Labels, f64)>) {
        let mut r = self.registry();
        r.values.retain(|(n, _), _| *n != name);
        for (l, v) in series {
            r.values.insert((name, l), v);
        }
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, l: &[(&str, &str)], seconds: f64) {
        let mut r = self.registry();
        let h = r.histograms.entry((name, labels(l))).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The current value of a counter or gauge (for tests and status lines).
    pub fn get(&self, name: &'static str, l: &[(&str, &str)]) -> f64 {
        self.registry()
            .values
            .get(&(name, labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Everything, in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let r = self.registry();
        let mut out = String::new();
        for (name, kind, help) in SERIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, l), v) in r.values.range((*name, Vec::new())..) {
                if n != name {
                    break;
                }
                let _ = writeln!(out, "{name}{} {}", fmt_labels(l, None), number(*v));
            }
            for ((n, l), h) in r.histograms.range((*name, Vec::new())..) {
                if n != name {
                    break;
                }
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        fmt_labels(l, Some(&le)),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(l, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), number(h.sum));
                let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
            }
        }
        out
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        v.to_string()
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
    fn renders_counters_gauges_and_histograms_in_prometheus_text() {
        let m = Metrics::default();
        m.inc(
            "tunewatch_polls_total",
            &[("source", "prod"), ("outcome", "ok")],
        );
        m.inc(
            "tunewatch_polls_total",
            &[("source", "prod"), ("outcome", "ok")],
        );
        m.set("tunewatch_outbox_pending", &[], 3.0);
        m.observe(
            "tunewatch_api_request_duration_seconds",
            &[("source", "prod")],
            0.2,
        );
        m.set(
            "tunewatch_jobs",
            &[("source", "a\"b"), ("status", "running")],
            1.0,
        );
        let text = m.render();
        assert!(text.contains("# TYPE tunewatch_polls_total counter\n"));
        assert!(
            text.contains("tunewatch_polls_total{source=\"prod\",outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("tunewatch_outbox_pending 3\n"));
        assert!(text.contains(
            "tunewatch_api_request_duration_seconds_bucket{source=\"prod\",le=\"0.1\"} 0\n"
        ));
        assert!(text.contains(
            "tunewatch_api_request_duration_seconds_bucket{source=\"prod\",le=\"0.25\"} 1\n"
        ));
        assert!(text.contains("tunewatch_api_request_duration_seconds_count{source=\"prod\"} 1\n"));
        assert!(
            text.contains("tunewatch_jobs{source=\"a\\\"b\",status=\"running\"} 1\n"),
            "{text}"
        );
        m.replace("tunewatch_jobs", vec![]);
        assert!(!m.render().contains("tunewatch_jobs{"));
    }
}
