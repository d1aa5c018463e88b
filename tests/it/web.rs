//! The status page (DESIGN.md, "Status page") through the real binary: `/`, a job page with its
//! timeline, chart and checkpoints, `/api`, the security headers, escaping of hostile API
//! strings, the token rule for a non-loopback address, and a real headless Chromium reading it.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn metrics(id: &str, step: u64, train: f64, valid: f64) -> Value {
    json!({"object": "fine_tuning.job.event", "id": id, "created_at": 1_735_480_000 + step as i64,
           "level": "info", "message": "m", "type": "metrics",
           "data": {"step": step, "total_steps": 100, "train_loss": train, "valid_loss": valid}})
}

/// A database with a running job that has metrics, a succeeded one with checkpoints, and a
/// failed one whose error is markup; then a daemon serving it on `port`.
async fn served() -> (Api, Setup, std::process::Child, u16) {
    let api = Api::start(vec![
        job("ftjob-run", "running", json!({})),
        job("ftjob-ok", "running", json!({})),
        job("ftjob-bad", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
    });
    assert!(setup.command(&["once"]).status().unwrap().success());
    for step in 1..=4u64 {
        api.add_item(
            "ftjob-run",
            "events",
            metrics(
                &format!("e{step}"),
                step * 10,
                2.0 / step as f64,
                2.2 / step as f64,
            ),
        );
        api.add_item(
            "ftjob-ok",
            "events",
            metrics(
                &format!("o{step}"),
                step * 25,
                1.0 / step as f64,
                1.1 / step as f64,
            ),
        );
    }
    for c in fixture("ft_list_checkpoints.json")["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
    {
        api.add_item("ftjob-ok", "checkpoints", c.clone());
    }
    api.update(
        "ftjob-ok",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::ok"}),
    );
    api.update(
        "ftjob-bad",
        json!({"status": "failed",
        "error": {"code": "invalid_file", "message": HOSTILE, "param": null}}),
    );
    assert!(setup.command(&["once"]).status().unwrap().success());
    let daemon = setup.spawn_run("run.log", &[]);
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_until("the listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let _ = url;
    (api, setup, daemon, port)
}

async fn get(port: u16, path: &str) -> reqwest::Response {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_lists_jobs_and_a_job_page_has_its_chart_timeline_and_checkpoints() {
    let (_api, _setup, mut daemon, port) = served().await;
    let r = get(port, "/").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    for needle in [
        "ftjob-run",
        "ftjob-ok",
        "ftjob-bad",
        "ft:gpt-4o-mini:acme::ok",
        "class=\"s succeeded\"",
        "class=\"bar\"",
        "40 %",
        "http-equiv=\"refresh\"",
    ] {
        assert!(html.contains(needle), "{needle} not in the page:\n{html}");
    }
    assert!(!html.contains("<script"), "no script on the page");
    let r = get(port, "/jobs/prod/ftjob-ok").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    for needle in [
        "<svg class=\"chart\"",
        "class=\"train\"",
        "ckpt-step-2000",
        "0.1340",
        "event fine_tuning.job.succeeded",
        "status: &quot;running&quot; → &quot;succeeded&quot;",
    ] {
        assert!(
            html.contains(needle),
            "{needle} not in the job page:\n{html}"
        );
    }
    let bad = get(port, "/jobs/prod/ftjob-bad")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !bad.contains(HOSTILE) && !bad.contains("<img"),
        "the error is text, not markup:\n{bad}"
    );
    assert!(
        bad.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{bad}"
    );
    assert_eq!(get(port, "/jobs/prod/ftjob-nope").await.status(), 404);
    let api: Value = get(port, "/api/jobs").await.json().await.unwrap();
    let run = api["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "ftjob-run")
        .unwrap();
    assert_eq!(run["progress"], 0.4);
    let one: Value = get(port, "/api/jobs/prod/ftjob-ok")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["insight"]["best_checkpoint"]["step"], 2000);
    assert_eq!(one["checkpoints"].as_array().unwrap().len(), 2);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_shows_the_jobs_and_the_chart_and_the_hostile_error_as_text() {
    let Some(chromium) = require_program(
        &["chromium", "chromium-browser"],
        "the status page's browser test",
        "apt-get install chromium; .ci/run installs it",
    ) else {
        return;
    };
    let (_api, setup, mut daemon, port) = served().await;
    let browse = |path: &str, extra: &[String]| {
        let profile = tempfile::tempdir().unwrap();
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap()
    };
    let dom = String::from_utf8_lossy(&browse("/", &["--dump-dom".into()]).stdout).into_owned();
    assert!(
        dom.contains("ftjob-run") && dom.contains("ftjob-ok"),
        "{dom}"
    );
    let dom =
        String::from_utf8_lossy(&browse("/jobs/prod/ftjob-ok", &["--dump-dom".into()]).stdout)
            .into_owned();
    assert!(
        dom.contains("<svg class=\"chart\"") && dom.contains("<polyline class=\"train\""),
        "{dom}"
    );
    let dom =
        String::from_utf8_lossy(&browse("/jobs/prod/ftjob-bad", &["--dump-dom".into()]).stdout)
            .into_owned();
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{dom}"
    );
    assert!(
        !dom.contains("<img"),
        "no element came from the API string: {dom}"
    );
    let shot = setup.dir.path().join("page.png");
    let o = browse(
        "/",
        &[
            "--window-size=1280,900".into(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(
        std::fs::read(&shot).is_ok_and(|b| b.starts_with(b"\x89PNG")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_listener_needs_a_token_and_healthz_stays_open() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"0.0.0.0:{port}\""),
        )
    });
    let o = setup.command(&["check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("is not a loopback address, so the status page needs a token")
    );
    std::fs::write(setup.dir.path().join("ui.token"), "s3cret-token").unwrap();
    setup.edit(|t| t.replace("[daemon]", "[daemon]\nui_token_file = \"ui.token\""));
    assert!(setup.command(&["once"]).status().unwrap().success());
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert_eq!(get(port, "/").await.status(), 401);
    assert_eq!(get(port, "/api/jobs").await.status(), 401);
    assert_eq!(get(port, "/healthz").await.status(), 200);
    assert_eq!(get(port, "/metrics").await.status(), 200);
    let c = reqwest::Client::new();
    let r = c
        .get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The token in the address sets the cookie and sends the browser to the same page without
    // it, so it leaves the address bar, the history and the refreshes.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!(
            "http://127.0.0.1:{port}/?page=2&token=s3cret-token"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?page=2");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let r = no_redirects
        .get(format!("http://127.0.0.1:{port}/?token=s3cret-token"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure"),
        "behind an HTTPS proxy the cookie is Secure"
    );
    let r = c
        .get(format!("http://127.0.0.1:{port}/api/jobs"))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the cookie works afterwards");
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
    assert!(
        !setup.log("run.log").contains("s3cret-token"),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_names_each_dead_delivery_and_the_api_gives_the_timeline_as_data() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    hook.answer(&[Answer::Status(400)]);
    let setup = Setup::new(&api, &hook.url(), "");
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
    });
    assert!(setup.command(&["once"]).status().unwrap().success());
    api.update("ftjob-a", json!({"status": "failed"}));
    assert!(setup.command(&["once"]).status().unwrap().success());
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let html = get(port, "/").await.text().await.unwrap();
    for needle in [
        "1 dead",
        "fine_tuning.job.failed",
        "ftjob-a",
        "answered HTTP 400",
    ] {
        assert!(html.contains(needle), "{needle} not on the page:\n{html}");
    }
    let one: Value = get(port, "/api/jobs/prod/ftjob-a")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        one.get("timeline").is_none(),
        "prose stays on the page: {one}"
    );
    let snapshots = one["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[1]["status"], "failed");
    assert!(
        snapshots[1]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({"field": "status", "from": "running", "to": "failed"})),
        "{one}"
    );
    let events = one["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "fine_tuning.job.failed");
    assert_eq!(events[0]["deliveries"][0]["notifier"], "hook");
    assert_eq!(events[0]["deliveries"][0]["state"], "dead");
    let overview: Value = get(port, "/api/jobs").await.json().await.unwrap();
    assert_eq!(overview["problems"][0]["state"], "dead");
    assert!(
        overview["problems"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("400"),
        "{overview}"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_list_comes_in_pages_of_fifty() {
    let jobs: Vec<Value> = (0..120)
        .map(|i| job(&format!("ftjob-{i:03}"), "succeeded", json!({})))
        .collect();
    let api = Api::start(jobs).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 100"));
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
    });
    assert!(setup.command(&["once"]).status().unwrap().success());
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let first = get(port, "/").await.text().await.unwrap();
    assert_eq!(first.matches("href=\"/jobs/prod/").count(), 50);
    assert!(first.contains("page 1 of 3 (120 jobs)") && first.contains("href=\"/?page=2\""));
    let last = get(port, "/?page=3").await.text().await.unwrap();
    assert_eq!(last.matches("href=\"/jobs/prod/").count(), 20);
    let api_page: Value = get(port, "/api/jobs?page=2").await.json().await.unwrap();
    assert_eq!(api_page["jobs"].as_array().unwrap().len(), 50);
    assert_eq!(
        (api_page["page"].clone(), api_page["total_jobs"].clone()),
        (json!(2), json!(120))
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_without_a_token_answers_only_to_loopback_host_names_and_ui_hosts() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    let port = free_port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\nui_hosts = [\"tw.internal\"]"),
        )
    });
    assert!(setup.command(&["once"]).status().unwrap().success());
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let c = reqwest::Client::new();
    let with_host = |host: &'static str, path: &'static str| {
        c.get(format!("http://127.0.0.1:{port}{path}"))
            .header("host", host)
            .send()
    };
    for host in [
        "attacker.example",
        "attacker.example:80",
        "127.0.0.1.nip.io",
    ] {
        for path in ["/", "/api/jobs", "/jobs/prod/ftjob-a"] {
            let r = with_host(host, path).await.unwrap();
            assert_eq!(r.status(), 421, "{host}{path}: a rebound name is refused");
        }
    }
    for host in [
        "127.0.0.1",
        "localhost:1234",
        "[::1]:9",
        "tw.internal",
        "TW.internal:443",
    ] {
        assert_eq!(with_host(host, "/").await.unwrap().status(), 200, "{host}");
    }
    assert_eq!(
        with_host("attacker.example", "/healthz")
            .await
            .unwrap()
            .status(),
        200,
        "/healthz and /metrics stay open"
    );
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success());
}
