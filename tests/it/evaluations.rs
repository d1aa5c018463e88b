//! Evaluating a new model (DESIGN.md, "Evaluating a new model"), through the real binary against
//! a loopback chat completions stand-in (`common::chat`, in openai-python's shapes): each grader
//! passes and fails; verdict edges; the budget refused before a run and stopped during one; the
//! deadline; a kill mid-run resumed without asking anything twice; a webhook and a poll giving one
//! evaluation; 404 / 429 / 500; no case text in any log; `check` on the cases file.

use crate::common;

use std::time::Duration;

use common::chat::{Chat, Trouble};
use common::*;
use serde_json::{Value, json};

const FT: &str = "ft:gpt-4.1-mini-2025-04-14:acme:support:Zx98Yw76";
const BASE: &str = "gpt-4.1-mini-2025-04-14";
/// Every case's prompt carries this, so a log holding any prompt is caught.
const MARK: &str = "PROMPTTEXT";
/// And every scripted answer this.
const SAID: &str = "ANSWERTEXT";

/// A case of each grader: (id, prompt, expect, the answer that passes, one that fails).
fn grader_cases() -> Vec<(String, String, Value, String, String)> {
    let c = |id: &str, expect: Value, pass: &str, fail: &str| {
        (
            id.to_string(),
            format!("{MARK} {id}?"),
            expect,
            pass.to_string(),
            fail.to_string(),
        )
    };
    vec![
        c("eq", json!({"equals": "4"}), "4", &format!("5 {SAID}")),
        c(
            "eqci",
            json!({"equals_ci": "paris"}),
            "PARIS",
            &format!("Lyon {SAID}"),
        ),
        c(
            "has",
            json!({"contains": ["refund", "7 days"]}),
            &format!("refund in 7 days {SAID}"),
            &format!("refund {SAID}"),
        ),
        c(
            "hasnt",
            json!({"not_contains": "sorry"}),
            &format!("Sure {SAID}"),
            &format!("sorry {SAID}"),
        ),
        c(
            "re",
            json!({"regex": "^[A-Z]{3}-\\d+"}),
            &format!("ABC-12 {SAID}"),
            &format!("abc {SAID}"),
        ),
        c(
            "js",
            json!({"json": true}),
            "{\"ok\": true}",
            &format!("not json {SAID}"),
        ),
        c(
            "schema",
            json!({"json_schema": {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["spam", "ham"]}}}}),
            "{\"label\": \"spam\"}",
            "{\"label\": \"eggs\"}",
        ),
        c(
            "one",
            json!({"one_of": ["yes", "no"]}),
            "yes",
            &format!("maybe {SAID}"),
        ),
        c(
            "short",
            json!({"max_chars": 20}),
            "brief",
            &format!("{SAID} far too long an answer here"),
        ),
        c(
            "sim",
            json!({"similar": "the cat sat on the mat", "threshold": 0.8}),
            "the cat sat on the mat.",
            &format!("{SAID} a dog ran"),
        ),
    ]
}

fn cases_file(cases: &[(String, String, Value, String, String)]) -> String {
    cases
        .iter()
        .map(|(id, prompt, expect, _, _)| {
            json!({"id": id, "messages": [{"role": "system", "content": "Answer briefly."},
                                          {"role": "user", "content": prompt}],
                   "expect": expect})
            .to_string()
                + "\n"
        })
        .collect()
}

/// `n` plain cases `c0..`, each expecting "ok".
fn plain_cases(n: usize) -> Vec<(String, String, Value, String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("c{i:02}"),
                format!("{MARK} plain {i}"),
                json!({"equals": "ok"}),
                "ok".to_string(),
                format!("no {SAID}"),
            )
        })
        .collect()
}

struct World {
    api: Api,
    hook: Hook,
    chat_hook: Hook,
    chat: Chat,
    setup: Setup,
}

/// A daemon config whose source evaluates with `evaluate` (extra keys of `[source.evaluate]`),
/// against `chat`; the cases file holds `cases`.
async fn world(cases: &[(String, String, Value, String, String)], evaluate: &str) -> World {
    world_on(Backend::Sqlite, cases, evaluate).await
}

async fn world_on(
    backend: Backend,
    cases: &[(String, String, Value, String, String)],
    evaluate: &str,
) -> World {
    let api = Api::start(vec![job("ftjob-eval01", "running", json!({"model": BASE}))]).await;
    let (hook, chat_hook, chat) = (
        Hook::start().await,
        Hook::start().await,
        Chat::start().await,
    );
    let source = format!(
        r#"[[source]]
name = "prod"
kind = "openai"
api_base = "{api}"
api_key_file = "api.key"
poll_interval = "200ms"
idle_poll_interval = "200ms"
insight = false

[source.evaluate]
cases_file = "cases.jsonl"
api_base = "{chat}"
max_cost_usd = 1.00
sample = 0
max_tokens = 64
concurrency = 4
request_timeout = "5s"
wait_ready = "0s"
"#,
        api = api.base(),
        chat = chat.base(),
    );
    let extra = format!(
        "\n[inference_prices]\n\"ft:gpt-4.1-mini\" = {{ input = 0.80, output = 3.20 }}\n\
         \"gpt-4.1-mini\" = {{ input = 0.40, output = 1.60 }}\n\n\
         [[notifier]]\nname = \"chat\"\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{}\"\n\n\
         [[route]]\nevents = [\"fine_tuning.job.evaluated\", \"fine_tuning.job.evaluation_failed\"]\n\
         notifiers = [\"chat\"]\n",
        chat_hook.url()
    );
    // A key of `evaluate` replaces its default above.
    let mut source = source;
    for line in evaluate.lines().filter(|l| l.contains('=')) {
        let key = line.split('=').next().unwrap().trim();
        let old = source
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .map(str::to_string);
        source = match old {
            Some(old) => source.replace(&old, line),
            None => format!("{source}{line}\n"),
        };
    }
    let setup = Setup::with_source_on(backend, &source, &hook.url(), &extra);
    std::fs::write(setup.dir.path().join("cases.jsonl"), cases_file(cases)).unwrap();
    for (_, prompt, _, pass, _) in cases {
        chat.answer(FT, prompt, pass);
    }
    World {
        api,
        hook,
        chat_hook,
        chat,
        setup,
    }
}

impl World {
    /// The job succeeds with its new model.
    fn succeed(&self) {
        self.api.update(
            "ftjob-eval01",
            json!({"status": "succeeded", "fine_tuned_model": FT, "finished_at": 1_733_000_000}),
        );
    }

    /// The evaluation events delivered to the JSON webhook.
    fn evaluations(&self) -> Vec<Value> {
        self.hook
            .delivered()
            .into_iter()
            .filter(|r| {
                r.body["type"]
                    .as_str()
                    .is_some_and(|t| t.contains("evaluat"))
            })
            .map(|r| r.body)
            .collect()
    }

    async fn one_evaluation(&self) -> Value {
        wait_until("the evaluation's event", Duration::from_secs(30), || {
            !self.evaluations().is_empty()
        })
        .await;
        self.evaluations().remove(0)
    }
}

/// The daemon, past its baseline poll.
async fn daemon(setup: &Setup, log: &str) -> std::process::Child {
    let child = setup.spawn_run(log, &[]);
    setup.wait_for_log(log, "polled", "the baseline poll").await;
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_success_is_evaluated_once_each_grader_passes_and_fails_and_no_case_text_is_logged() {
    let cases = grader_cases();
    let w = world(&cases, "").await;
    // The base model fails every case; the fine-tune passes all but `sim`.
    for (id, prompt, _, pass, fail) in &cases {
        w.chat.answer(BASE, prompt, fail);
        if id == "sim" {
            w.chat.answer(FT, prompt, fail);
        } else {
            w.chat.answer(FT, prompt, pass);
        }
    }
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    assert_eq!(e["type"], "fine_tuning.job.evaluated");
    assert_eq!(e["data"]["id"], "ftjob-eval01");
    let ev = &e["evaluation"];
    assert_eq!(ev["model"]["model"], FT);
    assert_eq!(
        (
            ev["model"]["passed"].as_u64(),
            ev["model"]["total"].as_u64()
        ),
        (Some(9), Some(10))
    );
    assert_eq!(ev["baseline"]["model"], BASE);
    assert_eq!(ev["baseline"]["passed"], 0);
    assert_eq!(
        (ev["fixed"].as_u64(), ev["broken"].as_u64()),
        (Some(9), Some(0))
    );
    assert_eq!(ev["verdict"], "improved");
    assert!(ev["p"].as_f64().unwrap() < 0.01);
    for (id, ..) in &cases {
        let grader = match id.as_str() {
            "eq" => "equals",
            "eqci" => "equals_ci",
            "has" => "contains",
            "hasnt" => "not_contains",
            "re" => "regex",
            "js" => "json",
            "schema" => "json_schema",
            "one" => "one_of",
            "short" => "max_chars",
            _ => "similar",
        };
        let counts = &ev["graders"][grader];
        // Each grader passed on the fine-tune and failed on the base: the new model's counts
        // say passed for all but `similar`, and the base failing every one gives 9 fixed.
        let want = if grader == "similar" { (0, 1) } else { (1, 0) };
        assert_eq!(
            (
                counts["passed"].as_u64().unwrap(),
                counts["failed"].as_u64().unwrap()
            ),
            want,
            "{grader}"
        );
    }
    assert_eq!(ev["worst"][0]["id"], "sim");
    assert_eq!(ev["worst"][0]["grader"], "similar");
    // Every (case, model) asked once.
    for (_, prompt, ..) in &cases {
        assert_eq!(w.chat.asked(FT, prompt), 1);
        assert_eq!(w.chat.asked(BASE, prompt), 1);
    }
    assert_eq!(
        w.chat.last_auth().as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    // The chat message says it in one sentence first.
    wait_until("the chat message", Duration::from_secs(10), || {
        !w.chat_hook.delivered().is_empty()
    })
    .await;
    let slack = w.chat_hook.delivered()[0].body.to_string();
    assert!(
        slack.contains(&format!("{FT} passed 9/10 (90 %")),
        "{slack}"
    );
    assert!(slack.contains("improved (9 fixed, 0 broke"), "{slack}");
    // What arrives, for a reader of `--nocapture` (the README shows it).
    eprintln!("webhook body:\n{e:#}\nslack body:\n{slack}");
    // No prompt or answer text anywhere in the log (it runs at debug level).
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    let log = w.setup.log("run.log");
    assert!(log.contains("evaluation finished"), "{log}");
    assert!(
        !log.contains(MARK) && !log.contains(SAID),
        "case text in the log"
    );
    assert!(
        !slack.contains(MARK) && !slack.contains(SAID),
        "case text in the alert"
    );
    assert!(!e.to_string().contains(MARK), "case text in the webhook");
}

/// Runs `tunewatch evaluate prod ftjob-eval01 [args]` and returns (exit code, stdout).
fn evaluate(setup: &Setup, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["evaluate", "prod", "ftjob-eval01"];
    all.extend_from_slice(args);
    let out = setup.command(&all).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verdict_edges_through_the_command_line() {
    let cases = plain_cases(12);
    let w = world(&cases, "").await;
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    let script = |ft_pass: usize, base_pass: usize| {
        for (i, (_, prompt, _, pass, fail)) in cases.iter().enumerate() {
            w.chat
                .answer(FT, prompt, if i < ft_pass { pass } else { fail });
            w.chat
                .answer(BASE, prompt, if i < base_pass { pass } else { fail });
        }
    };
    // b + c = 0: both pass everything.
    script(12, 12);
    let (code, out, err) = evaluate(&w.setup, &["--again"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("inconclusive (0 fixed, 0 broke"), "{out}");
    // The stored result is shown again without asking.
    let before = w.chat.answered();
    let (_, again, _) = evaluate(&w.setup, &[]);
    assert!(again.contains("(stored; --again runs it again)"), "{again}");
    assert_eq!(
        w.chat.answered(),
        before,
        "a stored evaluation asks nothing"
    );
    // b + c < 6: three fixed.
    script(12, 9);
    let (_, out, _) = evaluate(&w.setup, &["--again"]);
    assert!(out.contains("inconclusive (3 fixed, 0 broke"), "{out}");
    // A clear regression: the base passes all, the fine-tune none.
    script(0, 12);
    let (_, out, _) = evaluate(&w.setup, &["--again"]);
    assert!(
        out.contains("regressed (0 fixed, 12 broke, p < 0.001)"),
        "{out}"
    );
    assert!(out.contains("failed c00 (equals"), "{out}");
    // The estimate asks nothing.
    let before = w.chat.answered();
    let (code, out, _) = evaluate(&w.setup, &["--estimate"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("12 cases × 2 models") && out.contains("within the cap"),
        "{out}"
    );
    assert_eq!(w.chat.answered(), before);
    // Not a terminal: plain progress lines on stderr.
    let (_, _, err) = evaluate(&w.setup, &["--again"]);
    assert!(
        err.lines().any(|l| l.starts_with("24/24 answers · $")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_baseline_gives_pass_rates_only_and_n_zero_is_inconclusive() {
    let cases = plain_cases(3);
    let w = world(&cases, "baseline = \"none\"").await;
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "fine_tuning.job.evaluated");
    assert!(e["evaluation"]["baseline"].is_null());
    assert_eq!(e["evaluation"]["verdict"], "inconclusive");
    assert_eq!(w.chat.asked(BASE, &cases[0].1), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_budget_refuses_a_run_before_it_starts_and_stops_one_that_reaches_it() {
    // Refused: 20 cases × 2 models × 64 tokens at $3.20/M is above $0.001.
    let cases = plain_cases(20);
    let w = world(&cases, "").await;
    w.setup
        .edit(|t| t.replace("max_cost_usd = 1.00", "max_cost_usd = 0.001"));
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    assert_eq!(e["type"], "fine_tuning.job.evaluation_failed");
    assert_eq!(e["evaluation"]["reason"], "budget");
    assert!(
        e["evaluation"]["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was asked")
    );
    assert_eq!(
        w.chat.requests().len(),
        0,
        "nothing is asked over the estimate"
    );
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;

    // Stopped: the estimate fits, but each answer reports 100 000 prompt tokens ($0.08 each).
    let w = world(&cases, "concurrency = 1").await;
    w.setup
        .edit(|t| t.replace("max_cost_usd = 1.00", "max_cost_usd = 0.30"));
    w.chat.heavy(FT);
    w.chat.heavy(BASE);
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    let ev = &e["evaluation"];
    assert_eq!(e["type"], "fine_tuning.job.evaluation_failed");
    assert_eq!(ev["reason"], "budget");
    assert_eq!(ev["stopped_early"], true);
    // Usage is known only once an answer arrives: the run stops as soon as the sum reaches the
    // cap, so it passes it by one answer at most ($0.08 here).
    let cost = ev["cost_usd"].as_f64().unwrap();
    assert!((0.30..0.30 + 0.081).contains(&cost), "{ev}");
    // One at a time: $0.08 + $0.04 + $0.08 + $0.04 = $0.24, the fifth reaches $0.32; none after.
    assert_eq!(w.chat.answered(), 5, "stopped at the cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_deadline_reports_what_it_has() {
    let cases = plain_cases(8);
    let w = world(&cases, "deadline = \"1s\"\nconcurrency = 1").await;
    w.chat.trouble(
        FT,
        Trouble {
            delay: Some(Duration::from_millis(400)),
            ..Trouble::default()
        },
    );
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "fine_tuning.job.evaluation_failed");
    assert_eq!(e["evaluation"]["reason"], "deadline");
    assert_eq!(e["evaluation"]["verdict"], "inconclusive");
    assert!(e["evaluation"]["model"]["total"].as_u64().unwrap() < 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_midway_resumes_and_asks_nothing_twice() {
    let cases = plain_cases(10);
    let w = world(&cases, "concurrency = 1").await;
    for m in [FT, BASE] {
        w.chat.trouble(
            m,
            Trouble {
                delay: Some(Duration::from_millis(150)),
                ..Trouble::default()
            },
        );
    }
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    wait_until("some answers", Duration::from_secs(20), || {
        w.chat.answered() >= 6
    })
    .await;
    d.kill().unwrap();
    d.wait().unwrap();
    assert!(w.evaluations().is_empty(), "killed before the end");
    let asked_before = w.chat.answered();
    assert!(asked_before < 20);
    let mut d = w.setup.spawn_run("run2.log", &[]);
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "fine_tuning.job.evaluated");
    assert_eq!(e["evaluation"]["model"]["total"], 10);
    assert_eq!(e["evaluation"]["baseline"]["total"], 10);
    for ((model, prompt), n) in w.chat.all_asked() {
        assert_eq!(n, 1, "{model} was asked {prompt:?} {n} times");
    }
    assert_eq!(w.chat.answered(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_rate_limited_and_failing_models_are_retried_then_given_up() {
    let cases = plain_cases(4);
    let w = world(&cases, "").await;
    w.setup
        .edit(|t| t.replace("wait_ready = \"0s\"", "wait_ready = \"30s\""));
    w.chat.trouble(
        FT,
        Trouble {
            not_found: 2,
            rate_limited: 2,
            ..Trouble::default()
        },
    );
    w.chat.trouble(
        BASE,
        Trouble {
            server_errors: 2,
            ..Trouble::default()
        },
    );
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    assert_eq!(e["type"], "fine_tuning.job.evaluated", "{e}");
    let statuses: Vec<u16> = w.chat.requests().iter().map(|(_, s)| *s).collect();
    for s in [404, 429, 500, 200] {
        assert!(statuses.contains(&s), "{statuses:?}");
    }
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;

    // A model that never comes up: given up after wait_ready, with the reason.
    let w = world(&cases, "").await;
    w.setup
        .edit(|t| t.replace("wait_ready = \"0s\"", "wait_ready = \"2s\""));
    w.chat.trouble(
        FT,
        Trouble {
            never_ready: true,
            ..Trouble::default()
        },
    );
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(e["type"], "fine_tuning.job.evaluation_failed");
    assert_eq!(e["evaluation"]["reason"], "model_not_ready");
    let detail = e["evaluation"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("model_not_found") && !detail.contains("does not exist"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_the_bad_line_of_a_cases_file_and_refuses_what_cannot_hold() {
    let cases = plain_cases(3);
    let w = world(&cases, "").await;
    let check = |setup: &Setup| {
        let out = setup.command(&["check"]).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = check(&w.setup);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("evaluate: 3 cases (all a run; equals)"),
        "{out}"
    );
    let path = w.setup.dir.path().join("cases.jsonl");
    let mut text = cases_file(&cases);
    text.push_str(&format!(
        "{{\"id\": \"c00\", \"prompt\": \"{MARK}\", \"expect\": {{\"equals\": \"x\"}}}}\n"
    ));
    std::fs::write(&path, &text).unwrap();
    let (code, out) = check(&w.setup);
    assert_ne!(code, 0);
    assert!(
        out.contains("line 4: the id \"c00\" is used twice"),
        "{out}"
    );
    assert!(!out.contains(MARK), "{out}");
    std::fs::write(
        &path,
        "{\"id\": \"r\", \"prompt\": \"x\", \"expect\": {\"regex\": \"(\"}}\n",
    )
    .unwrap();
    let (_, out) = check(&w.setup);
    assert!(out.contains("line 1: `regex` does not compile"), "{out}");
    std::fs::write(&path, "{\"id\": \"s\", \"prompt\": \"x\", \"expect\": {\"json_schema\": {\"$ref\": \"file:///etc/passwd\"}}}\n").unwrap();
    let (_, out) = check(&w.setup);
    assert!(
        out.contains("line 1: `json_schema` keyword \"$ref\" is not supported"),
        "{out}"
    );
    // A baseline without a price is refused with its line.
    std::fs::write(&path, cases_file(&cases)).unwrap();
    w.setup
        .edit(|t| t.replace("sample = 0", "sample = 0\nbaseline = \"gpt-5-nano\""));
    let (code, out) = check(&w.setup);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("no [inference_prices] entry matches the baseline \"gpt-5-nano\""),
        "{out}"
    );
    let line = out
        .split("line ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&w.setup.config).unwrap();
    assert!(
        text.lines()
            .nth(line.parse::<usize>().unwrap() - 1)
            .unwrap()
            .contains("baseline"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_cases_and_two_models_at_concurrency_four_take_one_hundred_requests() {
    let cases = plain_cases(50);
    let w = world(&cases, "").await;
    for m in [FT, BASE] {
        w.chat.trouble(
            m,
            Trouble {
                delay: Some(Duration::from_millis(20)),
                ..Trouble::default()
            },
        );
    }
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    let e = w.one_evaluation().await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(w.chat.requests().len(), 100);
    let took = e["evaluation"]["duration_s"].as_f64().unwrap();
    // Reported by the closing note; not a timed assertion.
    eprintln!("50 cases × 2 models at concurrency 4, 20 ms an answer: 100 requests in {took:.2} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_and_a_poll_seeing_one_success_give_one_evaluation() {
    use tunewatch::config::Secret;
    use tunewatch::notify::SigningKey;
    const WHSEC: &str = "whsec_Zml4dHVyZS1zZWNyZXQta2V5LTAxMjM0NTY3ODlhYmM=";
    let cases = plain_cases(3);
    let w = world(&cases, "").await;
    std::fs::write(w.setup.dir.path().join("openai.whsec"), WHSEC).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    w.setup.edit(|t| {
        t.replace(
            "[daemon]",
            &format!("[daemon]\nlisten = \"127.0.0.1:{port}\""),
        )
        .replace(
            "insight = false",
            "insight = false\nwebhook_secret_file = \"openai.whsec\"",
        )
    });
    let mut d = daemon(&w.setup, "run.log").await;
    w.succeed();
    // The webhook about the success, at once; the 200 ms polls see it too.
    let now = tunewatch::store::unix_now();
    let body = json!({"id": "evt_wh1", "object": "event", "type": "fine_tuning.job.succeeded",
                      "created_at": now, "data": {"id": "ftjob-eval01"}})
    .to_string();
    let key = SigningKey::from_secret(&Secret::new(WHSEC)).unwrap();
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/prod"))
        .header("webhook-id", "wh_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", key.sign("wh_1", now, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    w.one_evaluation().await;
    // The job page shows the evaluation: its sentence and each side's numbers.
    let page = reqwest::get(format!("http://127.0.0.1:{port}/jobs/prod/ftjob-eval01"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Evaluation</h2>"), "{page}");
    assert!(page.contains(&format!("{FT} passed 3/3 (100 %")), "{page}");
    assert!(page.contains("95 % interval"), "{page}");
    // Several more polls pass: still one evaluation, each case asked once per model.
    w.setup.wait_for_more_polls("run.log", 3).await;
    signal(&d, "TERM");
    wait_exit(&mut d, Duration::from_secs(10)).await;
    assert_eq!(w.evaluations().len(), 1);
    assert_eq!(w.chat.answered(), 6);
    let rows = w
        .setup
        .store()
        .job_evaluations("prod", "ftjob-eval01")
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgresql_two_daemons_run_one_evaluation_once() {
    let cases = plain_cases(6);
    let w = world_on(Backend::Postgres, &cases, "").await;
    w.setup.edit(|t| {
        t.replacen(
            "[daemon]\n",
            "[daemon]\nleader_lease = \"3s\"\nclaim_lease = \"5s\"\n",
            1,
        )
    });
    let mut a = w.setup.spawn_run("a.log", &[]);
    w.setup
        .wait_for_log("a.log", "baseline=true", "the baseline poll")
        .await;
    let mut b = w.setup.spawn_run("b.log", &[]);
    w.setup
        .wait_for_log("b.log", "following:", "the second daemon to follow")
        .await;
    w.succeed();
    let e = w.one_evaluation().await;
    assert_eq!(e["type"], "fine_tuning.job.evaluated");
    w.setup.wait_for_more_polls("a.log", 3).await;
    for d in [&a, &b] {
        signal(d, "TERM");
    }
    wait_exit(&mut a, Duration::from_secs(10)).await;
    wait_exit(&mut b, Duration::from_secs(10)).await;
    assert_eq!(w.evaluations().len(), 1);
    for ((model, prompt), n) in w.chat.all_asked() {
        assert_eq!(n, 1, "{model} was asked {prompt:?} {n} times");
    }
    assert_eq!(w.chat.answered(), 12);
}
