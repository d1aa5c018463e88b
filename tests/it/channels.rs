//! More channels (DESIGN.md, "More channels"), through the binary against loopback stand-ins,
//! checked with the real rules: Teams' Adaptive Card 1.4 schema and 28 KB, PagerDuty's Events v2
//! schema with trigger → resolve on one dedup_key, Telegram's HTML and length rules and its
//! retry_after, an HTTP template that can read nothing secret and cannot stall; at normal and at
//! extreme input (a 100 000-character error full of markup and mentions), with grouping.

use crate::common;

use std::time::Duration;

use common::telegram::{Telegram, parse_html};
use common::*;
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY32";
const BOT_TOKEN: &str = "123456789:AAHsecretBOTtokenSECRETtoken_abc-XYZ";

fn schema(name: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/channels")
        .join(name);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap()
}

fn valid(v: &jsonschema::Validator, body: &Value) {
    let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{body}");
}

/// An error message of 100 000 characters full of markup and mentions.
fn hostile() -> String {
    let piece = "<at>everyone</at> @everyone <@U123> <!channel> <https://evil|Click> **bold** [x](https://evil) <b>&amp;</b> ";
    piece.repeat(100_000 / piece.len() + 1)[..100_000].to_string()
}

async fn daemon(setup: &Setup) -> std::process::Child {
    let d = setup.spawn_run("run.log", &[]);
    setup
        .wait_for_log("run.log", "polled", "the baseline poll")
        .await;
    d
}

async fn stop(mut d: std::process::Child) {
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn teams_gets_a_valid_adaptive_card_under_28_kb_even_from_a_hostile_job() {
    let api = Api::start(vec![
        job("ftjob-ok", "running", json!({})),
        job("ftjob-evil", "running", json!({})),
    ])
    .await;
    let (hook, teams) = (Hook::start().await, Hook::start().await);
    teams.answer(&[Answer::Status(202), Answer::Status(202)]);
    let extra = format!(
        "\n[[notifier]]\nname = \"teams\"\nkind = \"webhook\"\nformat = \"teams\"\nurl = \"{}\"\n\
         retry_initial = \"100ms\"\n\n[[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"teams\"]\n",
        teams.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    let d = daemon(&setup).await;
    api.update(
        "ftjob-ok",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme::ok"}),
    );
    api.update(
        "ftjob-evil",
        json!({"status": "failed", "error": {"code": "x", "message": hostile(), "param": null}}),
    );
    wait_until("two cards", Duration::from_secs(20), || {
        teams.delivered().len() >= 2
    })
    .await;
    stop(d).await;
    let card = schema("adaptive_card_1_4.derived.schema.json");
    for r in teams.delivered() {
        valid(&card, &r.body);
        assert!(r.raw_body.len() <= 28 * 1024, "{} bytes", r.raw_body.len());
        let text = r.body.to_string();
        assert!(
            !text.contains("<at>") && !text.contains("@everyone"),
            "a mention survived"
        );
        assert!(
            !text.contains("**bold**") && !text.contains("[x](https"),
            "markdown survived"
        );
    }
    let ok = teams
        .delivered()
        .into_iter()
        .find(|r| r.body.to_string().contains("ftjob-ok"))
        .unwrap();
    assert_eq!(ok.body["attachments"][0]["content"]["version"], "1.4");
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_triggers_on_failure_and_the_retrys_success_resolves_the_same_incident() {
    let lineage = json!({"model": "gpt-4o-mini-2024-07-18", "training_file": "file-support-v3"});
    let mut first = job("ftjob-try1", "running", lineage.clone());
    first["user_provided_suffix"] = json!("support");
    let api = Api::start(vec![first]).await;
    let (hook, pd) = (Hook::start().await, Hook::start().await);
    let extra = format!(
        "\n[[notifier]]\nname = \"pager\"\nkind = \"pagerduty\"\napi_base = \"http://{}/hook\"\n\
         routing_key_file = \"pd.key\"\nretry_initial = \"100ms\"\nretry_max = \"400ms\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.failed\", \"fine_tuning.job.succeeded\"]\nnotifiers = [\"pager\"]\n",
        pd.addr
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("pd.key"), ROUTING_KEY).unwrap();
    // A 429 and a 503 first: retried with the same body.
    pd.answer(&[
        Answer::Status(429),
        Answer::Status(503),
        Answer::Status(202),
    ]);
    let d = daemon(&setup).await;
    api.update(
        "ftjob-try1",
        json!({"status": "failed", "error": {"code": "server_error", "message": hostile(), "param": null}}),
    );
    wait_until("the trigger", Duration::from_secs(20), || {
        !pd.delivered().is_empty()
    })
    .await;
    // The retry: a new job of the same lineage, which succeeds.
    let mut retry = job("ftjob-try2", "running", lineage.clone());
    retry["user_provided_suffix"] = json!("support");
    api.add(retry);
    wait_until("the retry seen", Duration::from_secs(20), || {
        setup.log("run.log").contains("ftjob-try2")
    })
    .await;
    api.update(
        "ftjob-try2",
        json!({"status": "succeeded", "fine_tuned_model": "ft:gpt-4o-mini:acme:support:2"}),
    );
    wait_until("the resolves", Duration::from_secs(20), || {
        pd.delivered()
            .iter()
            .any(|r| r.body["event_action"] == "resolve")
    })
    .await;
    stop(d).await;
    let events_v2 = schema("pagerduty_events_v2.derived.schema.json");
    let received = pd.received();
    for r in &received {
        valid(&events_v2, &r.body);
    }
    // The three attempts of the trigger carried the same bytes.
    let triggers: Vec<&Received> = received
        .iter()
        .filter(|r| r.body["event_action"] == "trigger")
        .collect();
    assert_eq!(triggers.len(), 3, "429 and 503 retried");
    assert!(triggers.windows(2).all(|w| w[0].raw_body == w[1].raw_body));
    let trigger = &triggers[0].body;
    assert_eq!(trigger["payload"]["severity"], "error");
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 1024
    );
    let key = trigger["dedup_key"].as_str().unwrap();
    assert_eq!(key, "tunewatch/prod/suffix:support/failed");
    assert!(
        pd.delivered()
            .iter()
            .any(|r| r.body["event_action"] == "resolve" && r.body["dedup_key"] == key),
        "the success resolves the failure's incident"
    );
    // The routing key is in the bodies PagerDuty wants, and nowhere else.
    let log = setup.log("run.log");
    assert!(!log.contains(ROUTING_KEY), "the routing key was logged");
    let outbox = setup.command(&["outbox", "--all"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&outbox.stdout).contains(ROUTING_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_400_is_dead_at_once() {
    let api = Api::start(vec![job("ftjob-x", "running", json!({}))]).await;
    let (hook, pd) = (Hook::start().await, Hook::start().await);
    pd.answer(&[Answer::Status(400)]);
    let extra = format!(
        "\n[[notifier]]\nname = \"pager\"\nkind = \"pagerduty\"\napi_base = \"http://{}/hook\"\n\
         routing_key_file = \"pd.key\"\nretry_initial = \"100ms\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.failed\"]\nnotifiers = [\"pager\"]\n",
        pd.addr
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("pd.key"), ROUTING_KEY).unwrap();
    let d = daemon(&setup).await;
    api.update("ftjob-x", json!({"status": "failed"}));
    let store = setup.store();
    wait_until("the dead row", Duration::from_secs(20), || {
        store
            .count(tunewatch::store::Table::DeadDeliveries)
            .unwrap()
            == 1
    })
    .await;
    stop(d).await;
    assert_eq!(pd.received().len(), 1, "a 400 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn telegram_gets_valid_html_within_its_length_honours_retry_after_and_hides_its_token() {
    let api = Api::start(vec![
        job("ftjob-ok", "running", json!({})),
        job("ftjob-evil", "running", json!({})),
    ])
    .await;
    let hook = Hook::start().await;
    let tg = Telegram::start().await;
    tg.too_many(2);
    let extra = format!(
        "\n[[notifier]]\nname = \"tg\"\nkind = \"telegram\"\napi_base = \"{}\"\nbot_token_file = \"bot.token\"\n\
         chat_id = -1001234567890\nretry_initial = \"100ms\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"tg\"]\n",
        tg.base()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("bot.token"), BOT_TOKEN).unwrap();
    let d = daemon(&setup).await;
    api.update("ftjob-ok", json!({"status": "succeeded"}));
    wait_until("the first message", Duration::from_secs(20), || {
        !tg.sent().is_empty()
    })
    .await;
    api.update(
        "ftjob-evil",
        json!({"status": "failed", "error": {"code": "x", "message": hostile(), "param": null}}),
    );
    wait_until("the second message", Duration::from_secs(20), || {
        tg.sent().len() >= 2
    })
    .await;
    stop(d).await;
    let got = tg.got();
    assert_eq!(got[0].3, 429);
    assert!(
        got[1].2.duration_since(got[0].2) >= Duration::from_secs(2),
        "retry_after honoured"
    );
    assert_eq!(got[0].1, got[1].1, "the same body again");
    for m in tg.sent() {
        let visible = parse_html(m["text"].as_str().unwrap()).unwrap();
        assert!(!visible.is_empty());
        assert_eq!(m["parse_mode"], "HTML");
        assert_eq!(m["chat_id"], "-1001234567890");
        assert_eq!(m["link_preview_options"]["is_disabled"], true);
    }
    assert!(got.iter().all(|g| g.0 == format!("bot{BOT_TOKEN}")));
    let log = setup.log("run.log");
    assert!(
        !log.contains(BOT_TOKEN) && !log.contains("AAHsecret"),
        "the token was logged"
    );
    let check = setup.command(&["check"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&check.stdout).contains("AAHsecret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_template_shapes_the_body_and_cannot_read_secrets_loop_or_recurse() {
    let api = Api::start(vec![job("ftjob-h", "running", json!({}))]).await;
    let (hook, ntfy) = (Hook::start().await, Hook::start().await);
    let template = r#"{"topic": "ml", "title": {{ event.type | tojson }}, "message": {{ (event.data.id ~ " is " ~ event.status) | tojson }}}"#;
    let extra = format!(
        "\n[[notifier]]\nname = \"ntfy\"\nkind = \"http\"\nurl = \"{}\"\nmethod = \"POST\"\n\
         headers = {{ \"Authorization\" = \"Bearer tk_NTFYSECRET\", \"Content-Type\" = \"application/json\" }}\n\
         body_template = '{template}'\nretry_initial = \"100ms\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"ntfy\"]\n",
        ntfy.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    let d = daemon(&setup).await;
    api.update("ftjob-h", json!({"status": "succeeded"}));
    wait_until("the templated request", Duration::from_secs(20), || {
        !ntfy.delivered().is_empty()
    })
    .await;
    stop(d).await;
    let body = &ntfy.delivered()[0].body;
    assert_eq!(body["title"], "fine_tuning.job.succeeded");
    assert_eq!(body["message"], "ftjob-h is succeeded");
    assert!(!setup.log("run.log").contains("tk_NTFYSECRET"));

    // Hostile templates: each is refused by check with its line, renders nothing secret, and
    // none stalls (check returns).
    let secret = setup.dir.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let include_secret = format!("{{% include \"{}\" %}}", secret.display());
    let hostile: Vec<(&str, &str)> = vec![
        ("{{ env.HOME }}", "undefined"),
        ("{% include \"/etc/passwd\" %}", "template"),
        (
            "{% for i in range(100000000) %}{{ i }}{% endfor %}",
            "range",
        ),
        (
            "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}",
            "fuel",
        ),
        (
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "recursion",
        ),
        ("line one\n{{ event.nope.deeper }}", "line 2"),
        (include_secret.as_str(), "template"),
    ];
    for (bad, says) in hostile {
        let text = std::fs::read_to_string(&setup.config).unwrap();
        let start = text.find("body_template = '").unwrap();
        let end = text[start..].find("'\n").unwrap() + start + 2;
        let edited = format!(
            "{}body_template = '''{bad}'''\n{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&setup.config, &edited).unwrap();
        let started = std::time::Instant::now();
        let out = setup.command(&["check"]).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "check stalled on {bad:?}"
        );
        assert!(out.contains("body_template"), "{bad}: {out}");
        assert!(out.to_lowercase().contains(says), "{bad}: {out}");
        assert!(
            !out.contains("TOPSECRET") && !out.contains("root:x:0"),
            "{out}"
        );
        // Restore the good template for the next round.
        std::fs::write(&setup.config, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_keeps_a_link_in_a_job_string_as_text() {
    let api = Api::start(vec![job("ftjob-s", "running", json!({}))]).await;
    let (hook, slack) = (Hook::start().await, Hook::start().await);
    let extra = format!(
        "\n[[notifier]]\nname = \"slack\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"slack\"]\n",
        slack.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    let d = daemon(&setup).await;
    api.update(
        "ftjob-s",
        json!({"status": "failed", "error": {"code": "x", "message": "see <https://evil|Click> now", "param": null}}),
    );
    wait_until("the Slack message", Duration::from_secs(20), || {
        !slack.delivered().is_empty()
    })
    .await;
    stop(d).await;
    let body = slack.delivered()[0].body.to_string();
    assert!(!body.contains("<https://evil|Click>"), "{body}");
    assert!(body.contains("&lt;https://evil|Click&gt;"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_is_one_teams_card_and_one_telegram_message() {
    let api = Api::start(
        (0..6)
            .map(|i| job(&format!("ftjob-g{i}"), "running", json!({})))
            .collect(),
    )
    .await;
    let (hook, teams) = (Hook::start().await, Hook::start().await);
    let tg = Telegram::start().await;
    let extra = format!(
        "\n[[notifier]]\nname = \"teams\"\nkind = \"webhook\"\nformat = \"teams\"\nurl = \"{}\"\n\n\
         [[notifier]]\nname = \"tg\"\nkind = \"telegram\"\napi_base = \"{}\"\nbot_token_file = \"bot.token\"\nchat_id = \"@mlteam\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"teams\", \"tg\"]\ngroup_wait = \"2s\"\n",
        teams.url(),
        tg.base()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("bot.token"), BOT_TOKEN).unwrap();
    let d = daemon(&setup).await;
    for i in 0..6 {
        api.update(&format!("ftjob-g{i}"), json!({"status": "succeeded"}));
    }
    wait_until("both group messages", Duration::from_secs(20), || {
        !teams.delivered().is_empty() && !tg.sent().is_empty()
    })
    .await;
    setup.wait_for_more_polls("run.log", 5).await;
    stop(d).await;
    assert_eq!(teams.delivered().len(), 1);
    assert_eq!(tg.sent().len(), 1);
    valid(
        &schema("adaptive_card_1_4.derived.schema.json"),
        &teams.delivered()[0].body,
    );
    let visible = parse_html(tg.sent()[0]["text"].as_str().unwrap()).unwrap();
    assert!(
        visible.starts_with("6 fine-tuning jobs succeeded on prod"),
        "{visible}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_test_works_for_each_new_channel() {
    let api = Api::start(vec![]).await;
    let (hook, teams, pd, ntfy) = (
        Hook::start().await,
        Hook::start().await,
        Hook::start().await,
        Hook::start().await,
    );
    let tg = Telegram::start().await;
    let extra = format!(
        "\n[[notifier]]\nname = \"teams\"\nkind = \"webhook\"\nformat = \"teams\"\nurl = \"{teams}\"\n\n\
         [[notifier]]\nname = \"pager\"\nkind = \"pagerduty\"\napi_base = \"http://{pd}/hook\"\nrouting_key_file = \"pd.key\"\n\n\
         [[notifier]]\nname = \"tg\"\nkind = \"telegram\"\napi_base = \"{tg}\"\nbot_token_file = \"bot.token\"\nchat_id = 42\n\n\
         [[notifier]]\nname = \"ntfy\"\nkind = \"http\"\nurl = \"{ntfy}\"\nbody_template = \"{{{{ event.data.id }}}}\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.*\"]\nnotifiers = [\"teams\", \"pager\", \"tg\", \"ntfy\"]\n",
        teams = teams.url(),
        pd = pd.addr,
        tg = tg.base(),
        ntfy = ntfy.url()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("pd.key"), ROUTING_KEY).unwrap();
    std::fs::write(setup.dir.path().join("bot.token"), BOT_TOKEN).unwrap();
    for name in ["teams", "pager", "tg", "ntfy"] {
        let out = setup.command(&["notify-test", name]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {text}");
        assert!(text.contains("delivered"), "{name}: {text}");
        assert!(
            !text.contains(BOT_TOKEN) && !text.contains(ROUTING_KEY),
            "{name}: {text}"
        );
    }
    assert_eq!(teams.delivered().len(), 1);
    let actions: Vec<Value> = pd
        .delivered()
        .iter()
        .map(|r| r.body["event_action"].clone())
        .collect();
    assert_eq!(actions, vec![json!("trigger"), json!("resolve")]);
    assert_eq!(tg.sent().len(), 1);
    assert_eq!(ntfy.received().len(), 1);
}
