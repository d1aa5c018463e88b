//! A loopback HTTP server playing the fine-tuning jobs API: jobs change between polls, and
//! answers (statuses, bodies, headers, delays, cut connections) can be scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

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
    /// Batches, newest first (`GET /v1/batches`).
    pub batches: Vec<Value>,
    /// The model list (`GET /v1/models`, and Azure's `GET /openai/models?api-version`).
    pub models: Vec<Value>,
    /// Each job's events and checkpoints, newest first, by (job id, "events" | "checkpoints").
    pub items: std::collections::HashMap<(String, String), Vec<Value>>,
    /// Answers given instead of the real one, first to last.
    pub script: VecDeque<Scripted>,
    /// Jobs whose events list misbehaves, and how.
    pub hostile_items: std::collections::HashMap<String, HostileItems>,
    /// A wait before every answer about a job's events or checkpoints.
    pub items_delay: Duration,
    /// A wait before every answer to a fetch of one job by id.
    pub get_delay: Duration,
    /// Path and query of every request.
    pub requests: Vec<String>,
    /// The Authorization header of the last request.
    pub last_auth: Option<String>,
    /// The OpenAI-Organization and OpenAI-Project headers of the last request.
    pub last_org: Option<String>,
    pub last_project: Option<String>,
}

/// How a job's events list misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileItems {
    /// Every page is full of new metric events and says `has_more`, for ever.
    Endless,
    /// The first page again whatever `after` says, with `has_more`.
    SamePage,
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
            .route("/v1/fine_tuning/jobs/{id}/{list}", get(api_items))
            .route("/v1/batches", get(api_batches))
            .route("/v1/batches/{id}", get(api_batch))
            .route("/v1/models", get(api_models))
            .route("/openai/models", get(azure_models))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes fields of job (or batch) `id`.
    pub fn update(&self, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        let job = s
            .jobs
            .iter_mut()
            .chain(s.batches.iter_mut())
            .find(|j| j["id"] == id)
            .expect("job exists");
        merge(job, patch);
    }

    /// Adds a batch at the top of `GET /v1/batches`.
    pub fn add_batch(&self, batch: Value) {
        self.state.lock().unwrap().batches.insert(0, batch);
    }

    /// Sets the model list.
    pub fn set_models(&self, models: Vec<Value>) {
        self.state.lock().unwrap().models = models;
    }

    /// Changes fields of model `id` (merged), or removes it with `Value::Null`.
    pub fn update_model(&self, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        if patch.is_null() {
            s.models.retain(|m| m["id"] != id);
            return;
        }
        let model = s
            .models
            .iter_mut()
            .find(|m| m["id"] == id)
            .expect("model exists");
        merge(model, patch);
    }

    /// Adds a model to the list.
    pub fn add_model(&self, model: Value) {
        self.state.lock().unwrap().models.push(model);
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

    /// Adds an event or checkpoint (`list`: "events" | "checkpoints") on top of job `id`'s list.
    pub fn add_item(&self, id: &str, list: &str, item: Value) {
        self.state
            .lock()
            .unwrap()
            .items
            .entry((id.to_string(), list.to_string()))
            .or_default()
            .insert(0, item);
    }

    pub fn script(&self, s: Scripted) {
        self.state.lock().unwrap().script.push_back(s);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests for jobs (lists and fetches by id), without training insight's reads of a
    /// job's events and checkpoints.
    pub fn job_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| {
                let path = r.split('?').next().unwrap_or(r);
                !path.ends_with("/events") && !path.ends_with("/checkpoints")
            })
            .collect()
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
    page_of(&s.jobs, &q)
}

async fn api_get(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Some(r) = scripted(&state, format!("/v1/fine_tuning/jobs/{id}"), &headers).await {
        return r;
    }
    let delay = state.lock().unwrap().get_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
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

async fn api_items(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    UrlPath((id, list)): UrlPath<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let req = format!(
        "/v1/fine_tuning/jobs/{id}/{list}?limit={:?}&after={:?}",
        q.limit, q.after
    );
    if let Some(r) = scripted(&state, req, &headers).await {
        return r;
    }
    let delay = state.lock().unwrap().items_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let s = state.lock().unwrap();
    if list == "events"
        && let Some(mode) = s.hostile_items.get(&id)
    {
        let limit = q.limit.unwrap_or(20);
        let start: u64 = match (mode, &q.after) {
            (HostileItems::Endless, Some(after)) => {
                after.trim_start_matches("evx-").parse::<u64>().unwrap_or(0) + 1
            }
            _ => 0,
        };
        let data: Vec<Value> = (start..start + limit as u64)
            .map(|n| {
                json!({"object": "fine_tuning.job.event", "id": format!("evx-{n}"),
                       "created_at": 1_735_480_000, "level": "info", "message": "m",
                       "type": "metrics", "data": {"step": n + 1, "train_loss": 1.0}})
            })
            .collect();
        return axum::Json(json!({"object": "list", "data": data, "has_more": true}))
            .into_response();
    }
    let all = s.items.get(&(id, list)).cloned().unwrap_or_default();
    page_of(&all, &q)
}

/// One page of a newest-first list after `after`, OpenAI-style (`data`, `has_more`).
fn page_of(all: &[Value], q: &ListQuery) -> Response {
    let start = match &q.after {
        Some(after) => all
            .iter()
            .position(|j| j["id"] == after.as_str())
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let limit = q.limit.unwrap_or(20);
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    axum::Json(json!({"object": "list", "data": page, "has_more": has_more})).into_response()
}

/// OpenAI's `GET /v1/models`: `{object: "list", data}`, every model at once.
async fn api_models(State(state): State<Arc<Mutex<ApiState>>>, headers: HeaderMap) -> Response {
    if let Some(r) = scripted(&state, "/v1/models".into(), &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    axum::Json(json!({"object": "list", "data": s.models})).into_response()
}

/// Azure OpenAI's `GET /openai/models?api-version=…`, with the key in `api-key`.
async fn azure_models(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let version = q.get("api-version").cloned().unwrap_or_default();
    if let Some(r) = scripted(
        &state,
        format!("/openai/models?api-version={version}"),
        &headers,
    )
    .await
    {
        return r;
    }
    let key = headers.get("api-key").and_then(|v| v.to_str().ok());
    if key != Some(super::API_KEY) || version.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}})),
        )
            .into_response();
    }
    let s = state.lock().unwrap();
    axum::Json(json!({"object": "list", "data": s.models})).into_response()
}

async fn api_batches(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let req = format!("/v1/batches?limit={:?}&after={:?}", q.limit, q.after);
    if let Some(r) = scripted(&state, req, &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    page_of(&s.batches, &q)
}

async fn api_batch(
    State(state): State<Arc<Mutex<ApiState>>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Some(r) = scripted(&state, format!("/v1/batches/{id}"), &headers).await {
        return r;
    }
    let s = state.lock().unwrap();
    match s.batches.iter().find(|j| j["id"] == id.as_str()) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "{\"error\":{\"message\":\"not found\"}}",
        )
            .into_response(),
    }
}

/// A batch in the API's shape (the fixture `batch_object_completed.derived.json`), with `id`,
/// `status` and `extra` fields set.
pub fn batch(id: &str, status: &str, extra: Value) -> Value {
    let mut b = fixture("batch_object_completed.derived.json");
    b["id"] = json!(id);
    b["status"] = json!(status);
    merge(&mut b, extra);
    b
}
