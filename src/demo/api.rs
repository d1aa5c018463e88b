//! A simulated fine-tuning jobs API on a loopback port: the same endpoints, paging, auth and error
//! shape as OpenAI's, with jobs that move through scripted lifecycles in real time. `demo` runs
//! against it through the ordinary HTTP client; it is not used by the daemon itself. The
//! benchmark drives it in-process ([`SimApi::patch`], [`SimApi::requests`]); it has no control
//! routes of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// One scripted job: it appears at `appear_at` and then takes each step at its time.
#[derive(Debug, Clone)]
pub struct SimJob {
    /// When the job starts to exist, from the simulation's start.
    pub appear_at: Duration,
    /// The job object when it appears.
    pub base: Value,
    /// (time from the simulation's start, fields to set); applied in order once due.
    pub steps: Vec<(Duration, Value)>,
    /// Its training run: metric events and checkpoints. `None`: empty lists.
    pub training: Option<super::training::Training>,
}

impl SimJob {
    /// Whether it is a batch (`"object": "batch"`), listed at `/v1/batches`.
    pub fn is_batch(&self) -> bool {
        self.base["object"] == "batch"
    }

    /// Whether it is a Bedrock customization job (it has a `jobArn`), listed at
    /// `/model-customization-jobs`.
    pub fn is_bedrock(&self) -> bool {
        self.base.get("jobArn").is_some()
    }

    /// Its id: `id`, or a Bedrock job's ARN.
    fn id(&self) -> &str {
        self.base["id"]
            .as_str()
            .or_else(|| self.base["jobArn"].as_str())
            .unwrap_or("")
    }

    /// The job as it is `elapsed` after the start, or `None` before it appears.
    pub fn at(&self, elapsed: Duration) -> Option<Value> {
        if elapsed < self.appear_at {
            return None;
        }
        let mut job = self.base.clone();
        for (_, patch) in self.steps.iter().filter(|(t, _)| *t <= elapsed) {
            if let (Value::Object(j), Value::Object(p)) = (&mut job, patch) {
                for (k, v) in p {
                    j.insert(k.clone(), v.clone());
                }
            }
        }
        Some(job)
    }

    /// When the last step happens.
    pub fn settles_at(&self) -> Duration {
        self.steps
            .iter()
            .map(|(t, _)| *t)
            .max()
            .unwrap_or(self.appear_at)
    }
}

pub(super) struct SimState {
    start: Instant,
    /// Newest first, as the API lists them.
    jobs: Vec<SimJob>,
    /// Fields changed through [`SimApi::patch`] (the benchmark's transitions), by job id.
    patches: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    api_key: String,
    requests: AtomicU64,
    /// Requests for a job's events or checkpoints (training insight's reads).
    item_requests: AtomicU64,
}

impl SimState {
    fn job_at(&self, job: &SimJob, elapsed: Duration) -> Option<Value> {
        let mut value = job.at(elapsed)?;
        let patches = self.patches.lock().unwrap_or_else(|p| p.into_inner());
        if let (Value::Object(v), Some(Value::Object(p))) = (
            &mut value,
            patches.get(job.base["id"].as_str().unwrap_or("")),
        ) {
            for (k, x) in p {
                v.insert(k.clone(), x.clone());
            }
        }
        Some(value)
    }
}

/// A running simulated API.
pub struct SimApi {
    pub addr: SocketAddr,
    state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl SimApi {
    /// Serves `jobs` on `127.0.0.1` at a free port; requests must carry `Bearer {api_key}`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(mut jobs: Vec<SimJob>, api_key: &str) -> std::io::Result<SimApi> {
        jobs.sort_by_key(|j| {
            let created = j
                .base
                .get("created_at")
                .or_else(|| j.base.get("creationTime"));
            std::cmp::Reverse(created.and_then(crate::source::job::unix_time).unwrap_or(0))
        });
        let state = Arc::new(SimState {
            start: Instant::now(),
            jobs,
            patches: Default::default(),
            api_key: api_key.to_string(),
            requests: AtomicU64::new(0),
            item_requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/fine_tuning/jobs", get(list_jobs))
            .route("/v1/fine_tuning/jobs/{id}", get(get_job))
            .route("/v1/fine_tuning/jobs/{id}/events", get(list_events))
            .route(
                "/v1/fine_tuning/jobs/{id}/checkpoints",
                get(list_checkpoints),
            )
            .route("/v1/batches", get(list_batches))
            .route("/v1/batches/{id}", get(get_batch))
            .route("/v1/models", get(list_models))
            .route(
                "/v1/chat/completions",
                axum::routing::post(super::evaluation::complete),
            )
            .route("/model-customization-jobs", get(list_bedrock))
            .route("/model-customization-jobs/{arn}", get(get_job))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulated API stopped");
            }
        });
        Ok(SimApi { addr, state, task })
    }

    /// The `api_base` to configure: `http://127.0.0.1:PORT/v1`.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests for jobs' events and checkpoints served so far (part of [`SimApi::requests`]).
    pub fn item_requests(&self) -> u64 {
        self.state.item_requests.load(Ordering::Relaxed)
    }

    /// Sets fields of job `id` from now on, over its script (the benchmark's transitions).
    pub fn patch(&self, id: &str, patch: Value) {
        let mut patches = self.state.patches.lock().unwrap_or_else(|p| p.into_inner());
        let entry = patches.entry(id.to_string()).or_insert_with(|| json!({}));
        if let (Value::Object(e), Value::Object(p)) = (entry, patch) {
            e.extend(p);
        }
    }

    /// Forgets every [`SimApi::patch`].
    pub fn reset(&self) {
        self.state
            .patches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.state.start.elapsed()
    }
}

impl Drop for SimApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn api_error(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, Json(body)).into_response()
}

/// Counts the request and checks its key; `false` means answer 401.
pub(super) fn authorised(state: &SimState, headers: &HeaderMap) -> bool {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let expected = format!("Bearer {}", state.api_key);
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

pub(super) fn unauthorised() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "Incorrect API key provided.",
        "invalid_request_error",
    )
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_jobs(
    state: State<Arc<SimState>>,
    headers: HeaderMap,
    q: Query<ListQuery>,
) -> Response {
    list(state, headers, q, false)
}

async fn list_batches(
    state: State<Arc<SimState>>,
    headers: HeaderMap,
    q: Query<ListQuery>,
) -> Response {
    list(state, headers, q, true)
}

/// A page of jobs or of batches, newest first.
fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
    batches: bool,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let elapsed = state.start.elapsed();
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let visible = state
        .jobs
        .iter()
        .filter(|j| j.appear_at <= elapsed && j.is_batch() == batches && !j.is_bedrock())
        .map(|j| (j.id(), j));
    let mut rest: Box<dyn Iterator<Item = (&str, &SimJob)>> = Box::new(visible);
    if let Some(after) = &q.after {
        let after = after.clone();
        rest = Box::new(rest.skip_while(move |(id, _)| *id != after).skip(1));
    }
    let mut data: Vec<Value> = rest
        .take(limit + 1)
        .filter_map(|(_, j)| state.job_at(j, elapsed))
        .collect();
    let has_more = data.len() > limit;
    data.truncate(limit);
    Json(json!({"object": "list", "data": data, "has_more": has_more})).into_response()
}

/// `GET /v1/models`: the base models (`gpt-4o-mini-2024-07-18` retires 20 days from today) and
/// every fine-tuned model a succeeded job has made so far.
async fn list_models(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let today = crate::store::unix_now();
    let retires = crate::source::models::date_of(today - today.rem_euclid(86_400) + 20 * 86_400);
    let mut data = vec![
        json!({"id": "gpt-4o-mini-2024-07-18", "object": "model", "created": 1_721_172_741,
               "owned_by": "system", "shutdown_date": retires}),
        json!({"id": "gpt-4.1-mini-2025-04-14", "object": "model", "created": 1_744_318_173,
               "owned_by": "system", "shutdown_date": null}),
    ];
    let elapsed = state.start.elapsed();
    for job in &state.jobs {
        let Some(j) = state.job_at(job, elapsed) else {
            continue;
        };
        if let Some(m) = j.get("fine_tuned_model").and_then(Value::as_str)
            && j["status"] == "succeeded"
        {
            data.push(
                json!({"id": m, "object": "model", "created": j["finished_at"],
                             "owned_by": "demo", "shutdown_date": null}),
            );
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_batch(state: State<Arc<SimState>>, headers: HeaderMap, id: Path<String>) -> Response {
    get_job(state, headers, id).await
}

async fn get_job(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let elapsed = state.start.elapsed();
    match state
        .jobs
        .iter()
        .find(|j| j.id() == id.as_str())
        .and_then(|j| state.job_at(j, elapsed))
    {
        Some(job) => Json(job).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            &format!("No fine-tuning job found with id {id}"),
            "invalid_request_error",
        ),
    }
}

/// The fields of a Bedrock job that its list's summaries carry (botocore's
/// `ModelCustomizationJobSummary`).
const BEDROCK_SUMMARY: &[&str] = &[
    "jobArn",
    "baseModelArn",
    "jobName",
    "status",
    "statusDetails",
    "lastModifiedTime",
    "creationTime",
    "endTime",
    "customModelArn",
    "customModelName",
    "customizationType",
];

/// Bedrock's list of customization jobs: summaries, newest first, one page (the demo has few).
async fn list_bedrock(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let elapsed = state.start.elapsed();
    let summaries: Vec<Value> = state
        .jobs
        .iter()
        .filter(|j| j.is_bedrock() && j.appear_at <= elapsed)
        .filter_map(|j| state.job_at(j, elapsed))
        .map(|full| {
            BEDROCK_SUMMARY
                .iter()
                .filter_map(|k| Some((k.to_string(), full.get(*k)?.clone())))
                .collect::<serde_json::Map<String, Value>>()
                .into()
        })
        .collect();
    Json(json!({"modelCustomizationJobSummaries": summaries})).into_response()
}

async fn list_events(
    state: State<Arc<SimState>>,
    headers: HeaderMap,
    id: Path<String>,
    q: Query<ListQuery>,
) -> Response {
    job_list(state, headers, id, q, false)
}

async fn list_checkpoints(
    state: State<Arc<SimState>>,
    headers: HeaderMap,
    id: Path<String>,
    q: Query<ListQuery>,
) -> Response {
    job_list(state, headers, id, q, true)
}

/// A job's events or checkpoints, newest first, paged like the API's.
fn job_list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    checkpoints: bool,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    state.item_requests.fetch_add(1, Ordering::Relaxed);
    let elapsed = state.start.elapsed();
    let Some(job) = state
        .jobs
        .iter()
        .find(|j| j.base["id"] == id.as_str() && j.appear_at <= elapsed)
    else {
        return api_error(
            StatusCode::NOT_FOUND,
            &format!("No fine-tuning job found with id {id}"),
            "invalid_request_error",
        );
    };
    let items = match &job.training {
        Some(t) if checkpoints => t.checkpoints(&id, elapsed),
        Some(t) => t.events(&id, elapsed),
        None => Vec::new(),
    };
    let limit = q
        .limit
        .unwrap_or(if checkpoints { 10 } else { 20 })
        .clamp(1, 100);
    Json(super::training::page(items, q.after.as_deref(), limit)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_takes_its_steps_in_time() {
        let job = SimJob {
            appear_at: Duration::from_secs(1),
            base: json!({"id": "j", "status": "queued"}),
            steps: vec![
                (Duration::from_secs(2), json!({"status": "running"})),
                (
                    Duration::from_secs(3),
                    json!({"status": "succeeded", "trained_tokens": 5}),
                ),
            ],
            training: None,
        };
        assert_eq!(job.at(Duration::ZERO), None);
        assert_eq!(job.at(Duration::from_secs(1)).unwrap()["status"], "queued");
        assert_eq!(
            job.at(Duration::from_millis(2500)).unwrap()["status"],
            "running"
        );
        let done = job.at(Duration::from_secs(9)).unwrap();
        assert_eq!(
            (done["status"].as_str(), done["trained_tokens"].as_i64()),
            (Some("succeeded"), Some(5))
        );
        assert_eq!(job.settles_at(), Duration::from_secs(3));
    }
}
