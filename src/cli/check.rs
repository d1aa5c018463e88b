//! `tunewatch check`: the config and every secret it names, read as the daemon will; what each
//! source watches and what its provider cannot give; the store reached.

use std::fmt::Write as _;

use crate::config::{Config, NotifierKind, SmtpTls};
use crate::store::Store;

use super::Failure;

/// `check`: prints the summary, each error on its own line; exit 2 when there is one.
///
/// # Errors
/// Never; the exit code says how it went.
pub fn run(config: &Config, credentials: Option<std::path::PathBuf>) -> Result<u8, Failure> {
    let (summary, errors) = check(config, credentials.as_deref());
    print!("{summary}");
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(if errors.is_empty() { 0 } else { 2 })
}

/// `check` on a PostgreSQL store: connects (changing nothing) and says what it found; a database
/// that cannot be reached is an error. Nothing is tried when the password cannot be read (that
/// error is reported already).
fn probe(
    target: &crate::config::PgTarget,
    credentials: Option<&std::path::Path>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let password = match &target.password {
        Some(r) => Some(
            r.read_in(crate::config::SecretKind::Password, credentials)
                .ok()?,
        ),
        None => None,
    };
    let known = crate::store::MIGRATIONS.len();
    match Store::probe_postgres(&target.url, password.as_ref()) {
        Ok((version, 0)) => Some(format!(
            "reachable: PostgreSQL {version}, no tunewatch tables yet (`run` creates them)"
        )),
        Ok((version, schema)) => Some(format!(
            "reachable: PostgreSQL {version}, tunewatch schema {schema} of {known}"
        )),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    }
}

/// `check`: a summary of a valid config, and the secrets it names that cannot be read.
pub fn check(config: &Config, credentials: Option<&std::path::Path>) -> (String, Vec<String>) {
    let mut out = String::new();
    // Every secret is read (by the same code as `run`) before anything is called valid.
    let mut errors: Vec<String> = config
        .check_secrets_in(credentials)
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    let secrets_unusable = errors.len();
    // A PostgreSQL store is reached (changing nothing) before the config is called valid.
    let reached = match &config.state_db {
        crate::config::StateDb::Postgres(target) => probe(target, credentials, &mut errors),
        crate::config::StateDb::Sqlite(_) => None,
    };
    let probed = errors.len();
    errors.extend(cases_errors(config));
    errors.extend(template_errors(config));
    headline(&mut out, config, &errors, (secrets_unusable, probed));
    database(&mut out, config, reached.as_deref());
    if let Some(addr) = config.daemon.listen {
        let _ = writeln!(out, "  listen    http://{addr}/healthz and /metrics");
    }
    sources(&mut out, config);
    notifiers_and_routes(&mut out, config);
    for w in config.permission_warnings() {
        let _ = writeln!(out, "warning: {w}");
    }
    (out, errors)
}

/// The first line: valid, or not valid and why.
fn headline(
    out: &mut String,
    config: &Config,
    errors: &[String],
    (secrets_unusable, probed): (usize, usize),
) {
    if errors.is_empty() {
        let _ = writeln!(out, "config {}: valid", config.path.display());
    } else {
        let mut what = Vec::new();
        match secrets_unusable {
            0 => {}
            1 => what.push("1 secret is unusable".to_string()),
            n => what.push(format!("{n} secrets are unusable")),
        }
        if probed > secrets_unusable {
            what.push("the database cannot be reached".to_string());
        }
        if errors.len() > probed {
            what.push("a cases file or a body template is unusable".to_string());
        }
        let _ = writeln!(
            out,
            "config {}: NOT valid ({}; see below)",
            config.path.display(),
            what.join(", ")
        );
    }
}

/// The database line, and what a probe of a PostgreSQL store found.
fn database(out: &mut String, config: &Config, reached: Option<&str>) {
    match &config.state_db {
        crate::config::StateDb::Sqlite(_) => {
            let _ = writeln!(out, "  database  {} (SQLite, one daemon)", config.state_db);
        }
        crate::config::StateDb::Postgres(_) => {
            let _ = writeln!(
                out,
                "  database  {} (PostgreSQL, shared: instance {}, leader_lease {}, claim_lease {})",
                config.state_db,
                config.daemon.instance.clone().unwrap_or_else(|| {
                    // The default names the running daemon's pid, not this command's.
                    let name = crate::config::instance_name(None);
                    let host = name.rsplit_once('-').map_or(name.as_str(), |(h, _)| h);
                    format!("{host}-PID")
                }),
                config.daemon.leader_lease,
                config.daemon.claim_lease
            );
            if let Some(line) = reached {
                let _ = writeln!(out, "            {line}");
            }
        }
    }
}

/// One line per source, with what its provider cannot give.
fn sources(out: &mut String, config: &Config) {
    for s in &config.sources {
        let watch: Vec<&str> = s
            .watch
            .iter()
            .map(|w| match w {
                crate::config::Watch::FineTuning => "fine-tuning jobs",
                crate::config::Watch::Batches => "batches",
                crate::config::Watch::Models => "models",
            })
            .collect();
        let _ = writeln!(
            out,
            "  source    {:<14} {} ({}: {}) every {}, {}",
            s.name,
            s.api_base,
            s.kind.name(),
            watch.join(" and "),
            s.poll_interval,
            s.auth
        );
        // What this provider's API cannot give, said once here rather than discovered later.
        for note in crate::source::cannot_give(s.kind, s.insight.enabled, &s.watch) {
            let _ = writeln!(out, "            {:<14} note: {note}", "");
        }
        if let Some(e) = &s.evaluate {
            evaluation_line(out, e);
        }
    }
}

/// Each evaluating source's cases file, read and checked as a run reads it: one sentence per
/// unusable file, naming its line.
fn cases_errors(config: &Config) -> Vec<String> {
    config
        .sources
        .iter()
        .filter_map(|s| {
            let e = s.evaluate.as_ref()?;
            let err = crate::evaluate::cases::load(&e.cases_file).err()?;
            Some(format!(
                "source {:?}: evaluate.cases_file {}: {err}",
                s.name,
                e.cases_file.display()
            ))
        })
        .collect()
}

/// Each `http` notifier's template, rendered against a sample event as a delivery would: one
/// sentence per template that fails, with its line.
fn template_errors(config: &Config) -> Vec<String> {
    let sample = crate::notify::sample_event(crate::store::unix_now());
    config
        .notifiers
        .iter()
        .filter_map(|n| match &n.kind {
            NotifierKind::Http(h) => {
                let result = crate::notify::http::BodyTemplate::new(&h.template)
                    .and_then(|t| t.render(&sample).map(|_| ()));
                result.err().map(|e| {
                    format!(
                        "notifier {:?} {}: {} (rendered against a sample event)",
                        n.name, h.template_origin, e.message
                    )
                })
            }
            _ => None,
        })
        .collect()
}

/// The evaluation line of a source: its cases, graders, baseline and cap.
fn evaluation_line(out: &mut String, e: &crate::config::EvaluateConfig) {
    let Ok(cases) = crate::evaluate::cases::load(&e.cases_file) else {
        return;
    };
    let graders: Vec<&str> = crate::evaluate::cases::grader_names(&cases)
        .into_iter()
        .collect();
    let baseline = match &e.baseline {
        crate::config::Baseline::Base => "the job's base model".to_string(),
        crate::config::Baseline::None => "none".to_string(),
        crate::config::Baseline::Previous => "the previous fine-tune of the suffix".to_string(),
        crate::config::Baseline::Model(m) => m.clone(),
    };
    let sample = match e.sample {
        0 => "all".to_string(),
        n => n.min(cases.cases.len() as u32).to_string(),
    };
    let _ = writeln!(
        out,
        "            {:<14} evaluate: {} cases ({sample} a run; {}), baseline {baseline}, \
         cap ${:.2}",
        "",
        cases.cases.len(),
        graders.join(", "),
        e.max_cost_usd
    );
}

/// One line per notifier and per route.
fn notifiers_and_routes(out: &mut String, config: &Config) {
    for n in &config.notifiers {
        let what = match &n.kind {
            NotifierKind::Webhook(w) => format!(
                "webhook {} ({}signed)",
                w.shown_url(),
                if w.secret.is_some() { "" } else { "not " }
            ),
            NotifierKind::Email(e) => format!(
                "email via {}:{} ({}) to {}",
                e.smtp_host,
                e.smtp_port,
                match e.tls {
                    SmtpTls::Starttls => "STARTTLS",
                    SmtpTls::Tls => "TLS",
                    SmtpTls::None => "plaintext",
                },
                e.to.join(", ")
            ),
            NotifierKind::PagerDuty(p) => format!(
                "pagerduty {} (routing key from {})",
                crate::inert::redact_url(&p.api_base, false),
                p.routing_key
            ),
            NotifierKind::Telegram(t) => format!(
                "telegram {}/bot***/ to chat {} (token from {})",
                crate::inert::redact_url(&t.api_base, false).trim_end_matches('/'),
                t.chat_id,
                t.bot_token
            ),
            NotifierKind::Http(h) => format!(
                "http {} {} (body from {})",
                h.method,
                match &h.url {
                    crate::config::UrlSource::Inline(u) => crate::inert::redact_url(u, true),
                    crate::config::UrlSource::Secret(r) => format!("(URL from {r})"),
                },
                h.template_origin
            ),
        };
        let _ = writeln!(out, "  notifier  {:<14} {what}", n.name);
    }
    for (i, r) in config.routes.iter().enumerate() {
        let sources = r
            .sources
            .as_ref()
            .map_or("all sources".to_string(), |s| s.join(", "));
        let _ = writeln!(
            out,
            "  route {}   {} from {} -> {}",
            i + 1,
            r.events.join(", "),
            sources,
            r.notifiers.join(", ")
        );
    }
    if config.routes.is_empty() {
        let _ = writeln!(
            out,
            "  (no [[route]]: events are stored but nobody is told)"
        );
    }
}
