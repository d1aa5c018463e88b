//! Loopback stand-ins for every provider's batch API (DESIGN.md, "Batches on every provider"),
//! served by the [`super::clouds::Cloud`] server beside the fine-tuning APIs, each in its
//! published shape and paging (fixtures in `tests/fixtures/batches/`, with their sources):
//! Anthropic's Message Batches (`x-api-key` + `anthropic-version`, `after_id`), the Gemini API's
//! batch operations (`x-goog-api-key`, `pageToken`), Mistral's batch jobs (`page`/`total`),
//! Together's batches (one bare array), Vertex AI's batch prediction jobs (Google OAuth2), Bedrock's
//! model invocation jobs (SigV4 or a Bedrock API key) and Fireworks' batch inference jobs.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::API_KEY;
use super::clouds::{CloudState, S, bearer_ok, bedrock_ok, google_ok, page, query, record};

/// The batches of `provider` (newest first), cloned.
fn list(state: &Mutex<CloudState>, provider: &str) -> Vec<Value> {
    state
        .lock()
        .unwrap()
        .batches
        .get(provider)
        .cloned()
        .unwrap_or_default()
}

fn not_found(body: Value) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// The batch of `provider` whose `key` is `id`.
fn one(state: &Mutex<CloudState>, provider: &str, key: &str, id: &str, missing: Value) -> Response {
    match list(state, provider).into_iter().find(|b| b[key] == id) {
        Some(b) => axum::Json(b).into_response(),
        None => not_found(missing),
    }
}

fn size(q: &std::collections::HashMap<String, String>, key: &str, default: usize) -> usize {
    q.get(key).and_then(|s| s.parse().ok()).unwrap_or(default)
}

pub fn routes() -> Router<Arc<Mutex<CloudState>>> {
    Router::new()
        .route("/v1/messages/batches", get(anthropic_list))
        .route("/v1/messages/batches/{id}", get(anthropic_get))
        .route("/v1beta/batches", get(gemini_list))
        .route("/v1beta/batches/{id}", get(gemini_get))
        .route("/v1/batch/jobs", get(mistral_list))
        .route("/v1/batch/jobs/{id}", get(mistral_get))
        .route("/v1/batches", get(together_list))
        .route("/v1/batches/{id}", get(together_get))
        .route(
            "/v1/projects/{p}/locations/{l}/batchPredictionJobs",
            get(vertex_list),
        )
        .route(
            "/v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}",
            get(vertex_get),
        )
        .route("/model-invocation-jobs", get(bedrock_list))
        .route("/model-invocation-job/{arn}", get(bedrock_get))
        .route("/v1/accounts/{a}/batchInferenceJobs", get(fireworks_list))
        .route(
            "/v1/accounts/{a}/batchInferenceJobs/{id}",
            get(fireworks_get),
        )
}

/// Anthropic wants `x-api-key` and `anthropic-version`, and says so in its error shape.
fn anthropic_ok(headers: &HeaderMap) -> Option<Response> {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let (status, kind, message) = if h("x-api-key") != Some(API_KEY) {
        (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        )
    } else if h("anthropic-version") != Some("2023-06-01") {
        (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        )
    } else {
        return None;
    };
    Some(
        (
            status,
            axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
        )
            .into_response(),
    )
}

async fn anthropic_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = anthropic_ok(&headers) {
        return r;
    }
    let q = query(&q);
    let all = list(&state, "anthropic");
    let start = q
        .get("after_id")
        .and_then(|a| all.iter().position(|b| b["id"] == a.as_str()))
        .map_or(0, |i| i + 1);
    let data: Vec<Value> = all
        .iter()
        .skip(start)
        .take(size(&q, "limit", 20))
        .cloned()
        .collect();
    let has_more = start + data.len() < all.len();
    axum::Json(json!({"data": data, "has_more": has_more,
                      "first_id": data.first().map(|b| b["id"].clone()),
                      "last_id": data.last().map(|b| b["id"].clone())}))
    .into_response()
}

async fn anthropic_get(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = anthropic_ok(&headers) {
        return r;
    }
    one(
        &state,
        "anthropic",
        "id",
        &id,
        json!({"type": "error", "error": {"type": "not_found_error", "message": "not found"}}),
    )
}

fn gemini_ok(headers: &HeaderMap) -> Option<Response> {
    (headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY)).then(|| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                        "status": "INVALID_ARGUMENT"}})),
        )
            .into_response()
    })
}

async fn gemini_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = gemini_ok(&headers) {
        return r;
    }
    let q = query(&q);
    let (ops, next) = page(
        &list(&state, "gemini"),
        q.get("pageToken").map(String::as_str),
        size(&q, "pageSize", 50),
    );
    axum::Json(json!({"operations": ops, "nextPageToken": next})).into_response()
}

async fn gemini_get(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = gemini_ok(&headers) {
        return r;
    }
    one(
        &state,
        "gemini",
        "name",
        &format!("batches/{id}"),
        json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "not found"}}),
    )
}

async fn mistral_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let q = query(&q);
    let all = list(&state, "mistral");
    let (number, size) = (size(&q, "page", 0), size(&q, "page_size", 100));
    let data: Vec<Value> = all.iter().skip(number * size).take(size).cloned().collect();
    axum::Json(json!({"data": data, "object": "list", "total": all.len()})).into_response()
}

async fn mistral_get(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    one(&state, "mistral", "id", &id, json!({"detail": "not found"}))
}

async fn together_list(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    axum::Json(list(&state, "together")).into_response()
}

async fn together_get(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    one(
        &state,
        "together",
        "id",
        &id,
        json!({"error": {"message": "not found"}}),
    )
}

async fn vertex_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = google_ok(&state, &headers) {
        return r;
    }
    let q = query(&q);
    let (jobs, next) = page(
        &list(&state, "vertex"),
        q.get("pageToken").map(String::as_str),
        size(&q, "pageSize", 100),
    );
    axum::Json(json!({"batchPredictionJobs": jobs, "nextPageToken": next.unwrap_or_default()}))
        .into_response()
}

async fn vertex_get(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = google_ok(&state, &headers) {
        return r;
    }
    let name = uri.path().trim_start_matches("/v1/").to_string();
    one(
        &state,
        "vertex",
        "name",
        &name,
        json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
    )
}

async fn bedrock_list(
    State(state): S,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bedrock_ok(&state, &method, &uri, &headers) {
        return r;
    }
    let q = query(&q);
    let (jobs, next) = page(
        &list(&state, "bedrock"),
        q.get("nextToken").map(String::as_str),
        size(&q, "maxResults", 100),
    );
    axum::Json(json!({"invocationJobSummaries": jobs, "nextToken": next})).into_response()
}

async fn bedrock_get(
    State(state): S,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(arn): Path<String>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bedrock_ok(&state, &method, &uri, &headers) {
        return r;
    }
    match list(&state, "bedrock")
        .into_iter()
        .find(|b| b["jobArn"] == arn.as_str())
    {
        Some(b) => axum::Json(b).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [("x-amzn-ErrorType", "ResourceNotFoundException:")],
            axum::Json(json!({"message": "not found"})),
        )
            .into_response(),
    }
}

async fn fireworks_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let q = query(&q);
    let all = list(&state, "fireworks");
    let (jobs, next) = page(
        &all,
        q.get("pageToken").map(String::as_str),
        size(&q, "pageSize", 50),
    );
    axum::Json(json!({"batchInferenceJobs": jobs, "nextPageToken": next.unwrap_or_default(), "totalSize": all.len()}))
        .into_response()
}

async fn fireworks_get(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let name = uri.path().trim_start_matches("/v1/").to_string();
    one(
        &state,
        "fireworks",
        "name",
        &name,
        json!({"code": 5, "message": "not found"}),
    )
}

/// A fixture of `tests/fixtures/batches/`.
pub fn batch_fixture(name: &str) -> Value {
    super::clouds::cloud_fixture("batches", name)
}

fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

impl super::clouds::Cloud {
    /// Sets `provider`'s batches (newest first).
    pub fn set_batches(&self, provider: &'static str, batches: Vec<Value>) {
        self.state.lock().unwrap().batches.insert(provider, batches);
    }

    /// Adds a batch in front of `provider`'s list (the newest).
    pub fn add_batch(&self, provider: &'static str, batch: Value) {
        self.state
            .lock()
            .unwrap()
            .batches
            .entry(provider)
            .or_default()
            .insert(0, batch);
    }

    /// Merges `patch` (deeply) into the batch of `provider` whose id, name or ARN is `id`.
    pub fn update_batch(&self, provider: &str, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        let batch = s
            .batches
            .get_mut(provider)
            .and_then(|l| {
                l.iter_mut()
                    .find(|b| ["id", "name", "jobArn"].iter().any(|k| b[*k] == id))
            })
            .unwrap_or_else(|| panic!("no {provider} batch {id}"));
        merge(batch, patch);
    }
}
