//! Hostile input at every boundary (DESIGN.md, "Hostile input"): each test plays one attack or
//! one absurd answer through the real binary against loopback stand-ins, and checks that
//! tunewatch neither crashes, nor loops hot, nor loses or forges an alert, nor leaks a secret.

use crate::common;

use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn once(setup: &Setup) -> Output {
    setup.command(&["once"]).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn page(jobs: Vec<Value>, has_more: bool) -> String {
    json!({"object": "list", "data": jobs, "has_more": has_more}).to_string()
}

fn answer(status: u16, body: String, headers: Vec<(&'static str, String)>) -> Scripted {
    Scripted {
        status,
        content_type: "application/json",
        body,
        headers,
        ..Scripted::default()
    }
}

/// Sets `daemon.listen` to a free loopback port and returns the port.
fn listen_on_a_free_port(setup: &Setup) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
    });
    port
}

// ---- crashes and hot loops ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_retry_after_on_any_api_answer_is_clamped_not_a_panic() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let jobs = page(vec![job("ftjob-a", "running", json!({}))], false);
    // On a 200 (which used to panic while reading the header) and on a 429 (retried after the
    // clamped delay, at least a second).
    api.script(answer(
        200,
        jobs.clone(),
        vec![("retry-after", "1e20".into())],
    ));
    let o = once(&setup);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    api.script(answer(429, "{}".into(), vec![("retry-after", "0".into())]));
    let o = once(&setup);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("delay_ms=1000"),
        "retry-after: 0 waits 1 s: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn durations_outside_their_range_are_refused_by_check_and_run() {
    let api = Api::start(vec![]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    for (from, to) in [
        (
            "poll_interval = \"200ms\"",
            "poll_interval = \"584000000000y\"",
        ),
        ("give_up_after = \"1h\"", "give_up_after = \"300000000y\""),
        ("retry_initial = \"100ms\"", "retry_initial = \"0s\""),
    ] {
        setup.edit(|t| t.replace(from, to));
        for cmd in ["check", "once"] {
            let o = setup.command(&[cmd]).output().unwrap();
            let (_, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} with {to}: {err}");
            assert!(
                err.contains("is outside its range") && err.contains("line "),
                "{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        setup.edit(|t| t.replace(to, from));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_asking_for_no_delay_or_an_absurd_one_is_not_hammered() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    assert!(once(&setup).status.success(), "baseline");
    api.update("ftjob-a", json!({"status": "succeeded"}));
    // `once` used to loop for ever on retry-after: 0 (the row was due again at once).
    hook.answer(&[Answer::With(503, "retry-after", "0")]);
    let o = once(&setup);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(hook.received().len(), 1, "one attempt per `once`");

    // A running daemon against a receiver that always asks for 0 s or 1e20 s: attempts are at
    // least a second apart (and recorded, so the row is not due again at once).
    hook.answer(&[
        Answer::With(503, "retry-after", "0"),
        Answer::With(503, "retry-after", "1e20"),
        Answer::With(503, "retry-after", "0"),
    ]);
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("4 attempts", Duration::from_secs(20), || {
        hook.received().len() >= 4
    })
    .await;
    signal(&daemon, "TERM");
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    let got = hook.received();
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "attempts {gap:?} apart: {:?}",
            got.iter().map(|r| r.answered).collect::<Vec<_>>()
        );
    }
    assert!(
        got.iter().all(|r| r.webhook_id == got[0].webhook_id),
        "one event"
    );
    assert!(!setup.log("run.log").contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_wins_over_a_reload_storm_and_reloads_do_not_restart_deliveries() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace(
            "give_up_after = \"1h\"",
            "give_up_after = \"1h\"\ntimeout = \"20s\"",
        )
    });
    assert!(once(&setup).status.success(), "baseline");
    api.update("ftjob-a", json!({"status": "succeeded"}));
    hook.answer(&[Answer::Slow(200, Duration::from_secs(6))]);
    let mut daemon = setup.spawn_run("run.log", &[]);
    wait_until("the delivery to start", Duration::from_secs(10), || {
        !hook.received().is_empty()
    })
    .await;
    for i in 0..10 {
        setup.edit(|t| format!("{t}\n# reload {i}\n"));
        signal(&daemon, "HUP");
    }
    setup
        .wait_for_log("run.log", "config reloaded", "a reload")
        .await;
    let sent = std::time::Instant::now();
    signal(&daemon, "TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(10)).await;
    assert!(status.success(), "{}", setup.log("run.log"));
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert_eq!(
        hook.received().len(),
        1,
        "a reload must not start the delivery in flight again"
    );
}

// ---- silent loss -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_redirecting_receiver_is_a_failed_attempt_naming_the_location() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let elsewhere = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    assert!(once(&setup).status.success(), "baseline");
    api.update("ftjob-a", json!({"status": "succeeded"}));
    let location: &'static str = Box::leak(elsewhere.url().into_boxed_str());
    for (n, code) in [301, 302, 303, 307, 308].into_iter().enumerate() {
        hook.answer(&[Answer::With(code, "location", location)]);
        // `once` attempts only what is due; the retry falls due within retry_max (400 ms).
        eventually("the next attempt", Duration::from_secs(10), || async {
            let o = once(&setup);
            assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
            (hook.received().len() > n).then_some(())
        })
        .await;
        assert!(elsewhere.received().is_empty(), "{code} was followed");
        let out = setup.command(&["outbox"]).output().unwrap();
        let (out, _) = text(&out);
        assert!(
            out.contains("failing") && out.contains(&format!("HTTP {code}")),
            "{out}"
        );
        assert!(out.contains("a redirect to http://127.0.0.1"), "{out}");
    }
    let delivered = hook.delivered();
    assert!(delivered.is_empty(), "nothing recorded as delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_redirects_to_another_origin_are_not_followed_with_the_org_headers() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let other = Api::start(vec![job("ftjob-evil", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| {
        t.replace(
            "max_retries = 2",
            "max_retries = 0\norganization = \"org-secret-name\"",
        )
    });
    api.script(answer(
        302,
        String::new(),
        vec![("location", format!("{}/fine_tuning/jobs", other.base()))],
    ));
    let o = once(&setup);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("redirect to http://127.0.0.1") && err.contains("not followed"),
        "{err}"
    );
    assert!(other.requests().is_empty(), "another origin was asked");
}

// ---- unbounded ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_page_fails_the_poll_and_oversized_errors_are_cut() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("max_retries = 2", "max_retries = 0"));
    assert!(once(&setup).status.success(), "baseline");
    let huge = format!(
        "{{\"object\":\"list\",\"has_more\":false,\"data\":[{{\"id\":\"a\",\"status\":\"x\",\"pad\":\"{}\"}}]}}",
        "x".repeat(33 << 20)
    );
    api.script(answer(200, huge, vec![]));
    let o = once(&setup);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("larger than 32 MiB"),
        "{}",
        &err[..err.len().min(2000)]
    );

    let message = "E".repeat(5 << 20);
    api.script(answer(
        500,
        json!({"error": {"message": message}}).to_string(),
        vec![],
    ));
    let o = once(&setup);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.len() + err.len() < 20_000,
        "{} bytes of output",
        out.len() + err.len()
    );
    let status = setup.command(&["status"]).output().unwrap();
    assert!(
        status.stdout.len() < 5_000,
        "{} bytes of status",
        status.stdout.len()
    );
    let db = std::fs::metadata(setup.db()).unwrap().len()
        + std::fs::metadata(setup.db().with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    assert!(db < 4 << 20, "the 5 MiB message was stored: {db} bytes");

    // A receiver's 5 MiB error body: the stored error is an excerpt.
    api.update("ftjob-a", json!({"status": "succeeded"}));
    hook.answer(&[Answer::Big(500, 5 << 20)]);
    let o = once(&setup);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(hook.received().len(), 1);
    let outbox = setup.command(&["outbox"]).output().unwrap();
    assert!(
        outbox.stdout.len() < 2_000,
        "{}",
        String::from_utf8_lossy(&outbox.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_cycle_and_endless_pages_fail_the_poll_clearly() {
    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("max_retries = 2", "max_retries = 0\nmax_pages = 5"));
    let j = |id: &str| job(id, "running", json!({}));
    for p in [
        page(vec![j("ftjob-a")], true),
        page(vec![j("ftjob-b")], true),
        page(vec![j("ftjob-a")], true),
    ] {
        api.script(answer(200, p, vec![]));
    }
    let o = once(&setup);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cursor ftjob-a a second time"), "{err}");
    assert_eq!(api.requests().len(), 3);

    for n in 0..6 {
        api.script(answer(
            200,
            page(vec![j(&format!("ftjob-new{n}"))], true),
            vec![],
        ));
    }
    let o = once(&setup);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("after 5 pages (max_pages)"), "{err}");
    assert_eq!(api.requests().len(), 3 + 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deeply_nested_job_does_not_fail_its_page() {
    let mut deep = json!("bottom");
    for _ in 0..124 {
        deep = json!({ "n": deep });
    }
    let api = Api::start(vec![
        job("ftjob-deep", "running", json!({ "metadata": deep })),
        job("ftjob-b", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let o = once(&setup);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let out = setup.command(&["status"]).output().unwrap();
    let (out, _) = text(&out);
    assert!(
        out.contains("ftjob-b") && out.contains("ftjob-deep"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn distinct_api_statuses_do_not_grow_the_metric_series() {
    let jobs: Vec<Value> = (0..40)
        .map(|n| {
            job(
                &format!("ftjob-{n}"),
                &format!("weird_status_{n}"),
                json!({}),
            )
        })
        .collect();
    let api = Api::start(jobs).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let port = listen_on_a_free_port(&setup);
    let mut daemon = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline")
        .await;
    for n in 0..40 {
        api.update(
            &format!("ftjob-{n}"),
            json!({"status": format!("other_status_{n}")}),
        );
    }
    setup
        .wait_for_log("run.log", "events=40", "the transitions")
        .await;
    let body = eventually("/metrics", Duration::from_secs(10), || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?;
        r.text().await.ok()
    })
    .await;
    signal(&daemon, "TERM");
    wait_exit(&mut daemon, Duration::from_secs(10)).await;
    assert!(
        !body.contains("weird_status") && !body.contains("other_status"),
        "{body}"
    );
    assert!(body.contains("status=\"other\""), "{body}");
    assert!(body.contains("type=\"fine_tuning.job.other\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_to_the_listener_cannot_starve_deliveries() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let port = listen_on_a_free_port(&setup);
    // A low descriptor limit, so that accepting every idle client would exhaust it.
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "ulimit -n 160 && exec {} --config {} run",
            env!("CARGO_BIN_EXE_tunewatch"),
            setup.config.display()
        ))
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::fs::File::create(setup.dir.path().join("run.log")).unwrap());
    let mut daemon = c.spawn().unwrap();
    setup
        .wait_for_log("run.log", "baseline=true", "the baseline")
        .await;
    // Concurrently, each with a deadline: connections past the kernel's queue are not answered.
    let connects = (0..300).map(|_| {
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
    });
    let idle: Vec<_> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .filter_map(|r| r.ok().and_then(Result::ok))
        .collect();
    assert!(
        idle.len() > 160,
        "only {} idle clients connected",
        idle.len()
    );
    api.update("ftjob-a", json!({"status": "succeeded"}));
    wait_until(
        "the alert despite 300 idle clients",
        Duration::from_secs(20),
        || {
            hook.delivered_types()
                .contains(&"fine_tuning.job.succeeded".to_string())
        },
    )
    .await;
    signal(&daemon, "TERM");
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    drop(idle);
}

// ---- secrets and injection ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_urls_and_echoed_keys_never_leave_the_process() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let slack = format!("http://{}/hook/T000/B000/XXXXSLACKTOKEN", hook.addr);
    let setup = Setup::new(&api, &hook.url(), "");
    let with_userinfo = api
        .base()
        .replace("http://", "http://apiuser:pa55w0rd-in-url@");
    setup.edit(|t| {
        t.replace(&api.base(), &with_userinfo)
            .replace("max_retries = 2", "max_retries = 0\nfailing_after = 1")
            .replace(
                "events = [\"fine_tuning.job.*\"]",
                "events = [\"fine_tuning.job.*\", \"tunewatch.source.*\"]",
            )
            .replace(
                &format!("url = \"{}\"", hook.url()),
                &format!("url = \"{slack}\"\nformat = \"slack\""),
            )
    });
    let check = setup.command(&["check"]).output().unwrap();
    assert!(check.status.success(), "{:?}", text(&check));
    assert!(once(&setup).status.success(), "baseline");
    api.fail_next(
        401,
        "application/json",
        &json!({"error": {"message": format!("Incorrect API key provided: {API_KEY}. Find yours at {with_userinfo}")}}).to_string(),
    );
    let failed = once(&setup);
    let mut everything = format!(
        "{:?}{:?}{:?}{:?}",
        text(&check),
        text(&failed),
        check.status,
        failed.status
    );
    for args in [
        &["status"][..],
        &["outbox", "--all"],
        &["history", "ftjob-a"],
        &["notify-test", "hook"],
    ] {
        let o = setup.command(args).output().unwrap();
        everything.push_str(&format!("{:?}", text(&o)));
    }
    for r in hook.received() {
        everything.push_str(&String::from_utf8_lossy(&r.raw_body));
    }
    let db = std::fs::read(setup.db()).unwrap();
    let wal = std::fs::read(setup.db().with_extension("db-wal")).unwrap_or_default();
    everything.push_str(&String::from_utf8_lossy(&db));
    everything.push_str(&String::from_utf8_lossy(&wal));
    assert!(
        hook.received()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.raw_body).contains("cannot poll source")),
        "the failing alert was sent"
    );
    for secret in ["pa55w0rd-in-url", "XXXXSLACKTOKEN", API_KEY] {
        if let Some(at) = everything.find(secret) {
            let from = everything[..at]
                .char_indices()
                .rev()
                .nth(300)
                .map_or(0, |(i, _)| i);
            panic!("{secret} leaked: …{}", &everything[from..at + secret.len()]);
        }
    }
    assert!(
        everything.contains("http://***@127.0.0.1"),
        "shown redacted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_urls_can_come_from_secrets_and_a_pasted_key_is_not_echoed() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    std::fs::write(
        setup.dir.path().join("hook.url"),
        format!("{}\n# the team's hook\n", hook.url()),
    )
    .unwrap();
    setup.edit(|t| {
        t.replace(
            &format!("url = \"{}\"", hook.url()),
            "url_file = \"hook.url\"",
        )
    });
    assert!(once(&setup).status.success(), "baseline");
    api.update("ftjob-a", json!({"status": "failed"}));
    assert!(once(&setup).status.success());
    assert_eq!(hook.delivered_types(), ["fine_tuning.job.failed"]);

    setup.edit(|t| {
        t.replace(
            "api_key_file = \"api.key\"",
            &format!("api_key_env = \"{API_KEY}\""),
        )
    });
    let o = setup.command(&["check"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("must name an environment variable"), "{err}");
    assert!(!(out + &err).contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_that_are_not_job_ids_and_control_characters_are_inert() {
    let api = Api::start(vec![
        job("..", "running", json!({})),
        job(".", "running", json!({})),
        job("ftjob-x\nERROR forged line", "running", json!({})),
        job(
            "ftjob-ok",
            "running",
            json!({"model": "gpt\u{1b}[31m-red\u{7}"}),
        ),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 10"));
    assert!(once(&setup).status.success());
    let o = once(&setup);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("is not a job id"), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("ERROR forged")), "{err}");
    // Only the valid job is ever asked for by id (its events, for training insight).
    assert!(
        api.requests()
            .iter()
            .filter(|r| r.starts_with("/v1/fine_tuning/jobs/"))
            .all(|r| r.starts_with("/v1/fine_tuning/jobs/ftjob-ok/events")),
        "{:?}",
        api.requests()
    );
    let status = setup.command(&["status"]).output().unwrap();
    let out = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("gpt\\u{1b}[31m-red\\u{7}"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_listed_twice_in_a_page_does_not_flip_its_status() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        job("ftjob-a", "failed", json!({})),
        job("ftjob-a", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    setup.edit(|t| t.replace("page_size = 2", "page_size = 10"));
    for _ in 0..3 {
        assert!(once(&setup).status.success());
    }
    assert!(hook.received().is_empty(), "{:?}", hook.delivered_types());
}

// ---- check tells the truth ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn check_and_run_read_secrets_by_one_rule() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    // A key file with a comment line after the key: the first line is the key, for both.
    std::fs::write(
        setup.dir.path().join("api.key"),
        format!("{API_KEY}\n# rotated monthly\n"),
    )
    .unwrap();
    for cmd in ["check", "once"] {
        let o = setup.command(&[cmd]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{cmd}: {:?}", text(&o));
    }
    // A webhook secret that is not base64, and a key with a space: refused by both, exit 2,
    // and `check` never says "valid".
    for (file, content) in [
        ("hook.secret", "whsec_***not base64***"),
        ("api.key", "sk-one two"),
    ] {
        let before = std::fs::read(setup.dir.path().join(file)).unwrap();
        std::fs::write(setup.dir.path().join(file), content).unwrap();
        for cmd in ["check", "once"] {
            let o = setup.command(&[cmd]).output().unwrap();
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} with {file}: {out}{err}");
            assert!(!out.contains(": valid"), "{out}");
            assert!(!(out.clone() + &err).contains(content), "{err}");
        }
        std::fs::write(setup.dir.path().join(file), before).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misspelt_status_in_a_route_is_refused_with_a_suggestion() {
    let api = Api::start(vec![]).await;
    let setup = Setup::new(&api, "http://127.0.0.1:9/hook", "");
    setup.edit(|t| {
        t.replace(
            "events = [\"fine_tuning.job.*\"]",
            "events = [\"fine_tuning.job.succeded\"]",
        )
    });
    let o = setup.command(&["check"]).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("did you mean \"fine_tuning.job.succeeded\"?"),
        "{err}"
    );
    setup.edit(|t| t.replace("fine_tuning.job.succeded", "fine_tuning.job.thaw*"));
    let o = setup.command(&["check"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "a wildcard allows a custom status: {:?}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_is_not_tunewatchs_is_refused_and_left_untouched() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    std::fs::create_dir_all(setup.db().parent().unwrap()).unwrap();
    {
        let c = rusqlite::Connection::open(setup.db()).unwrap();
        c.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
            .unwrap();
    }
    let before = std::fs::read(setup.db()).unwrap();
    for cmd in ["status", "once", "run"] {
        let o = setup.command(&[cmd]).output().unwrap();
        let (_, err) = text(&o);
        assert_ne!(o.status.code(), Some(0), "{cmd}");
        assert!(
            err.contains("not tunewatch's") && err.contains("invoices"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(setup.db()).unwrap(),
        before,
        "the file was changed"
    );
    assert!(
        !setup.db().with_extension("db-wal").exists(),
        "WAL switched on"
    );

    for bad in ["/dev/null", ""] {
        setup.edit(|t| {
            t.replace(
                "state_db = \"state/tunewatch.db\"",
                &format!("state_db = \"{bad}\""),
            )
        });
        let o = setup.command(&["check"]).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("state_db"), "{err}");
        setup.edit(|t| {
            t.replace(
                &format!("state_db = \"{bad}\""),
                "state_db = \"state/tunewatch.db\"",
            )
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_in_an_api_string_reaches_slack_as_text_not_a_link() {
    let api = Api::start(vec![job("ftjob-a", "running", json!({}))]).await;
    let slack = Hook::start().await;
    let setup = Setup::new(
        &api,
        "http://127.0.0.1:9/hook",
        &format!(
            "[[notifier]]\nname = \"slack\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
             retry_initial = \"100ms\"\nretry_max = \"400ms\"\n\n\
             [[route]]\nevents = [\"fine_tuning.job.failed\"]\nnotifiers = [\"slack\"]\n",
            slack.url()
        ),
    );
    assert!(once(&setup).status.success());
    let evil = "<https://evil.example/login|Click to re-authenticate>";
    api.update(
        "ftjob-a",
        json!({"status": "failed", "model": evil,
               "error": {"code": "auth", "message": evil, "param": null}}),
    );
    assert!(once(&setup).status.success());
    let got = slack.delivered();
    assert_eq!(got.len(), 1);
    let body = String::from_utf8_lossy(&got[0].raw_body).into_owned();
    assert!(!body.contains("<https://evil"), "a live link: {body}");
    assert!(
        body.contains("&lt;https://evil.example/login|Click"),
        "{body}"
    );
}
