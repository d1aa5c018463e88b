//! Loopback stand-ins for the providers other than OpenAI, each in its own shape (DESIGN.md,
//! Sources; fixtures in `tests/fixtures/<provider>/`): Azure OpenAI (`/openai/fine_tuning/jobs`,
//! `api-key` header, `api-version` query, `after`/`limit`), Mistral (`page`/`page_size`,
//! `total`) and Together (`/fine-tunes`, every job at once). Each checks the key its own way and
//! answers 401 in its own words when it is wrong.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::API_KEY;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Azure,
    Mistral,
    Together,
}

#[derive(Default)]
pub struct ProviderState {
    /// Newest first.
    pub jobs: Vec<Value>,
    /// Path and query of every request.
    pub requests: Vec<String>,
    /// The key the stand-in accepts.
    pub key: String,
    /// Mistral: the `total` to claim instead of the true count.
    pub claimed_total: Option<u64>,
    /// Mistral: answer the first page whatever page is asked for.
    pub same_page: bool,
}

pub struct ProviderApi {
    pub addr: SocketAddr,
    pub provider: Provider,
    pub state: Arc<Mutex<ProviderState>>,
}

type Shared = State<(Provider, Arc<Mutex<ProviderState>>)>;

impl ProviderApi {
    pub async fn start(provider: Provider, jobs: Vec<Value>) -> ProviderApi {
        let state = Arc::new(Mutex::new(ProviderState {
            jobs,
            key: API_KEY.to_string(),
            ..ProviderState::default()
        }));
        let app = match provider {
            Provider::Azure => Router::new()
                .route("/openai/fine_tuning/jobs", get(list))
                .route("/openai/fine_tuning/jobs/{id}", get(one))
                .route("/openai/fine_tuning/jobs/{id}/{list}", get(empty_list)),
            Provider::Mistral => Router::new()
                .route("/v1/fine_tuning/jobs", get(list))
                .route("/v1/fine_tuning/jobs/{id}", get(one)),
            Provider::Together => Router::new()
                .route("/v1/fine-tunes", get(list))
                .route("/v1/fine-tunes/{id}", get(one)),
        }
        .with_state((provider, state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ProviderApi {
            addr,
            provider,
            state,
        }
    }

    /// The `api_base` to configure.
    pub fn base(&self) -> String {
        match self.provider {
            Provider::Azure => format!("http://{}/openai", self.addr),
            _ => format!("http://{}/v1", self.addr),
        }
    }

    pub fn update(&self, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        let job = s
            .jobs
            .iter_mut()
            .find(|j| j["id"] == id)
            .expect("job exists");
        if let (Value::Object(j), Value::Object(p)) = (job, patch) {
            j.extend(p);
        }
    }

    pub fn add(&self, job: Value) {
        self.state.lock().unwrap().jobs.insert(0, job);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Accepts only `key` from now on.
    pub fn set_key(&self, key: &str) {
        self.state.lock().unwrap().key = key.to_string();
    }
}

/// The key check of each provider, with its own 401 body.
fn refused(
    provider: Provider,
    state: &ProviderState,
    headers: &HeaderMap,
    query: &str,
) -> Option<Response> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bearer = format!("Bearer {}", state.key);
    match provider {
        Provider::Azure => {
            if !query.contains("api-version=") {
                return Some((StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": "404",
                    "message": "Resource not found"}}))).into_response());
            }
            (h("api-key") != state.key).then(|| {
                (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}})))
                    .into_response()
            })
        }
        Provider::Mistral => (h("authorization") != bearer).then(|| {
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Unauthorized",
                "request_id": "3f2e1d0c"}))).into_response()
        }),
        Provider::Together => (h("authorization") != bearer).then(|| {
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message":
                "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
                .into_response()
        }),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

async fn list(
    State((provider, state)): Shared,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<ListQuery>,
) -> Response {
    let mut s = state.lock().unwrap();
    let raw = raw.unwrap_or_default();
    s.requests.push(format!("list?{raw}"));
    if let Some(r) = refused(provider, &s, &headers, &raw) {
        return r;
    }
    match provider {
        Provider::Azure => {
            let limit = q.limit.unwrap_or(20);
            let start = q.after.as_ref().map_or(0, |a| {
                s.jobs
                    .iter()
                    .position(|j| j["id"] == a.as_str())
                    .map_or(s.jobs.len(), |i| i + 1)
            });
            let page: Vec<Value> = s.jobs.iter().skip(start).take(limit).cloned().collect();
            let has_more = start + page.len() < s.jobs.len();
            axum::Json(json!({"object": "list", "data": page, "has_more": has_more}))
                .into_response()
        }
        Provider::Mistral => {
            let size = q.page_size.unwrap_or(100);
            let number = if s.same_page { 0 } else { q.page.unwrap_or(0) };
            let page: Vec<Value> = s
                .jobs
                .iter()
                .skip(number * size)
                .take(size)
                .cloned()
                .collect();
            let total = s.claimed_total.unwrap_or(s.jobs.len() as u64);
            axum::Json(json!({"object": "list", "data": page, "total": total})).into_response()
        }
        Provider::Together => axum::Json(json!({"object": "list", "data": s.jobs})).into_response(),
    }
}

async fn one(
    State((provider, state)): Shared,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let raw = raw.unwrap_or_default();
    s.requests.push(format!("get {id}?{raw}"));
    if let Some(r) = refused(provider, &s, &headers, &raw) {
        return r;
    }
    match s.jobs.iter().find(|j| j["id"] == id.as_str()) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "not found"}})),
        )
            .into_response(),
    }
}

async fn empty_list(
    State((provider, state)): Shared,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    UrlPath((id, list)): UrlPath<(String, String)>,
) -> Response {
    let mut s = state.lock().unwrap();
    let raw = raw.unwrap_or_default();
    s.requests.push(format!("{list} {id}?{raw}"));
    if let Some(r) = refused(provider, &s, &headers, &raw) {
        return r;
    }
    axum::Json(json!({"object": "list", "data": [], "has_more": false})).into_response()
}
