//! Fewer, better alerts (DESIGN.md, "Fewer, better alerts"): a sweep as one Slack message and one
//! e-mail while the JSON webhook still gets every signed event; a group across kill -9 sent once;
//! quiet hours held across a restart and released at the window's end, with a bypass sent at once
//! (an injected clock); a digest after downtime sent once; reminders that stop when the condition
//! clears; silences added, listed, expired and never replayed; a notifier's failure and recovery
//! told through another; `check` refusing what cannot hold.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::smtp::Smtp;
use common::*;
use serde_json::json;
use tunewatch::Daemon;
use tunewatch::clock::Clock;

fn sweep(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| job(&format!("ftjob-sweep{i:02}"), "running", json!({})))
        .collect()
}

/// A Slack-format notifier to `chat` and an e-mail one to `smtp`, routed with `route_extra`.
fn human_channels(chat: &Hook, smtp: &Smtp, route_extra: &str) -> String {
    format!(
        r#"
[[notifier]]
name = "chat"
kind = "webhook"
format = "slack"
url = "{chat}"
retry_initial = "100ms"
retry_max = "400ms"

[[notifier]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
from = "tunewatch <tunewatch@example.com>"
to = ["ml-team@example.com"]
tls = "none"
retry_initial = "100ms"
retry_max = "400ms"

[[route]]
events = ["fine_tuning.job.*"]
notifiers = ["chat", "mail"]
{route_extra}
"#,
        chat = chat.url(),
        port = smtp.addr.port()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_is_one_slack_message_and_one_mail_while_the_json_webhook_gets_every_event() {
    let api = Api::start(sweep(20)).await;
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let smtp = Smtp::start(None);
    let setup = Setup::new(
        &api,
        &hook.url(),
        &human_channels(&chat, &smtp, "group_wait = \"2s\""),
    );
    let mut d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    for i in 0..20 {
        api.update(
            &format!("ftjob-sweep{i:02}"),
            json!({"status": "succeeded", "fine_tuned_model": format!("ft:m:{i}")}),
        );
    }
    wait_until(
        "20 signed events at the JSON webhook",
        Duration::from_secs(20),
        || hook.delivered().len() >= 20,
    )
    .await;
    assert!(hook.delivered().iter().all(|r| r.signature_ok));
    wait_until("the group message", Duration::from_secs(20), || {
        !chat.delivered().is_empty() && !smtp.accepted().is_empty()
    })
    .await;
    // A few more polls: nothing else arrives.
    setup.wait_for_more_polls("run.log", 5).await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(chat.delivered().len(), 1, "one Slack message");
    assert_eq!(smtp.accepted().len(), 1, "one e-mail");
    let slack = &chat.delivered()[0];
    assert_eq!(slack.body["text"], "20 fine-tuning jobs succeeded on prod");
    assert!(slack.webhook_id.starts_with("grp_"), "{}", slack.webhook_id);
    let blocks = slack.body["blocks"].to_string();
    assert!(blocks.contains("ftjob-sweep00: succeeded"), "{blocks}");
    let mail = String::from_utf8_lossy(&smtp.accepted()[0]).into_owned();
    assert!(
        mail.contains("Subject: 20 fine-tuning jobs succeeded on prod"),
        "{mail}"
    );
    assert!(mail.contains("Message-ID: <grp_"), "{mail}");
    assert_eq!(hook.delivered().len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_group_survives_kill_9_and_is_sent_once() {
    let api = Api::start(sweep(5)).await;
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let smtp = Smtp::start(None);
    let setup = Setup::new(
        &api,
        &hook.url(),
        &human_channels(&chat, &smtp, "group_wait = \"4s\""),
    );
    let mut d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    for i in 0..5 {
        api.update(
            &format!("ftjob-sweep{i:02}"),
            json!({"status": "succeeded"}),
        );
    }
    let store = setup.store();
    wait_until(
        "the rows waiting in their groups",
        Duration::from_secs(20),
        || {
            store
                .count(tunewatch::store::Table::HeldDeliveries)
                .unwrap()
                >= 10
        },
    )
    .await;
    d.kill().unwrap();
    d.wait().unwrap();
    assert!(
        chat.delivered().is_empty(),
        "killed before the group was due"
    );
    let mut d = setup.spawn_run("run2.log", &[]);
    wait_until(
        "the group after the restart",
        Duration::from_secs(20),
        || !chat.delivered().is_empty() && !smtp.accepted().is_empty(),
    )
    .await;
    setup.wait_for_more_polls("run2.log", 5).await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(chat.delivered().len(), 1);
    assert_eq!(smtp.accepted().len(), 1);
    assert_eq!(
        chat.delivered()[0].body["text"],
        "5 fine-tuning jobs succeeded on prod"
    );
}

/// 2026-12-07 22:30 UTC: 23:30 in Berlin, inside "nights" (22:00–08:00).
const NIGHT: i64 = 1_796_682_600;

struct Clocked {
    api: Api,
    hook: Hook,
    chat: Hook,
    setup: Setup,
    at: Arc<AtomicI64>,
}

impl Clocked {
    async fn start(jobs: Vec<serde_json::Value>, extra: &str, t0: i64) -> Clocked {
        let api = Api::start(jobs).await;
        let (hook, chat) = (Hook::start().await, Hook::start().await);
        let extra = format!(
            "\n[[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
             retry_initial = \"100ms\"\n{extra}",
            chat.url()
        );
        let setup = Setup::new(&api, &hook.url(), &extra);
        Clocked {
            api,
            hook,
            chat,
            setup,
            at: Arc::new(AtomicI64::new(t0 * 1000)),
        }
    }

    fn daemon(&self) -> Daemon {
        let read = self.at.clone();
        Daemon::with_clock(
            self.setup.load(),
            Clock::from_fn(move || read.load(Ordering::SeqCst)),
        )
        .unwrap()
    }

    fn advance(&self, seconds: i64) {
        self.at.fetch_add(seconds * 1000, Ordering::SeqCst);
    }

    fn set(&self, t: i64) {
        self.at.store(t * 1000, Ordering::SeqCst);
    }
}

const NIGHTS: &str = r#"
[[quiet_hours]]
name = "nights"
time_zone = "Europe/Berlin"
from = "22:00"
to = "08:00"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_hold_across_a_restart_release_at_the_end_and_let_a_bypass_through() {
    let extra = format!(
        "{NIGHTS}\n[[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"chat\"]\n\
         quiet_hours = [\"nights\"]\nquiet_bypass = [\"fine_tuning.job.failed\"]\n"
    );
    let w = Clocked::start(
        vec![
            job("ftjob-ok", "running", json!({})),
            job("ftjob-bad", "running", json!({})),
        ],
        &extra,
        NIGHT,
    )
    .await;
    let d = w.daemon();
    d.once().await.unwrap();
    w.api.update("ftjob-ok", json!({"status": "succeeded"}));
    w.api.update("ftjob-bad", json!({"status": "failed"}));
    w.advance(60);
    d.once().await.unwrap();
    // The failure bypasses the quiet hours; the success is held. The JSON route is not quiet.
    let texts: Vec<String> = w
        .chat
        .delivered()
        .iter()
        .map(|r| r.body["text"].to_string())
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].contains("ftjob-bad") && texts[0].contains("failed"),
        "{texts:?}"
    );
    assert_eq!(w.hook.delivered().len(), 2);
    let outbox = w.setup.command(&["outbox"]).output().unwrap();
    let outbox = String::from_utf8_lossy(&outbox.stdout).into_owned();
    assert!(outbox.contains("grouped grp_"), "{outbox}");
    assert!(outbox.contains("until 08:00 Europe/Berlin"), "{outbox}");
    // A restart in the night: still held.
    drop(d);
    w.set(NIGHT + 8 * 3600 + 29 * 60); // 07:59 Berlin
    let d = w.daemon();
    d.once().await.unwrap();
    assert_eq!(w.chat.delivered().len(), 1);
    // 08:00 Berlin: released as one "while you were away".
    w.advance(60);
    d.once().await.unwrap();
    let last = w.chat.delivered().last().unwrap().body.clone();
    assert_eq!(w.chat.delivered().len(), 2);
    assert_eq!(
        last["text"],
        "While you were away (nights): 1 fine-tuning job succeeded on prod"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_after_downtime_is_sent_once_covering_the_gap() {
    let extra = "\n[[digest]]\nname = \"daily\"\nnotifiers = [\"chat\"]\nat = \"09:00\"\n\
                 time_zone = \"Europe/Berlin\"\n";
    // Monday 7 December 2026, 10:00 Berlin.
    let t0 = 1_796_634_000;
    let w = Clocked::start(vec![job("ftjob-d", "running", json!({}))], extra, t0).await;
    let d = w.daemon();
    d.once().await.unwrap();
    assert!(
        w.chat.delivered().is_empty(),
        "a first start records the due time"
    );
    w.api.update("ftjob-d", json!({"status": "succeeded"}));
    w.advance(60);
    d.once().await.unwrap();
    drop(d);
    // Down until Wednesday 12:00: Tuesday's and Wednesday's 09:00 were missed.
    w.set(t0 + 2 * 86_400 + 2 * 3600);
    let d = w.daemon();
    d.once().await.unwrap();
    d.once().await.unwrap();
    let digests: Vec<serde_json::Value> =
        w.chat.delivered().iter().map(|r| r.body.clone()).collect();
    assert_eq!(digests.len(), 1, "one late digest: {digests:?}");
    let text = digests[0]["blocks"].to_string();
    assert!(text.contains("Digest daily"), "{text}");
    assert!(text.contains("1 succeeded"), "{text}");
    // The next day: nothing happened, and an empty digest is skipped (skip_empty).
    w.advance(86_400);
    d.once().await.unwrap();
    assert_eq!(w.chat.delivered().len(), 1);
    // A job starts running: the day after's digest says so.
    w.api.add(job("ftjob-e", "running", json!({})));
    d.once().await.unwrap();
    w.advance(86_400);
    d.once().await.unwrap();
    assert_eq!(w.chat.delivered().len(), 2);
    let text = w.chat.delivered()[1].body["blocks"].to_string();
    // A day in one status is past the default stall_after: it is counted as stalled.
    assert!(text.contains("1 stalled"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reminders_come_every_interval_once_each_and_stop_when_the_condition_clears() {
    let extra = "\n[[route]]\nevents = [\"fine_tuning.job.stalled\"]\nnotifiers = [\"chat\"]\n\
                 remind_every = \"15m\"\n";
    let t0 = NIGHT;
    let w = Clocked::start(vec![job("ftjob-stuck", "running", json!({}))], extra, t0).await;
    w.setup
        .edit(|t| t.replace("page_size = 2", "page_size = 2\nstall_after = \"1h\""));
    let d = w.daemon();
    d.once().await.unwrap();
    w.advance(3600 + 60);
    d.once().await.unwrap();
    let count = |w: &Clocked| w.chat.delivered().len();
    assert_eq!(count(&w), 1, "the stall");
    w.advance(15 * 60);
    d.once().await.unwrap();
    d.once().await.unwrap();
    assert_eq!(count(&w), 2, "reminder 1, once");
    let r1 = w.chat.delivered()[1].clone();
    assert!(r1.body.to_string().contains("Reminder 1"), "{}", r1.body);
    // A restart raises nothing twice.
    drop(d);
    let d = w.daemon();
    d.once().await.unwrap();
    assert_eq!(count(&w), 2);
    w.advance(15 * 60);
    d.once().await.unwrap();
    assert_eq!(count(&w), 3, "reminder 2");
    // The job moves: the condition clears, and reminders stop.
    w.api.update("ftjob-stuck", json!({"status": "succeeded"}));
    d.once().await.unwrap();
    w.advance(60 * 60);
    d.once().await.unwrap();
    assert_eq!(count(&w), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn silences_are_added_listed_expired_and_never_replayed() {
    let api = Api::start(vec![
        job("ftjob-noisy", "running", json!({})),
        job("ftjob-quiet", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let setup = Setup::new(&api, &hook.url(), "");
    let run = |args: &[&str]| {
        let o = setup.command(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = run(&[
        "silence",
        "add",
        "--job",
        "ftjob-noisy",
        "--for",
        "1h",
        "--comment",
        "known flaky",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("silence 1 added"), "{out}");
    let (code, out) = run(&[
        "silence",
        "add",
        "--job",
        "x",
        "--for",
        "60d",
        "--comment",
        "too long",
    ]);
    assert_eq!(code, 2);
    assert!(
        out.contains("longer than daemon.max_silence (30days)"),
        "{out}"
    );
    let (_, list) = run(&["silence", "list"]);
    assert!(
        list.contains("job=ftjob-noisy") && list.contains("\"known flaky\""),
        "{list}"
    );
    let mut d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    api.update("ftjob-noisy", json!({"status": "failed"}));
    api.update("ftjob-quiet", json!({"status": "failed"}));
    wait_until("the other job's alert", Duration::from_secs(20), || {
        hook.delivered()
            .iter()
            .any(|r| r.body["data"]["id"] == "ftjob-quiet")
    })
    .await;
    let (code, out) = run(&["silence", "expire", "1"]);
    assert_eq!(code, 0, "{out}");
    setup.wait_for_more_polls("run.log", 5).await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert!(
        !hook
            .delivered()
            .iter()
            .any(|r| r.body["data"]["id"] == "ftjob-noisy"),
        "a silenced row is never replayed"
    );
    let (_, outbox) = run(&["outbox", "--all"]);
    assert!(outbox.contains("silenced (silence 1)"), "{outbox}");
    let (_, list) = run(&["silence", "list", "--all"]);
    assert!(list.contains("expired"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_notifier_is_told_through_another_and_its_recovery_too() {
    let api = Api::start(vec![
        job("ftjob-a", "running", json!({})),
        job("ftjob-b", "running", json!({})),
    ])
    .await;
    let (hook, ops) = (Hook::start().await, Hook::start().await);
    let extra = format!(
        "\n[[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n\
         retry_initial = \"100ms\"\n\n[[route]]\nevents = [\"tunewatch.notifier.*\"]\nnotifiers = [\"hook\", \"ops\"]\n",
        ops.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    setup.edit(|t| {
        t.replace(
            "give_up_after = \"1h\"",
            "give_up_after = \"1h\"\nnotifier_failing_after = 2",
        )
    });
    hook.answer(&[
        Answer::Status(503),
        Answer::Status(503),
        Answer::Status(503),
    ]);
    let mut d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    api.update("ftjob-a", json!({"status": "failed"}));
    wait_until(
        "failing, then recovered, at ops",
        Duration::from_secs(30),
        || {
            let t = ops.delivered_types();
            t.contains(&"tunewatch.notifier.failing".to_string())
                && t.contains(&"tunewatch.notifier.recovered".to_string())
        },
    )
    .await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    // Never through the notifier that failed: "hook" gets its own recovery? No — neither.
    assert!(
        !hook
            .delivered_types()
            .iter()
            .any(|t| t.starts_with("tunewatch.notifier.")),
        "{:?}",
        hook.delivered_types()
    );
    let failing = ops
        .delivered()
        .into_iter()
        .find(|r| r.body["type"] == "tunewatch.notifier.failing")
        .unwrap();
    assert_eq!(failing.body["data"]["id"], "hook");
    assert!(failing.body["error"].as_str().unwrap().contains("503"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_quiet_hours_without_a_zone_an_unknown_zone_and_a_route_to_itself() {
    let api = Api::start(vec![]).await;
    let hook = Hook::start().await;
    let check = |extra: &str| {
        let setup = Setup::new(&api, &hook.url(), extra);
        let o = setup.command(&["check"]).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) =
        check("\n[[quiet_hours]]\nname = \"nights\"\nfrom = \"22:00\"\nto = \"08:00\"\n");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`time_zone` is required"), "{out}");
    let (code, out) = check(
        "\n[[quiet_hours]]\nname = \"nights\"\ntime_zone = \"Europe/Atlantis\"\nfrom = \"22:00\"\nto = \"08:00\"\n",
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("unknown time zone \"Europe/Atlantis\""),
        "{out}"
    );
    assert!(out.contains("line "), "{out}");
    let (code, out) =
        check("\n[[route]]\nevents = [\"tunewatch.notifier.failing\"]\nnotifiers = [\"hook\"]\n");
    assert_eq!(code, 2);
    assert!(
        out.contains("its own failure can never go through itself"),
        "{out}"
    );
    let (code, out) = check(
        "\n[[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"hook\"]\nremind_every = \"5m\"\n",
    );
    assert_eq!(code, 2);
    assert!(out.contains("remind_every"), "{out}");
}

/// "HH:MM" in UTC, `minutes` from now.
fn utc_in(minutes: i64) -> String {
    let t = (unix_now() / 60 + minutes).rem_euclid(24 * 60);
    format!("{:02}:{:02}", t / 60, t % 60)
}

fn unix_now() -> i64 {
    tunewatch::store::unix_now()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_moves_what_quiet_hours_hold() {
    let api = Api::start(vec![job("ftjob-h", "running", json!({}))]).await;
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let quiet = |from: &str, to: &str| {
        format!(
            "\n[[quiet_hours]]\nname = \"now\"\ntime_zone = \"UTC\"\nfrom = \"{from}\"\nto = \"{to}\"\n\n\
             [[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\n\
             [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"chat\"]\nquiet_hours = [\"now\"]\n",
            chat.url()
        )
    };
    let (from, to) = (utc_in(-60), utc_in(120));
    let setup = Setup::new(&api, &hook.url(), &quiet(&from, &to));
    let mut d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    api.update("ftjob-h", json!({"status": "succeeded"}));
    wait_until("the JSON alert", Duration::from_secs(20), || {
        !hook.delivered().is_empty()
    })
    .await;
    let store = setup.store();
    wait_until("the chat alert held", Duration::from_secs(20), || {
        store
            .count(tunewatch::store::Table::HeldDeliveries)
            .unwrap()
            == 1
    })
    .await;
    assert!(chat.delivered().is_empty());
    // The window moves to later today: what it held goes out now.
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let moved = text.replace(
        &quiet(&utc_in(-60), &utc_in(120)),
        &quiet(&utc_in(180), &utc_in(240)),
    );
    std::fs::write(&setup.config, moved).unwrap();
    signal(&d, "HUP");
    wait_until(
        "the held alert after the reload",
        Duration::from_secs(20),
        || !chat.delivered().is_empty(),
    )
    .await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert!(
        chat.delivered()[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("While you were away (now)")
    );
}
