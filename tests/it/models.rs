//! Model lifecycle (DESIGN.md, "Model lifecycle") against a loopback `/models` stand-in in
//! OpenAI's and Azure's shapes (`tests/fixtures/models/`, with their source): the baseline is
//! silent; `model.created`, `model.retiring` (once per lead, the nearest only at first sight),
//! `model.retirement_changed` and `model.retired` (date passed, or gone from the list) each once;
//! one list request per `models_interval`; a restart raises nothing twice; every alert says it
//! plainly; `tunewatch models` and the status page; `check` refuses what does not fit.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use serde_json::{Value, json};
use tunewatch::Daemon;
use tunewatch::clock::Clock;

const DAY: i64 = 86_400;

fn models_fixture(name: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["data"].as_array().unwrap().clone()
}

/// `YYYY-MM-DD` of unix seconds.
fn date(t: i64) -> String {
    tunewatch::source::models::date_of(t)
}

/// 00:00 UTC of the day of `t`.
fn day_start(t: i64) -> i64 {
    t - t.rem_euclid(DAY)
}

/// (type, model id, reason or warn days) of every model event delivered since `from`, sorted.
fn model_events(hook: &Hook, from: usize) -> Vec<(String, String, String)> {
    let mut got: Vec<(String, String, String)> = hook
        .delivered()
        .iter()
        .skip(from)
        .filter(|r| {
            r.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("model."))
        })
        .map(|r| {
            let m = &r.body["model"];
            let extra = m["reason"]
                .as_str()
                .map(str::to_string)
                .or_else(|| m["warn_days"].as_i64().map(|d| format!("{d}d")))
                .or_else(|| {
                    m["previous_retires_on"]
                        .as_str()
                        .map(|d| format!("was {d}"))
                })
                .unwrap_or_default();
            (
                r.body["type"].as_str().unwrap().to_string(),
                r.body["data"]["id"].as_str().unwrap().to_string(),
                extra,
            )
        })
        .collect();
    got.sort();
    got
}

fn ev(t: &str, id: &str, extra: &str) -> (String, String, String) {
    (t.into(), id.into(), extra.into())
}

fn routes(chat: &Hook) -> String {
    format!(
        "\n[[route]]\nevents = [\"model.*\"]\nnotifiers = [\"hook\", \"chat\"]\n\n\
         [[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\
         retry_initial = \"100ms\"\n",
        chat.url()
    )
}

const SUPPORT: &str = "ft:gpt-4o-mini-2024-07-18:acme:support:Ab12Cd34";
const CKPT: &str = "ft:gpt-4o-mini-2024-07-18:acme:support:Ab12Cd34:ckpt-step-300";
const EF: &str = "ft:gpt-4.1-2025-04-14:acme::Ef56Gh78";

/// The OpenAI fixture with the base's shutdown `base_in` days after `t0`'s day.
fn openai_models(t0: i64, base_in: i64) -> Vec<Value> {
    let mut models = models_fixture("openai_models.derived.json");
    models[0]["shutdown_date"] = json!(date(day_start(t0) + base_in * DAY));
    models
}

struct World {
    api: Api,
    hook: Hook,
    chat: Hook,
    setup: Setup,
    at: Arc<AtomicI64>,
}

impl World {
    async fn start(t0: i64) -> World {
        let api = Api::start(vec![job(
            "ftjob-support01",
            "succeeded",
            json!({"fine_tuned_model": SUPPORT}),
        )])
        .await;
        api.set_models(openai_models(t0, 39));
        let (hook, chat) = (Hook::start().await, Hook::start().await);
        let setup = Setup::new(&api, &hook.url(), &routes(&chat));
        setup.edit(|t| {
            t.replace(
                "kind = \"openai\"",
                "kind = \"openai\"\nwatch = [\"fine_tuning\", \"models\"]\nmodels_interval = \"6h\"",
            )
        });
        World {
            api,
            hook,
            chat,
            setup,
            at: Arc::new(AtomicI64::new(t0 * 1000)),
        }
    }

    fn daemon(&self) -> Daemon {
        let read = self.at.clone();
        let clock = Clock::from_fn(move || read.load(Ordering::SeqCst));
        Daemon::with_clock(self.setup.load(), clock).unwrap()
    }

    fn advance(&self, seconds: i64) {
        self.at.fetch_add(seconds * 1000, Ordering::SeqCst);
    }

    fn model_reads(&self) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.as_str() == "/v1/models")
            .count()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn models_raise_each_event_once_read_once_per_interval_and_a_restart_raises_nothing_twice() {
    // 2026-12-06 12:00 UTC, on the daemon's clock.
    let t0 = 1_796_558_400;
    let w = World::start(t0).await;
    let daemon = w.daemon();
    daemon.once().await.unwrap();
    assert_eq!(w.model_reads(), 1);
    assert!(
        model_events(&w.hook, 0).is_empty(),
        "the baseline is silent"
    );

    // Within the interval: no read. A new model appears, and is seen at the next read.
    w.api.add_model(json!({"id": "ft:gpt-4o-mini-2024-07-18:acme:triage:Zz99", "object": "model",
                            "created": t0, "owned_by": "acme-org", "shutdown_date": date(day_start(t0) + 5 * DAY)}));
    w.advance(3600);
    daemon.once().await.unwrap();
    assert_eq!(w.model_reads(), 1, "one request per models_interval");
    w.advance(5 * 3600);
    daemon.once().await.unwrap();
    assert_eq!(w.model_reads(), 2);
    assert_eq!(
        model_events(&w.hook, 0),
        [
            ev(
                "model.created",
                "ft:gpt-4o-mini-2024-07-18:acme:triage:Zz99",
                ""
            ),
            ev(
                "model.retiring",
                "ft:gpt-4o-mini-2024-07-18:acme:triage:Zz99",
                "7d"
            ),
        ],
        "30 d and 7 d are both crossed at first sight: one alert, the nearest"
    );
    let seen = w.hook.delivered().len();

    // Nine days on: the base is 30 days away (39 − 9): its fine-tunes' 30-day lead, once each.
    // No read is needed for a lead: the dates are stored.
    w.advance(9 * DAY - 6 * 3600);
    daemon.once().await.unwrap();
    daemon.once().await.unwrap();
    assert_eq!(
        model_events(&w.hook, seen),
        [
            ev(
                "model.retired",
                "ft:gpt-4o-mini-2024-07-18:acme:triage:Zz99",
                "date_passed"
            ),
            ev("model.retiring", SUPPORT, "30d"),
            ev("model.retiring", CKPT, "30d"),
        ]
    );
    let retiring = w
        .hook
        .delivered()
        .into_iter()
        .find(|r| r.body["type"] == "model.retiring" && r.body["data"]["id"] == SUPPORT)
        .unwrap();
    let m = &retiring.body["model"];
    let retire_day = date(day_start(t0) + 39 * DAY);
    assert_eq!(
        (
            m["base"].as_str(),
            m["retires_on"].as_str(),
            m["days_left"].as_i64(),
            m["job"].as_str()
        ),
        (
            Some("gpt-4o-mini-2024-07-18"),
            Some(retire_day.as_str()),
            Some(30),
            Some("ftjob-support01")
        ),
        "{m}"
    );
    let slack = w
        .chat
        .delivered()
        .into_iter()
        .map(|r| r.body.to_string())
        .find(|t| {
            t.contains(&format!(
                "{SUPPORT} retires on {retire_day}, in 30 days; made by ftjob-support01"
            ))
        })
        .unwrap_or_else(|| {
            panic!(
                "{:?}",
                w.chat
                    .delivered()
                    .iter()
                    .map(|r| r.body.to_string())
                    .collect::<Vec<_>>()
            )
        });
    assert!(slack.contains("Retires"), "{slack}");
    let seen = w.hook.delivered().len();

    // The base's date moves a month later: changed, with the old date; the 30-day lead re-arms.
    let later = date(day_start(t0) + 69 * DAY);
    w.api
        .update_model("gpt-4o-mini-2024-07-18", json!({"shutdown_date": later}));
    w.api.update_model(EF, Value::Null);
    w.advance(6 * 3600);
    daemon.once().await.unwrap();
    assert_eq!(
        model_events(&w.hook, seen),
        [
            ev("model.retired", EF, "removed"),
            ev(
                "model.retirement_changed",
                SUPPORT,
                &format!("was {retire_day}")
            ),
            ev(
                "model.retirement_changed",
                CKPT,
                &format!("was {retire_day}")
            ),
        ]
    );
    let seen = w.hook.delivered().len();

    // A restart: the same database, a new daemon. Nothing is raised twice.
    drop(daemon);
    let daemon = w.daemon();
    daemon.once().await.unwrap();
    w.advance(6 * 3600);
    daemon.once().await.unwrap();
    assert_eq!(
        model_events(&w.hook, seen),
        [],
        "nothing twice after a restart"
    );
    // Thirty days before the new date, the re-armed lead is raised again, once.
    w.advance(29 * DAY);
    daemon.once().await.unwrap();
    assert_eq!(
        model_events(&w.hook, seen),
        [
            ev("model.retiring", SUPPORT, "30d"),
            ev("model.retiring", CKPT, "30d")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_fine_tunes_name_their_job_and_date_and_models_lists_them_soonest_first() {
    let api = Api::start(vec![]).await;
    let now = tunewatch::store::unix_now();
    let mut models = models_fixture("azure_models.derived.json");
    let soon = day_start(now) + 12 * DAY;
    models[1]["deprecation"]["inference"] = json!(soon);
    api.set_models(models);
    let (hook, chat) = (Hook::start().await, Hook::start().await);
    let source = format!(
        "[[source]]\nname = \"azure\"\nkind = \"azure_openai\"\napi_base = \"http://{}/openai\"\n\
         api_key_file = \"api.key\"\nwatch = [\"models\"]\nretire_warn = [\"14d\", \"2d\"]\n",
        api.addr
    );
    let setup = Setup::with_source(&source, &hook.url(), &routes(&chat));
    let o = setup.command(&["once"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        api.requests()
            .iter()
            .any(|r| r == "/openai/models?api-version=2024-10-21"),
        "{:?}",
        api.requests()
    );
    let id = "gpt-4o-mini-2024-07-18.ft-3f1c2b7a9d4e45f0a1b2c3d4e5f6a7b8-support";
    let o = setup
        .command(&["models"])
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let header = text.lines().next().unwrap_or("");
    assert!(
        header.starts_with("MODEL")
            && header.contains("BASE")
            && header.contains("RETIRES")
            && header.contains("JOB"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("{} (in 12 days)", date(soon)))
            && line.contains("gpt-4o-mini-2024-07-18")
            && line.contains("ftjob-3f1c2b7a9d4e45f0a1b2c3d4e5f6a7b8"),
        "{text}"
    );
    let o = setup
        .command(&["models", "--output", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["models"][0]["model"], id);
    assert_eq!(json["models"][0]["days_left"], 12);
    assert_eq!(
        json["models"][0]["job"],
        "ftjob-3f1c2b7a9d4e45f0a1b2c3d4e5f6a7b8"
    );
    assert!(hook.delivered().is_empty(), "the baseline is silent");
}

#[test]
fn check_refuses_models_on_a_kind_without_a_model_list_and_out_of_range_keys_with_their_line() {
    for (source, line, words) in [
        (
            "[[source]]\nname = \"m\"\nkind = \"mistral\"\napi_key_file = \"api.key\"\nwatch = [\"models\"]\n",
            8,
            "`watch` \"models\": kind = \"mistral\" has no model list API",
        ),
        (
            "[[source]]\nname = \"o\"\nkind = \"openai\"\napi_key_file = \"api.key\"\nwatch = [\"models\"]\nmodels_interval = \"30s\"\n",
            9,
            "`models_interval` = \"30s\" is outside its range, 1m to 7days",
        ),
        (
            "[[source]]\nname = \"o\"\nkind = \"openai\"\napi_key_file = \"api.key\"\nwatch = [\"models\"]\nretire_warn = [\"30d\", \"10m\"]\n",
            9,
            "`retire_warn` = \"10m\" is outside its range",
        ),
    ] {
        let setup = Setup::with_source(source, "http://127.0.0.1:9/hook", "");
        let o = setup.command(&["check"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("line {line}")) && err.contains(words),
            "{words}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_makes_a_model_reads_the_list_at_once_and_every_format_says_when_it_retires() {
    let api = Api::start(vec![job("ftjob-triage01", "running", json!({}))]).await;
    let now = tunewatch::store::unix_now();
    let retires = day_start(now) + 10 * DAY;
    let mut models = openai_models(now, 10);
    models.truncate(2);
    api.set_models(models);
    let (hook, slack, discord) = (
        Hook::start().await,
        Hook::start().await,
        Hook::start().await,
    );
    let smtp = common::smtp::Smtp::start(None);
    let extra = format!(
        "\n[[route]]\nevents = [\"model.*\"]\nnotifiers = [\"hook\", \"slack\", \"discord\", \"mail\"]\n\n\
         [[notifier]]\nname = \"slack\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\n\
         [[notifier]]\nname = \"discord\"\nkind = \"webhook\"\nformat = \"discord\"\nurl = \"{}\"\n\n\
         [[notifier]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n\
         tls = \"none\"\nfrom = \"tunewatch <tw@example.com>\"\nto = [\"ml@example.com\"]\n",
        slack.url(),
        discord.url(),
        smtp.addr.port()
    );
    let setup = Setup::new(&api, &hook.url(), &extra);
    setup.edit(|t| {
        t.replace(
            "kind = \"openai\"",
            "kind = \"openai\"\nwatch = [\"fine_tuning\", \"models\"]",
        )
    });
    let once = || {
        let o = setup.command(&["once"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    once();
    let model = "ft:gpt-4o-mini-2024-07-18:acme:triage:Tr1a9e01";
    api.update(
        "ftjob-triage01",
        json!({"status": "succeeded", "fine_tuned_model": model, "finished_at": now}),
    );
    api.add_model(json!({"id": model, "object": "model", "created": now, "owned_by": "acme-org"}));
    once();
    assert_eq!(
        api.requests()
            .iter()
            .filter(|r| r.as_str() == "/v1/models")
            .count(),
        2,
        "the new model is read at once, not in six hours"
    );
    assert_eq!(
        model_events(&hook, 0),
        [
            ev("model.created", model, ""),
            ev("model.retiring", model, "30d")
        ]
    );
    let sentence = format!(
        "{model} retires on {}, in 10 days; made by ftjob-triage01",
        date(retires)
    );
    let retiring = |bodies: Vec<String>| {
        bodies
            .into_iter()
            .find(|b| b.contains(&sentence))
            .unwrap_or_else(|| panic!("no {sentence:?}"))
    };
    retiring(
        slack
            .delivered()
            .iter()
            .map(|r| r.body.to_string())
            .collect(),
    );
    retiring(
        discord
            .delivered()
            .iter()
            .map(|r| r.body.to_string())
            .collect(),
    );
    let mail = retiring(
        smtp.accepted()
            .iter()
            .map(|m| {
                // Quoted-printable soft breaks and folded headers undone.
                String::from_utf8_lossy(m)
                    .replace("=\r\n", "")
                    .replace("\r\n ", " ")
            })
            .collect(),
    );
    assert!(
        mail.contains(&format!(
            "Subject: [tunewatch] prod: {model} retires {}",
            date(retires)
        )),
        "{mail}"
    );
    let json = hook
        .delivered()
        .into_iter()
        .find(|r| r.body["type"] == "model.retiring")
        .unwrap();
    assert_eq!(json.body["model"]["days_left"], 10);
    assert_eq!(json.body["model"]["base"], "gpt-4o-mini-2024-07-18");
    assert_eq!(json.body["model"]["job"], "ftjob-triage01");
}
