//! Real parts for integration tests, all on loopback: an HTTP server playing the fine-tuning jobs
//! API (jobs change between polls, failures can be scripted), a webhook receiver that checks
//! Standard Webhooks signatures with its own HMAC code, config files in temp dirs, and
//! `wait_until`, which waits on a condition with a deadline instead of sleeping.

#![allow(dead_code)]

pub mod smtp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const API_KEY: &str = "sk-test-SECRET-api-key-0123456789";
pub const HOOK_SECRET: &str = "whsec_dGVzdC1ob29rLXNlY3JldC1mb3ItdHVuZXdhdGNo";

/// Waits until `cond` holds, checking every 20 ms; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`wait_until`] for conditions that need `.await` (an HTTP GET): returns the first
/// `Some` that `probe` yields, checking every 50 ms; panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a signal by name (`TERM`, `HUP`…) with the system's `kill`.
pub fn signal(child: &std::process::Child, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

/// Waits (with a deadline) for `child` to exit and returns how it did.
pub async fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the process to exit", within, || {
        status = child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    status.unwrap()
}

/// A job object in the API's shape; `extra` fields override.
pub fn job(id: &str, status: &str, extra: Value) -> Value {
    let mut j = json!({
        "object": "fine_tuning.job", "id": id, "model": "gpt-4o-mini-2024-07-18",
        "created_at": 1735477919, "finished_at": null, "fine_tuned_model": null,
        "organization_id": "org-test", "result_files": [], "status": status,
        "validation_file": null, "training_file": "file-train", "trained_tokens": null,
        "error": {"code": null, "message": null, "param": null},
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto",
                            "learning_rate_multiplier": "auto"},
        "seed": 7, "integrations": []
    });
    merge(&mut j, extra);
    j
}

fn merge(target: &mut Value, patch: Value) {
    if let (Value::Object(t), Value::Object(p)) = (target, patch) {
        for (k, v) in p {
            t.insert(k, v);
        }
    }
}

/// A fixture from `tests/fixtures/openai/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openai")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// One scripted API answer.
#[derive(Clone, Default)]
pub struct Scripted {
    /// Wait this long before answering (to trigger the client's timeout).
    pub delay: Duration,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Declare the whole body's length, send only this many bytes, then drop the connection.
    pub truncate_at: Option<usize>,
}

#[derive(Default)]
pub struct ApiState {
    /// Newest first, as the real API lists them.
    pub jobs: Vec<Value>,
    /// Answers given instead of the real one, first to last.
    pub script: VecDeque<Scripted>,
    /// Path and query of every request.
    pub requests: Vec<String>,
    /// The Authorization header of the last request.
    pub last_auth: Option<String>,
    /// The OpenAI-Organization and OpenAI-Project headers of the last request.
    pub last_org: Option<String>,
    pub last_project: Option<String>,
}

/// An HTTP server playing `GET /v1/fine_tuning/jobs` and `GET /v1/fine_tuning/jobs/{id}`.
pub struct Api {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ApiState>>,
}

impl Api {
    pub async fn start(jobs: Vec<Value>) -> Api {
        let state = Arc::new(Mutex::new(ApiState {
            jobs,
            ..ApiState::default()
        }));
        let app = Router::new()
            .route("/v1/fine_tuning/jobs", get(api_list))
            .route("/v1/fine_tuning/jobs/{id}", get(api_get))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes fields of job `id`.
    pub fn update(&self, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        let job = s
            .jobs
            .iter_mut()
            .find(|j| j["id"] == id)
            .expect("job exists");
        merge(job, patch);
    }

    /// Adds a new job at the top of the list.
    pub fn add(&self, job: Value) {
        self.state.lock().unwrap().jobs.insert(0, job);
    }

    /// Answers the next request with `status` and `body` instead.
    pub fn fail_next(&self, status: u16, content_type: &'static str, body: &str) {
        self.state.lock().unwrap().script.push_back(Scripted {
            status,
            content_type,
            body: body.to_string(),
            ..Scripted::default()
        });
    }

    pub fn script(&self, s: Scripted) {
        self.state.lock().unwrap().script.push_back(s);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn scripted(state: &Mutex<ApiState>, req: String, headers: &HeaderMap) -> Option<Response> {
    let answer = {
        let mut s = state.lock().unwrap();
        s.requests.push(req);
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        s.last_auth = h("authorization");
        s.last_org = h("openai-organization");
        s.last_project = h("openai-project");
        s.script.pop_front()?
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = match answer.truncate_at {
        None => (
            StatusCode::from_u16(answer.status).unwrap(),
            [("content-type", answer.content_type)],
            answer.body,
        )
            .into_response(),
        Some(cut) => {
            let full = answer.body.len();
            let part = axum::body::Bytes::from(answer.body.into_bytes()).slice(..cut);
            let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = vec![
                Ok(part),
                Err(std::io::Error::other("the stand-in drops the connection")),
            ];
            let mut r =
                axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response();
            *r.status_mut() = StatusCode::from_u16(answer.status).unwrap();
            r.headers_mut()
                .insert("content-type", answer.content_type.parse().unwrap());
            r.headers_mut()
                .insert("content-length", full.to_string().parse().unwrap());
            r
        }
    };
    for (k, v) in answer.headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    Some(response)
}

async fn api_list(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let req = format!(
        "/v1/fine_tuning/jobs?limit={:?}&after={:?}",
        q.limit, q.after
    );
    if let Some(r) = scripted(&state, req, &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    let limit = q.limit.unwrap_or(20);
    let start = match &q.after {
        Some(after) => s
            .jobs
            .iter()
            .position(|j| j["id"] == after.as_str())
            .map_or(s.jobs.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = s.jobs.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < s.jobs.len();
    axum::Json(json!({"object": "list", "data": page, "has_more": has_more})).into_response()
}

async fn api_get(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Some(r) = scripted(&state, format!("/v1/fine_tuning/jobs/{id}"), &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    match s.jobs.iter().find(|j| j["id"] == id.as_str()) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "{\"error\":{\"message\":\"not found\"}}",
        )
            .into_response(),
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// A status with one header (`retry-after`, `location`).
    With(u16, &'static str, &'static str),
    /// A status after a delay (a slow receiver).
    Slow(u16, Duration),
    /// A status with a body of this many bytes.
    Big(u16, usize),
    /// Accept the request and never answer (until the process holding the connection dies).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: i64,
    /// The headers and body exactly as received, for reference verifiers.
    pub signature: String,
    pub raw_body: Vec<u8>,
    pub signature_ok: bool,
    pub body: Value,
    pub answered: Option<u16>,
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Default)]
pub struct HookState {
    pub script: VecDeque<Answer>,
    pub received: Vec<Received>,
}

/// A webhook receiver that verifies signatures independently of tunewatch's code.
pub struct Hook {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<HookState>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let state = Arc::new(Mutex::new(HookState::default()));
        let app = Router::new()
            .route("/hook", post(hook_receive))
            .route("/hook/{*rest}", post(hook_receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered with 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    /// Event types of the delivered requests, in order.
    pub fn delivered_types(&self) -> Vec<String> {
        self.delivered()
            .iter()
            .map(|r| r.body["type"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")), written from the Standard Webhooks spec.
pub fn expected_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let key = B64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

async fn hook_receive(
    State(state): State<Arc<Mutex<HookState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let signature_ok = !id.is_empty() && sig == expected_signature(HOOK_SECRET, &id, &ts, &body);
    let answer = state
        .lock()
        .unwrap()
        .script
        .pop_front()
        .unwrap_or(Answer::Status(200));
    let status = match answer {
        Answer::Status(s) | Answer::With(s, ..) | Answer::Slow(s, _) | Answer::Big(s, _) => Some(s),
        Answer::Hang => None,
    };
    state.lock().unwrap().received.push(Received {
        webhook_id: id,
        timestamp: ts.parse().unwrap_or(0),
        signature: sig,
        raw_body: body.to_vec(),
        signature_ok,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: status,
        at: Instant::now(),
    });
    match answer {
        Answer::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Answer::With(s, name, value) => {
            (StatusCode::from_u16(s).unwrap(), [(name, value)]).into_response()
        }
        Answer::Slow(s, delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::from_u16(s).unwrap().into_response()
        }
        Answer::Big(s, n) => (StatusCode::from_u16(s).unwrap(), "x".repeat(n)).into_response(),
        Answer::Hang => std::future::pending().await,
    }
}

/// A temp dir with a config pointing at `api` and `hook`, key and secret in files.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    /// `extra` is appended to the config (more notifiers, routes…).
    pub fn new(api: &Api, hook_url: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api.key"), format!("{API_KEY}\n")).unwrap();
        std::fs::write(dir.path().join("hook.secret"), HOOK_SECRET).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[daemon]
state_db = "state/tunewatch.db"

[[source]]
name = "prod"
kind = "openai"
api_base = "{api}"
api_key_file = "api.key"
poll_interval = "200ms"
idle_poll_interval = "200ms"
page_size = 2
max_retries = 2

[[notifier]]
name = "hook"
kind = "webhook"
url = "{hook_url}"
secret_file = "hook.secret"
retry_initial = "100ms"
retry_max = "400ms"
give_up_after = "1h"

[[route]]
events = ["fine_tuning.job.*"]
notifiers = ["hook"]
{extra}"#,
                api = api.base()
            ),
        )
        .unwrap();
        Setup { dir, config }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/tunewatch.db")
    }

    pub fn load(&self) -> tunewatch::config::Config {
        tunewatch::config::Config::load(&self.config).unwrap()
    }

    /// Starts `tunewatch run` with stderr in `dir/log`: systemd's variables cleared, `env` set.
    pub fn spawn_run(&self, log: &str, env: &[(&str, &str)]) -> std::process::Child {
        let file = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let mut c = self.command(&["run"]);
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
        ] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap()
    }

    /// What a daemon started with [`Setup::spawn_run`] has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (with a deadline) until the daemon's log `log` contains `needle`; `what` names the
    /// wait in the failure message.
    pub async fn wait_for_log(&self, log: &str, needle: &str, what: &str) {
        wait_until(what, Duration::from_secs(15), || {
            self.log(log).contains(needle)
        })
        .await;
    }

    /// Rewrites the config file.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, f(text)).unwrap();
    }

    /// A command running the real binary with this config.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"));
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("TUNEWATCH_CONFIG").env("RUST_LOG", "debug");
        c
    }
}
