//! The status page's HTML, rendered with maud: every interpolated string is escaped. No script,
//! no external asset; a `<meta refresh>` keeps it current; the layout reads on a phone.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::data::{JobDetail, JobView, Overview};
use crate::notify::render::{human, timestamp};

/// Seconds between refreshes of the page.
const REFRESH: u32 = 30;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#1f2328}
h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #d0d7de;vertical-align:top;overflow-wrap:anywhere}
td:first-child,th:first-child{overflow-wrap:normal}
ul{margin:4px 0;padding-left:18px}
th{color:#57606a;font-weight:600}
code{font-size:12px;word-break:break-all}h1 code{font-size:18px}td a code{word-break:normal;white-space:nowrap}
.s{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;color:#fff;background:#6e7781;white-space:nowrap;overflow-wrap:normal}
td.n{white-space:nowrap;overflow-wrap:normal}
.pager a,.pager span{margin-right:10px}
.succeeded,.completed{background:#1a7f37}.failed,.expired{background:#cf222e}
.running,.in_progress,.finalizing{background:#0969da}.cancelled,.cancelling{background:#6e7781}
.queued,.validating_files,.validating,.paused{background:#9a6700}
.bar{width:110px;height:8px;background:#eaeef2;border-radius:4px;overflow:hidden;display:inline-block}
.bar i{display:block;height:100%;background:#0969da}
.muted{color:#57606a}.bad{color:#cf222e}.ok{color:#1a7f37}
svg.chart{width:100%;max-width:640px;height:auto}
svg .grid{stroke:#eaeef2}svg .tick,svg .legend text{font-size:11px;fill:#57606a}svg .axis{font-size:12px;fill:#57606a}
svg .train{fill:none;stroke:#0969da;stroke-width:2}svg polyline.valid{fill:none;stroke:#db6d28;stroke-width:2}
svg circle.valid{fill:#db6d28;stroke:none}
.soon{color:#cf222e;font-weight:600}.near{color:#9a6700;font-weight:600}.far{color:#1a7f37}
@media (max-width:700px){.wide{display:none}td,th{padding:4px}.bar{width:48px}}
@media (max-width:480px){table{font-size:13px}.bar{display:none}}
";

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH);
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

fn status(s: &str) -> Markup {
    // The class is a fixed word or nothing: an unknown status is shown, never used as a class.
    let known = crate::source::job::KNOWN_STATUSES.contains(&s)
        || crate::source::job::BATCH_STATUSES.contains(&s);
    html! { span class=(if known { format!("s {s}") } else { "s".into() }) { (s) } }
}

fn ago(now: i64, t: i64) -> String {
    format!("{} ago", human(now - t))
}

fn job_row(now: i64, j: &JobView) -> Markup {
    html! {
        tr {
            td.wide { (j.source) }
            // A cloud resource name shows its last segment (as `tunewatch status` does); the
            // whole id is the link's title and in the job's page.
            td { a href=(format!("/jobs/{}/{}", urlencode(&j.source), urlencode(&j.id))) title=(j.id) {
                code { (j.id.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&j.id)) }
            } }
            td.wide { code { (j.model.as_deref().unwrap_or("-")) } }
            td.n {
                (status(&j.status))
                @if j.stalled { " " span.bad { "stalled" } }
            }
            td.n {
                @if let Some(p) = j.progress {
                    span.bar title=(format!("{:.0} %", p * 100.0)) {
                        i style=(format!("width:{:.0}%", (p * 100.0).clamp(0.0, 100.0))) {}
                    }
                    " " (format!("{:.0} %", p * 100.0))
                } @else { span.muted { "-" } }
            }
            td.wide { (j.eta.map_or("-".into(), timestamp)) }
            td.wide { (j.cost.map_or("-".into(), |(c, est)| if est { format!("≈ ${c:.2}") } else { format!("${c:.2}") })) }
            td.n { (ago(now, j.last_change_at)) }
        }
    }
}

/// Links to the other pages of jobs, when there are several.
fn pager(o: &Overview) -> Markup {
    html! {
        @if o.pages > 1 {
            p.pager {
                @if o.page > 1 { a href=(format!("/?page={}", o.page - 1)) { "← newer" } }
                span.muted { "page " (o.page) " of " (o.pages) " (" (o.total_jobs) " jobs)" }
                @if o.page < o.pages { a href=(format!("/?page={}", o.page + 1)) { "older →" } }
            }
        }
    }
}

/// The dead and failing deliveries with their last error, as `tunewatch outbox` shows them.
fn problems(o: &Overview) -> Markup {
    html! {
        @if !o.problems.is_empty() {
            table {
                tr { th { "Delivery" } th { "State" } th.wide { "Event" } th { "Job" } th.wide { "Notifier" } th { "Last error" } }
                @for d in &o.problems {
                    tr {
                        td { (d.id) }
                        td.n { span class=(if d.state == "dead" { "bad" } else { "" }) { (d.state) " ×" (d.attempts) } }
                        td.wide { code { (d.event_type) } }
                        td { code { (d.job_id.as_deref().unwrap_or(&d.source)) } }
                        td.wide { (d.notifier) }
                        td { (d.last_error.as_deref().unwrap_or("-")) }
                    }
                }
            }
            @let shown = o.problems.len() as i64;
            @if o.outbox.1 + o.outbox.2 + o.held.0 + o.held.1 > shown {
                p.muted { "The newest " (shown) " shown; " code { "tunewatch outbox" } " lists them all." }
            }
        }
    }
}

/// The fine-tuned models, soonest retirement first, coloured by the days they have left: red
/// within 7 days (or retired), amber within 30, green after.
fn models(o: &Overview) -> Markup {
    html! {
        @if !o.models.is_empty() {
            h2 { "Models" }
            table {
                tr { th { "Model" } th.wide { "Base" } th { "Retires" } th.wide { "Job" } th.wide { "Source" } }
                @for m in &o.models {
                    @let days = m.days_left(o.now);
                    @let class = match (m.gone_at, days) {
                        (Some(_), _) => "soon",
                        (None, Some(d)) if d <= 7 => "soon",
                        (None, Some(d)) if d <= 30 => "near",
                        (None, Some(_)) => "far",
                        (None, None) => "muted",
                    };
                    tr {
                        td { code { (m.model_id) } }
                        td.wide { code { (m.base.as_deref().unwrap_or("-")) } }
                        td.n {
                            span class=(class) {
                                @if m.gone_at.is_some() { "gone from the list" }
                                @else { (crate::cli::models::retires(m, o.now)) }
                            }
                        }
                        td.wide { code { (m.job_id.as_deref().unwrap_or("-")) } }
                        td.wide { (m.source) }
                    }
                }
            }
        }
    }
}

/// `GET /`: jobs, sources, outbox.
pub fn index(o: &Overview) -> Markup {
    page(
        "tunewatch",
        html! {
            h1 { "tunewatch" }
            h2 { "Sources" }
            @if let Some(leader) = &o.leader {
                p { (leader) }
            }
            table {
                tr { th { "Source" } th { "Health" } th.wide { "Last poll" } th.wide { "Last webhook" } }
                @for s in &o.sources {
                    tr {
                        td { (s.name) }
                        td { span class=(if s.ok { "ok" } else { "bad" }) { (s.health) } }
                        td.wide { (s.last_poll_at.map_or("never".into(), |t| ago(o.now, t))) }
                        td.wide { (s.last_webhook_at.map_or("-".into(), |t| ago(o.now, t))) }
                    }
                }
            }
            h2 { "Jobs and batches" }
            @if o.jobs.is_empty() {
                p.muted { "No jobs seen yet." }
            } @else {
                table {
                    tr {
                        th.wide { "Source" } th { "Job" } th.wide { "Model" } th { "Status" }
                        th { "Progress" } th.wide { "ETA" } th.wide { "Cost" } th { "Changed" }
                    }
                    @for j in &o.jobs { (job_row(o.now, j)) }
                }
                (pager(o))
            }
            (models(o))
            h2 { "Outbox" }
            p {
                (o.outbox.0) " pending · "
                span class=(if o.outbox.1 > 0 { "bad" } else { "" }) { (o.outbox.1) " failing" } " · "
                span class=(if o.outbox.2 > 0 { "bad" } else { "" }) { (o.outbox.2) " dead" }
                " · " (o.held.0) " held or grouped · " (o.held.1) " silenced"
            }
            (problems(o))
            p.muted { "Refreshes every " (REFRESH) " s. JSON: " a href="/api/jobs" { "/api/jobs" } }
        },
    )
}

/// `GET /jobs/SOURCE/JOB_ID`: the timeline, the loss chart, the checkpoints.
pub fn job(d: &JobDetail) -> Markup {
    page(
        &format!("{} · tunewatch", d.id),
        html! {
            p { a href="/" { "← all jobs" } }
            h1 { code { (d.id) } " " (status(&d.status)) }
            p.muted { (d.source) @if let Some(m) = &d.model { " · " code { (m) } } }
            @if let Some(e) = &d.error { p.bad { "Error: " (e) } }
            @if let Some(svg) = &d.chart {
                h2 { "Loss" }
                (PreEscaped(svg))
            }
            @if !d.checkpoints.is_empty() {
                h2 { "Checkpoints" }
                table {
                    tr { th { "Step" } th { "Full valid loss" } th { "Model" } }
                    @for c in &d.checkpoints {
                        tr {
                            td { (c.step) }
                            td { (c.full_valid_loss.or(c.valid_loss).map_or("-".into(), crate::notify::render::loss)) }
                            td { code { (c.model) } }
                        }
                    }
                }
            }
            (evaluations(d))
            h2 { "Silence" }
            p.muted { "No alert about this job for a while (kept, never replayed; "
                code { "tunewatch silence list" } " shows it):" }
            p {
                @for hours in [1, 8, 24] {
                    form method="post" action=(format!("/jobs/{}/{}/silence", urlencode(&d.source), urlencode(&d.id))) style="display:inline;margin-right:8px" {
                        input type="hidden" name="hours" value=(hours);
                        button type="submit" { "Silence for " (hours) " h" }
                    }
                }
            }
            h2 { "Timeline" }
            table {
                tr { th { "When" } th { "What" } }
                @for t in &d.timeline {
                    tr {
                        td { (timestamp(t.at)) }
                        td {
                            (t.title)
                            @if !t.lines.is_empty() {
                                ul { @for l in &t.lines { li { code { (l) } } } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The evaluations of a job's model: the verdict sentence, each side's numbers, the worst cases.
fn evaluations(d: &JobDetail) -> Markup {
    html! {
        @if !d.evaluations.is_empty() {
            h2 { "Evaluation" }
            @for v in &d.evaluations {
                @match &v.evaluation {
                    Some(e) => {
                        p class=(match (e.reason.is_some(), e.verdict) {
                            (true, _) => "bad",
                            (false, crate::model::evaluation::Verdict::Improved) => "ok",
                            (false, crate::model::evaluation::Verdict::Regressed) => "bad",
                            _ => "",
                        }) { (e.sentence()) }
                        table {
                            tr { th { "Model" } th { "Passed" } th { "95 % interval" } }
                            @for s in std::iter::once(&e.model).chain(e.baseline.as_ref()) {
                                tr {
                                    td { code { (s.model) } }
                                    td { (s.passed) "/" (s.total) }
                                    td { (format!("{:.0}–{:.0} %", s.low * 100.0, s.high * 100.0)) }
                                }
                            }
                        }
                        @if !e.worst.is_empty() {
                            ul {
                                @for w in &e.worst {
                                    li {
                                        code { (w.id) } " failed " (w.grader) ": " (w.reason)
                                        @if let Some(o) = &w.output { " — " code { (o) } }
                                    }
                                }
                            }
                        }
                    }
                    None => p.muted { "Evaluation of " code { (v.model) } ": " (v.state) },
                }
            }
        }
    }
}

/// A path segment, percent-encoded.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ModelRow;

    #[test]
    fn the_models_section_lists_models_soonest_first_coloured_by_days_left() {
        let now = 1_796_558_400;
        let model = |id: &str, days: Option<i64>, gone: bool| ModelRow {
            source: "prod".into(),
            model_id: id.into(),
            base: Some("gpt-4o-mini-2024-07-18".into()),
            job_id: Some("ftjob-1".into()),
            created_at: Some(now - 86_400),
            retires_at: days.map(|d| now - now.rem_euclid(86_400) + d * 86_400),
            retired_at: None,
            gone_at: gone.then_some(now),
        };
        let o = Overview {
            now,
            leader: None,
            sources: Vec::new(),
            jobs: Vec::new(),
            page: 1,
            pages: 1,
            total_jobs: 0,
            outbox: (0, 0, 0),
            held: (0, 0),
            problems: Vec::new(),
            models: vec![
                model("ft:a:soon", Some(5), false),
                model("ft:b:near", Some(20), false),
                model("ft:c:far", Some(90), false),
                model("ft:d:none", None, false),
                model("ft:e:gone", None, true),
            ],
        };
        let html = index(&o).into_string();
        let section = &html[html.find("<h2>Models</h2>").expect("a Models section")..];
        for (id, class, text) in [
            ("ft:a:soon", "soon", "(in 5 days)"),
            ("ft:b:near", "near", "(in 20 days)"),
            ("ft:c:far", "far", "(in 90 days)"),
            ("ft:d:none", "muted", "—"),
            ("ft:e:gone", "soon", "gone from the list"),
        ] {
            let row = &section[section.find(id).unwrap()..];
            let row = &row[..row.find("</tr>").unwrap()];
            assert!(
                row.contains(&format!("class=\"{class}\"")) && row.contains(text),
                "{id}: {row}"
            );
        }
        let empty = Overview {
            models: Vec::new(),
            ..o
        };
        assert!(!index(&empty).into_string().contains("<h2>Models</h2>"));
    }
}
