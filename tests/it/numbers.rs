//! Hostile numbers (DESIGN.md, "Hostile input": "Numbers from outside are hostile too") through
//! the real binary: a metric step above 2^53 on the status page, losses of ±1e308 in an e-mail's
//! chart, and an events list that never ends. Every loop they feed has a bound; nothing they
//! carry can stall a page, a delivery round or shutdown.

use crate::common;

use std::time::{Duration, Instant};

use common::smtp::Smtp;
use common::*;
use serde_json::{Value, json};

fn metric(id: &str, step: u64, train: Value, valid: Value) -> Value {
    json!({"object": "fine_tuning.job.event", "id": id, "created_at": 1_735_480_000,
           "level": "info", "message": "m", "type": "metrics",
           "data": {"step": step, "total_steps": 200, "train_loss": train, "valid_loss": valid}})
}

fn listen(setup: &Setup) -> u16 {
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
    });
    port
}

/// Waits for the daemon to exit, with a deadline; its exit status.
async fn exits_within(
    daemon: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the daemon did not exit within {limit:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_above_2_pow_53_gives_the_job_page_at_once() {
    let api = Api::start(vec![job("ftjob-big", "running", json!({}))]).await;
    for (i, step) in [100_000_000_000_000_000u64, 100_000_000_000_000_001]
        .into_iter()
        .enumerate()
    {
        api.add_item(
            "ftjob-big",
            "events",
            metric(
                &format!("e{i}"),
                step,
                json!(1.5 - i as f64 * 0.1),
                json!(1.7),
            ),
        );
    }
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let port = listen(&setup);
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the first poll")
        .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let page = eventually(
        "the job page with its chart",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                let r = client
                    .get(format!("http://127.0.0.1:{port}/jobs/prod/ftjob-big"))
                    .send()
                    .await
                    .expect("the job page answers (an axis loop would never end)");
                let html = r.text().await.unwrap();
                html.contains("<svg class=\"chart\"").then_some(html)
            }
        },
    )
    .await;
    assert!(
        page.contains("100000000000000000"),
        "the step is shown: {page}"
    );
    let health = client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    signal(&daemon, "TERM");
    assert!(
        exits_within(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loss_of_1e308_leaves_the_chart_out_and_every_alert_and_shutdown_goes_on() {
    let jobs: Vec<Value> = (0..4)
        .map(|i| job(&format!("ftjob-{i}"), "running", json!({})))
        .collect();
    let api = Api::start(jobs).await;
    api.add_item(
        "ftjob-0",
        "events",
        metric("h1", 10, json!(1.7e308), json!(-1e308)),
    );
    api.add_item(
        "ftjob-0",
        "events",
        metric("h2", 20, json!(1e308), json!(1.7e308)),
    );
    for i in 1..4 {
        api.add_item(
            &format!("ftjob-{i}"),
            "events",
            metric(&format!("ok{i}"), 10, json!(0.5), json!(0.6)),
        );
    }
    let smtp = Smtp::start(None);
    let setup = Setup::new(
        &api,
        "http://127.0.0.1:9/hook",
        &format!(
            r#"
[[notifier]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {}
tls = "none"
from = "tunewatch <tunewatch@example.com>"
to = ["ml-team@example.com"]
retry_initial = "100ms"
retry_max = "400ms"

[[route]]
events = ["fine_tuning.job.succeeded"]
notifiers = ["mail"]
"#,
            smtp.addr.port()
        ),
    );
    assert!(setup.command(&["once"]).status().unwrap().success());
    for i in 0..4 {
        api.update(
            &format!("ftjob-{i}"),
            json!({"status": "succeeded", "fine_tuned_model": format!("ft:m:{i}")}),
        );
    }
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("four e-mails", Duration::from_secs(30), || {
        smtp.accepted().len() >= 4
    })
    .await;
    let mails: Vec<String> = smtp
        .accepted()
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let huge = mails
        .iter()
        .find(|m| m.contains("ftjob-0"))
        .expect("the alert with the huge loss went out");
    assert!(
        !huge.contains("image/png"),
        "a chart of nothing drawable is left out"
    );
    assert_eq!(
        mails.iter().filter(|m| m.contains("image/png")).count(),
        3,
        "the others carry their charts"
    );
    signal(&daemon, "TERM");
    assert!(
        exits_within(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    let png = setup.dir.path().join("loss.png");
    let out = setup
        .command(&["metrics", "ftjob-0", "--png", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "no finite loss: no chart, said plainly"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no chart for job ftjob-0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
