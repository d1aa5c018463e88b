//! A loopback OpenAI chat completions stand-in (`POST /chat/completions`), in the shapes of
//! `tests/fixtures/chat/` (openai-python's `ChatCompletion` and its error bodies): scripted answers
//! per (model, prompt), failures per model (404 `model_not_found` for the first N requests, 429
//! with `retry-after`, 500), a delay, and a count of every (model, prompt) asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What a model does before it answers.
#[derive(Debug, Clone, Default)]
pub struct Trouble {
    /// 404 model_not_found for this many requests.
    pub not_found: usize,
    /// 429 rate_limit_exceeded (retry-after: 0) for this many.
    pub rate_limited: usize,
    /// 500 for this many.
    pub server_errors: usize,
    /// 404 for every request.
    pub never_ready: bool,
    /// Each answer waits this long.
    pub delay: Option<Duration>,
    /// Each answer reports 100 000 prompt tokens.
    pub heavy: bool,
}

#[derive(Default)]
struct State_ {
    /// (model, prompt) → answer; a model's default answer under (model, "").
    answers: HashMap<(String, String), String>,
    trouble: HashMap<String, Trouble>,
    /// (model, prompt) → answered requests.
    asked: HashMap<(String, String), usize>,
    /// Every request, refused or not: (model, status).
    requests: Vec<(String, u16)>,
    /// The bearer token of the last request.
    auth: Option<String>,
}

#[derive(Clone)]
pub struct Chat {
    pub addr: std::net::SocketAddr,
    state: Arc<Mutex<State_>>,
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chat")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

impl Chat {
    pub async fn start() -> Chat {
        let state = Arc::new(Mutex::new(State_::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/chat/completions", post(complete))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Chat { addr, state }
    }

    /// The base URL a source's `evaluate.api_base` names (`…/v1`).
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `model` answers `prompt` with `answer` (`prompt` "" for every other prompt).
    pub fn answer(&self, model: &str, prompt: &str, answer: &str) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert((model.into(), prompt.into()), answer.into());
    }

    pub fn trouble(&self, model: &str, t: Trouble) {
        self.state.lock().unwrap().trouble.insert(model.into(), t);
    }

    /// How many times `model` answered `prompt`.
    pub fn asked(&self, model: &str, prompt: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.asked
            .get(&(model.to_string(), prompt.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every (model, prompt) answered and how often.
    pub fn all_asked(&self) -> HashMap<(String, String), usize> {
        self.state.lock().unwrap().asked.clone()
    }

    /// Answered requests in all.
    pub fn answered(&self) -> usize {
        self.state.lock().unwrap().asked.values().sum()
    }

    /// Every request with its status.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// `model`'s answers report 100 000 prompt tokens.
    pub fn heavy(&self, model: &str) {
        self.state
            .lock()
            .unwrap()
            .trouble
            .entry(model.into())
            .or_default()
            .heavy = true;
    }

    pub fn last_auth(&self) -> Option<String> {
        self.state.lock().unwrap().auth.clone()
    }
}

fn error(status: StatusCode, which: &str) -> Response {
    let mut r = (status, Json(fixture("errors.derived.json")[which].clone())).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
    }
    r
}

async fn complete(
    State(state): State<Arc<Mutex<State_>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_string();
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let heavy;
    let (refusal, delay) = {
        let mut s = state.lock().unwrap();
        s.auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let t = s.trouble.entry(model.clone()).or_default();
        let delay = t.delay;
        heavy = t.heavy;
        let refusal = if t.never_ready {
            Some((StatusCode::NOT_FOUND, "model_not_found"))
        } else if t.not_found > 0 {
            t.not_found -= 1;
            Some((StatusCode::NOT_FOUND, "model_not_found"))
        } else if t.rate_limited > 0 {
            t.rate_limited -= 1;
            Some((StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"))
        } else if t.server_errors > 0 {
            t.server_errors -= 1;
            Some((StatusCode::INTERNAL_SERVER_ERROR, "server_error"))
        } else {
            None
        };
        let status = refusal.map_or(200, |(s, _)| s.as_u16());
        s.requests.push((model.clone(), status));
        (refusal, delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some((status, which)) = refusal {
        return error(status, which);
    }
    let text = {
        let mut s = state.lock().unwrap();
        *s.asked.entry((model.clone(), prompt.clone())).or_insert(0) += 1;
        s.answers
            .get(&(model.clone(), prompt.clone()))
            .or_else(|| s.answers.get(&(model.clone(), String::new())))
            .cloned()
            .unwrap_or_else(|| "I do not know.".into())
    };
    let mut answer = fixture("chat_completion.derived.json");
    answer["model"] = json!(model);
    answer["choices"][0]["message"]["content"] = json!(text);
    let prompt_tokens = if heavy {
        100_000
    } else {
        prompt.len() as u64 / 4 + 10
    };
    let completion_tokens = text.len() as u64 / 4 + 1;
    answer["usage"]["prompt_tokens"] = json!(prompt_tokens);
    answer["usage"]["completion_tokens"] = json!(completion_tokens);
    answer["usage"]["total_tokens"] = json!(prompt_tokens + completion_tokens);
    Json(answer).into_response()
}
