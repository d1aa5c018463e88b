//! E-mail alerts through a real SMTP server on loopback: content, retries on 4xx, dead on 5xx,
//! STARTTLS with a private CA given as `ca_file`, and `notify-test`.

use crate::common;

use std::time::Duration;

use common::smtp::{Smtp, TestCerts};
use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use tunewatch::Daemon;
use tunewatch::store::unix_now_ms;

fn mail_notifier(smtp: &Smtp, extra: &str) -> String {
    format!(
        r#"
[[notifier]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
from = "tunewatch <tunewatch@example.com>"
to = ["ml-team@example.com", "lead@example.com"]
retry_initial = "100ms"
retry_max = "400ms"
timeout = "10s"
{extra}

[[route]]
events = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
notifiers = ["mail"]
"#,
        port = smtp.addr.port()
    )
}

struct Mail {
    subject: String,
    text: String,
    html: String,
    message_id: String,
    raw: String,
}

fn parse(raw: &[u8]) -> Mail {
    let m = MessageParser::default()
        .parse(raw)
        .expect("a parsable message");
    Mail {
        subject: m.subject().unwrap_or_default().to_string(),
        text: m.body_text(0).expect("a text/plain part").to_string(),
        html: m.body_html(0).expect("a text/html part").to_string(),
        message_id: m.message_id().unwrap_or_default().to_string(),
        raw: String::from_utf8_lossy(raw).into_owned(),
    }
}

/// A daemon whose source has had its silent baseline poll.
async fn baseline(api: &Api, extra: &str) -> (Setup, Daemon) {
    let hook = Hook::start().await;
    let setup = Setup::new(api, &hook.url(), extra);
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    (setup, daemon)
}

async fn wait_due(daemon: &Daemon) {
    wait_until("the retry to fall due", Duration::from_secs(5), || {
        daemon
            .store()
            .next_due_ms()
            .unwrap()
            .is_some_and(|t| t <= unix_now_ms())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_succeeded_job_arrives_as_a_multipart_mail_naming_job_status_model_and_tokens() {
    let api = Api::start(vec![job(
        "ftjob-abc123",
        "running",
        json!({"created_at": 1735470000}),
    )])
    .await;
    let smtp = Smtp::start(None);
    let (_setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    api.update(
        "ftjob-abc123",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::abc123",
               "trained_tokens": 5768, "finished_at": 1735478040,
               "result_files": ["file-results-1"]}),
    );
    daemon.once().await.unwrap();
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 1);
    let mail = parse(&accepted[0]);
    assert_eq!(
        mail.subject,
        "[tunewatch] prod: ftjob-abc123 succeeded — ft:gpt-4o-mini:acme::abc123"
    );
    assert!(mail.raw.contains("multipart/alternative"), "{}", mail.raw);
    for body in [&mail.text, &mail.html] {
        assert!(body.contains("ft:gpt-4o-mini:acme::abc123"), "{body}");
        assert!(body.contains("5,768"), "{body}");
        assert!(
            body.contains("2h 14m"),
            "duration created → finished: {body}"
        );
        assert!(body.contains("file-results-1"), "{body}");
    }
    assert!(
        mail.text
            .contains("Status:           succeeded (was running)"),
        "{}",
        mail.text
    );
    let rows = daemon.store().outbox_rows(true).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!(row.state, "delivered");
    assert_eq!(
        mail.message_id,
        format!("{}@tunewatch", row.event_id),
        "Message-ID from the event id"
    );
    assert!(
        mail.raw.contains("Auto-Submitted: auto-generated"),
        "autoresponders must not answer an alert: {}",
        mail.raw
    );
    assert!(
        mail.raw
            .contains("To: ml-team@example.com, lead@example.com"),
        "{}",
        mail.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_jobs_mail_carries_the_error() {
    let api = Api::start(vec![job("ftjob-bad", "validating_files", json!({}))]).await;
    let smtp = Smtp::start(None);
    let (_setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    let failed = fixture("ft_job_failed.derived.json");
    api.update(
        "ftjob-bad",
        json!({"status": "failed", "error": failed["error"].clone()}),
    );
    daemon.once().await.unwrap();
    let mail = parse(&smtp.accepted()[0]);
    assert_eq!(
        mail.subject,
        "[tunewatch] prod: ftjob-bad failed — gpt-4o-mini-2024-07-18"
    );
    let message = "Training file has 7 example(s), but must have at least 10 examples";
    assert!(
        mail.text.contains(&format!("failed: {message}")),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("invalid_n_examples"), "{}", mail.text);
    assert!(
        mail.text.contains("(param: training_file)"),
        "{}",
        mail.text
    );
    assert!(mail.html.contains("invalid_n_examples"), "{}", mail.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_answer_is_retried_and_the_mail_is_delivered_once() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let smtp = Smtp::start(None);
    smtp.script(&[(451, "Greylisted, try again later")]);
    let (_setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    api.update("ftjob-a", json!({"status": "cancelled"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(false).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!(
        (row.state.as_str(), row.attempts, row.last_status),
        ("pending", 1, Some(451))
    );
    assert!(
        row.last_error.as_deref().unwrap().contains("Greylisted"),
        "{row:?}"
    );
    assert!(smtp.accepted().is_empty());

    wait_due(&daemon).await;
    daemon.once().await.unwrap();
    assert_eq!(smtp.accepted().len(), 1, "delivered once");
    assert_eq!(smtp.attempts(), 2);
    let rows = daemon.store().outbox_rows(true).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("delivered", 2));
    let first = parse(&smtp.accepted()[0]);
    assert_eq!(
        first.subject,
        "[tunewatch] prod: ftjob-a cancelled — gpt-4o-mini-2024-07-18"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_answer_is_dead_at_once_with_the_servers_reply() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let smtp = Smtp::start(None);
    smtp.script(&[(554, "Message rejected as spam")]);
    let (setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    api.update("ftjob-a", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    daemon.once().await.unwrap();
    assert_eq!(smtp.attempts(), 1, "a 5xx is not retried");
    let rows = daemon.store().outbox_rows(false).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!(
        (row.state.as_str(), row.last_status),
        ("dead", Some(554)),
        "{row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("Message rejected as spam"),
        "{row:?}"
    );
    let out = setup.command(&["outbox"]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.lines()
            .any(|l| l.contains("dead") && l.contains("ftjob-a"))
            && out.contains("last error:")
            && out.contains("554"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_works_with_a_private_ca_given_as_ca_file_and_fails_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let smtp = Smtp::start(Some(&certs));
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let extra = mail_notifier(
        &smtp,
        &format!(
            "tls = \"starttls\"\nca_file = \"{}\"\nusername = \"tunewatch\"\npassword_file = \"smtp.password\"",
            certs.ca.display()
        ),
    )
    .replace("smtp_host = \"127.0.0.1\"", "smtp_host = \"localhost\"");
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("smtp.password"), "s3cret-smtp\n").unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    daemon.once().await.unwrap();
    api.update("ftjob-a", json!({"status": "succeeded"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(true).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!(row.state, "delivered", "{row:?}");
    assert_eq!(smtp.accepted().len(), 1);
    assert_eq!(
        smtp.state.lock().unwrap().logins,
        [("tunewatch".to_string(), "s3cret-smtp".to_string())],
        "credentials went over the encrypted connection"
    );

    // Without the CA, the server's certificate is not trusted: retried, with the reason.
    drop(daemon);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace(&format!("ca_file = \"{}\"\n", certs.ca.display()), "");
    std::fs::write(&setup.config, text).unwrap();
    let daemon = Daemon::new(setup.load()).unwrap();
    api.update(
        "ftjob-a",
        json!({"status": "succeeded", "trained_tokens": 1}),
    );
    api.add(job("ftjob-b", "running", json!({})));
    daemon.once().await.unwrap();
    api.update("ftjob-b", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(false).unwrap();
    let row = rows
        .iter()
        .find(|r| r.notifier == "mail")
        .expect("a pending mail");
    assert_eq!(row.state, "pending");
    let error = row.last_error.as_deref().unwrap().to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{error}"
    );
    assert_eq!(smtp.accepted().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_test_reaches_the_named_notifier_without_touching_the_outbox() {
    let api = Api::start(vec![]).await;
    let smtp = Smtp::start(None);
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), &mail_notifier(&smtp, "tls = \"none\""));

    let o = setup.command(&["notify-test", "mail"]).output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("delivered (answered 250)"), "{out}");
    let mail = parse(&smtp.accepted()[0]);
    assert!(
        mail.subject
            .starts_with("[tunewatch] notify-test: ftjob-tunewatch-test succeeded"),
        "{}",
        mail.subject
    );
    assert!(mail.text.contains("1,843,200"), "{}", mail.text);

    let o = setup.command(&["notify-test", "hook"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let got = hook.delivered();
    assert_eq!(got.len(), 1);
    assert!(got[0].signature_ok);
    assert!(got[0].webhook_id.starts_with("evt_test_"));

    hook.answer(&[Answer::Status(500)]);
    let o = setup.command(&["notify-test", "hook"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("notifier \"hook\"") && err.contains("HTTP 500"),
        "{err}"
    );

    let o = setup.command(&["notify-test", "pager"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no notifier named \"pager\" (it has: hook, mail)")
    );
    assert!(
        !setup.db().exists(),
        "notify-test does not open the database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_smtp_server_keeps_the_mail_pending() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let smtp = Smtp::start(None);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = mail_notifier(&smtp, "tls = \"none\"").replace(
        &format!("smtp_port = {}", smtp.addr.port()),
        &format!("smtp_port = {port}"),
    );
    let (_setup, daemon) = baseline(&api, &extra).await;
    api.update("ftjob-a", json!({"status": "failed"}));
    daemon.once().await.unwrap();
    let rows = daemon.store().outbox_rows(false).unwrap();
    let row = rows.iter().find(|r| r.notifier == "mail").unwrap();
    assert_eq!(row.state, "pending");
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{row:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_job_s_mail_has_the_training_numbers_and_the_loss_chart_inline() {
    let api = Api::start(vec![job("ftjob-abc123", "running", json!({}))]).await;
    let smtp = Smtp::start(None);
    let (_setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    for step in 1..=8u64 {
        api.add_item(
            "ftjob-abc123",
            "events",
            json!({"object": "fine_tuning.job.event", "id": format!("ftevent-{step}"),
                   "created_at": 1_735_480_000 + step as i64, "level": "info",
                   "message": "Step", "type": "metrics",
                   "data": {"step": step * 10, "total_steps": 80,
                            "train_loss": 2.0 / step as f64,
                            "valid_loss": 2.2 / step as f64}}),
        );
    }
    api.update(
        "ftjob-abc123",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::abc123"}),
    );
    daemon.once().await.unwrap();
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 1);
    let raw = &accepted[0];
    let mail = parse(raw);
    for body in [&mail.text, &mail.html] {
        assert!(body.contains("step 80 of 80 (100 %)"), "{body}");
        assert!(body.contains("0.2500"), "the last training loss: {body}");
        assert!(body.contains("0.2750"), "the last validation loss: {body}");
    }
    assert!(mail.text.contains("Loss by step:"), "{}", mail.text);
    assert!(
        mail.text.contains("step   training  validation"),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("            80     0.2500      0.2750"),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains("<img src=\"cid:loss-chart@tunewatch\""),
        "{}",
        mail.html
    );
    assert!(mail.raw.contains("multipart/related"), "{}", mail.raw);
    let m = MessageParser::default().parse(raw.as_slice()).unwrap();
    let chart = m.attachment(0).expect("the chart beside the HTML part");
    assert_eq!(chart.content_id(), Some("loss-chart@tunewatch"));
    let ct = chart.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("image", Some("png")));
    assert!(chart.contents().starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        chart.contents().len() > 2000,
        "a drawn chart, not an empty image"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_jobs_finishing_together_reach_a_server_that_serves_four_sessions_at_once() {
    // The loopback server (like many relays) serves four sessions at a time and leaves further
    // connections waiting for a greeting. Twenty alerts opened twenty connections: four were
    // sent, sixteen timed out. They must share a few connections instead.
    let jobs = (0..20)
        .map(|i| job(&format!("ftjob-{i:02}"), "running", json!({})))
        .collect();
    let api = Api::start(jobs).await;
    let smtp = Smtp::start(None);
    let (_setup, daemon) = baseline(&api, &mail_notifier(&smtp, "tls = \"none\"")).await;
    for i in 0..20 {
        api.update(
            &format!("ftjob-{i:02}"),
            json!({"status": "succeeded", "fine_tuned_model": format!("ft:m:{i}")}),
        );
    }
    daemon.once().await.unwrap();
    assert_eq!(smtp.accepted().len(), 20, "every alert sent in one round");
    let rows = daemon.store().outbox_rows(true).unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.notifier == "mail")
            .all(|r| r.state == "delivered"),
        "{rows:?}"
    );
}
