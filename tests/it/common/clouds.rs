//! Loopback stand-ins for the clouds fine-tuning moved to (DESIGN.md, "Where fine-tuning is
//! going"), each in its published shape (fixtures in `tests/fixtures/<provider>/`, with their
//! sources): Vertex AI's tuning jobs behind Google OAuth2 (a token endpoint that verifies the
//! RS256 assertion's signature and claims, and the metadata server), Bedrock's customization jobs
//! behind a Bedrock API key or SigV4 (checked by an independent verifier), Fireworks' supervised
//! fine-tuning jobs and Hugging Face Jobs behind Bearer keys. One server plays them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::API_KEY;
use super::sigv4;

pub const CLIENT_EMAIL: &str = "tunewatch-reader@tunewatch-test.iam.gserviceaccount.com";
pub const AWS_KEY_ID: &str = "AKIATUNEWATCHTEST01";
pub const AWS_SECRET: &str = "tUnEwAtCh/SeCrEt+KeY/0123456789abcdefGHIJ";
pub const AWS_SESSION: &str = "FwoGZXIvYXdzEtunewatchTestSessionToken";

/// A fixture of `tests/fixtures/<dir>/`.
pub fn cloud_fixture(dir: &str, name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[derive(Default)]
pub struct CloudState {
    /// Newest first, per provider.
    pub vertex: Vec<Value>,
    pub bedrock: Vec<Value>,
    /// Bedrock's full answers by ARN (else the summary is the answer).
    pub bedrock_full: HashMap<String, Value>,
    pub fireworks: Vec<Value>,
    pub huggingface: Vec<Value>,
    /// Every request: "METHOD path?query".
    pub requests: Vec<String>,
    /// Tokens the token endpoint and the metadata server gave, with their expiry.
    pub tokens: HashMap<String, Instant>,
    pub token_requests: usize,
    /// `expires_in` of the next tokens given.
    pub token_lifetime: u64,
    /// Assertions the token endpoint refused, and why.
    pub jwt_refusals: Vec<String>,
    /// Answer the next API request 401 although its token is valid (a revoked token).
    pub revoke_next: bool,
    /// Refuse every token request with this OAuth2 error (`invalid_grant`).
    pub refuse_grant: Option<&'static str>,
    /// The SigV4 credential expected (else a Bedrock API key is).
    pub aws: bool,
    pub sigv4_verified: usize,
    pub sigv4_refusals: Vec<String>,
    /// The Bedrock error type to answer with (`ExpiredTokenException`), when set.
    pub aws_error: Option<&'static str>,
    /// The page size the Hugging Face stand-in uses (it pages by `Link`).
    pub hf_page: usize,
    /// Every provider's batches, newest first, by provider (`anthropic`, `gemini`, `mistral`,
    /// `together`, `vertex`, `bedrock`, `fireworks`): see `batch_apis.rs`.
    pub batches: HashMap<&'static str, Vec<Value>>,
}

pub struct Cloud {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<CloudState>>,
}

pub(super) type S = State<Arc<Mutex<CloudState>>>;

impl Cloud {
    pub async fn start() -> Cloud {
        let state = Arc::new(Mutex::new(CloudState {
            token_lifetime: 3600,
            hf_page: 2,
            ..CloudState::default()
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .route(
                "/v1/projects/{p}/locations/{l}/tuningJobs",
                get(vertex_list),
            )
            .route(
                "/v1/projects/{p}/locations/{l}/tuningJobs/{id}",
                get(vertex_get),
            )
            .route("/model-customization-jobs", get(bedrock_list))
            .route("/model-customization-jobs/{arn}", get(bedrock_get))
            .route(
                "/v1/accounts/{a}/supervisedFineTuningJobs",
                get(fireworks_list),
            )
            .route(
                "/v1/accounts/{a}/supervisedFineTuningJobs/{id}",
                get(fireworks_get),
            )
            .route("/api/jobs/{ns}", get(hf_list))
            .route("/api/jobs/{ns}/{id}", get(hf_get))
            .merge(super::batch_apis::routes())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Cloud { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The service-account key of the fixtures, with `token_uri` pointing here.
    pub fn service_account_key(&self) -> String {
        let mut key = cloud_fixture("google", "test_service_account.json");
        key["token_uri"] = json!(self.url("/token"));
        key.to_string()
    }

    /// Changes fields of the job whose id field (`name`, `jobArn`, `id`) is `id`.
    pub fn update(&self, id: &str, patch: Value) {
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        for list in [
            &mut s.vertex,
            &mut s.bedrock,
            &mut s.fireworks,
            &mut s.huggingface,
        ] {
            for job in list.iter_mut() {
                if ["name", "jobArn", "id"].iter().any(|k| job[*k] == id)
                    && let (Value::Object(j), Value::Object(p)) = (job, patch.clone())
                {
                    j.extend(p);
                }
            }
        }
    }
}

pub(super) fn record(state: &Mutex<CloudState>, method: &str, uri: &Uri) {
    state
        .lock()
        .unwrap()
        .requests
        .push(format!("{method} {uri}"));
}

fn denied(code: &str, message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"code": 401, "message": message, "status": code}})),
    )
        .into_response()
}

/// A Google token given by this stand-in and still valid.
pub(super) fn google_ok(state: &Mutex<CloudState>, headers: &HeaderMap) -> Option<Response> {
    let mut s = state.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.is_some_and(|t| s.tokens.get(t).is_some_and(|until| Instant::now() < *until));
    if !valid {
        return Some(denied(
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        ));
    }
    if std::mem::take(&mut s.revoke_next) {
        return Some(denied(
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ));
    }
    None
}

fn give_token(s: &mut CloudState) -> Value {
    s.token_requests += 1;
    let token = format!("ya29.tunewatch-test-token-{}", s.token_requests);
    s.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(s.token_lifetime),
    );
    json!({"access_token": token, "expires_in": s.token_lifetime, "token_type": "Bearer"})
}

/// Google's token endpoint: verifies the RS256 assertion (signature with the key's public half,
/// `iss`, `scope`, `aud`, `iat`, `exp` ≤ 1 h) before giving a token.
async fn token(State(state): S, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&state, "POST", &uri);
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut s = state.lock().unwrap();
    if let Some(code) = s.refuse_grant {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": code, "error_description": "Invalid JWT Signature."})),
        )
            .into_response();
    }
    let refuse = |s: &mut CloudState, why: String| {
        s.jwt_refusals.push(why.clone());
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(&mut s, "wrong grant_type".into());
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse(&mut s, "no assertion".into());
    };
    let public = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/google/test_service_account.pub.pem"),
    )
    .unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token_uri = format!("http://{host}/token");
    validation.set_audience(&[token_uri.as_str()]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(d) => d.claims,
        Err(e) => return refuse(&mut s, format!("assertion refused: {e}")),
    };
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
        return refuse(&mut s, format!("scope {}", claims["scope"]));
    }
    if exp - iat > 3600 || (iat - now).abs() > 300 {
        return refuse(&mut s, format!("iat {iat} exp {exp}"));
    }
    axum::Json(give_token(&mut s)).into_response()
}

async fn metadata_token(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    axum::Json(give_token(&mut state.lock().unwrap())).into_response()
}

/// A page of `all` from `token` (an offset), `size` long: the page and the next token.
pub(super) fn page(
    all: &[Value],
    token: Option<&str>,
    size: usize,
) -> (Vec<Value>, Option<String>) {
    let start: usize = token
        .and_then(|t| t.strip_prefix('p')?.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(start).take(size).cloned().collect();
    let next = (start + page.len() < all.len()).then(|| format!("p{}", start + page.len()));
    (page, next)
}

pub(super) fn query(raw: &Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
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
    let size = q
        .get("pageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let s = state.lock().unwrap();
    let (jobs, next) = page(&s.vertex, q.get("pageToken").map(String::as_str), size);
    axum::Json(json!({"tuningJobs": jobs, "nextPageToken": next.unwrap_or_default()}))
        .into_response()
}

async fn vertex_get(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = google_ok(&state, &headers) {
        return r;
    }
    let name = uri.path().trim_start_matches("/v1/");
    let s = state.lock().unwrap();
    match s.vertex.iter().find(|j| j["name"] == name) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
            ),
        )
            .into_response(),
    }
}

/// Bedrock's check: a Bedrock API key, or a SigV4 signature recomputed independently.
pub(super) fn bedrock_ok(
    state: &Mutex<CloudState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    let mut s = state.lock().unwrap();
    if let Some(kind) = s.aws_error {
        return Some(
            (
                StatusCode::FORBIDDEN,
                [(
                    "x-amzn-ErrorType",
                    format!("{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"),
                )],
                axum::Json(
                    json!({"message": "The security token included in the request is expired"}),
                ),
            )
                .into_response(),
        );
    }
    if !s.aws {
        let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {API_KEY}"));
        return (!ok).then(|| {
            (
                StatusCode::FORBIDDEN,
                [("x-amzn-ErrorType", "AccessDeniedException:".to_string())],
                axum::Json(json!({"message": "Authentication failed: Please make sure your API Key is valid."})),
            )
                .into_response()
        });
    }
    let list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let expected = sigv4::Expected {
        access_key_id: AWS_KEY_ID,
        secret_access_key: AWS_SECRET,
        session_token: Some(AWS_SESSION),
        region: "us-east-1",
        service: "bedrock",
    };
    match sigv4::verify(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        &list,
        &expected,
    ) {
        Ok(()) => {
            s.sigv4_verified += 1;
            None
        }
        Err(why) => {
            s.sigv4_refusals.push(why);
            Some(
                (
                    StatusCode::FORBIDDEN,
                    [("x-amzn-ErrorType", "InvalidSignatureException:".to_string())],
                    axum::Json(json!({"message": "The request signature we calculated does not match the signature you provided."})),
                )
                    .into_response(),
            )
        }
    }
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
    let size = q
        .get("maxResults")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let s = state.lock().unwrap();
    let (jobs, next) = page(&s.bedrock, q.get("nextToken").map(String::as_str), size);
    axum::Json(json!({"modelCustomizationJobSummaries": jobs, "nextToken": next})).into_response()
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
    let s = state.lock().unwrap();
    let summary = s.bedrock.iter().find(|j| j["jobArn"] == arn.as_str());
    match (s.bedrock_full.get(&arn), summary) {
        (Some(full), Some(summary)) => {
            let mut full = full.clone();
            // The full answer follows the job's current summary.
            for k in ["status", "lastModifiedTime", "endTime", "statusDetails"] {
                if let Some(v) = summary.get(k) {
                    full[k] = v.clone();
                }
            }
            axum::Json(full).into_response()
        }
        (None, Some(summary)) => axum::Json(summary.clone()).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            [("x-amzn-ErrorType", "ResourceNotFoundException:".to_string())],
            axum::Json(json!({"message": "not found"})),
        )
            .into_response(),
    }
}

pub(super) fn bearer_ok(headers: &HeaderMap) -> Option<Response> {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {API_KEY}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 16, "message": "unauthenticated: invalid API key"})),
        )
            .into_response()
    })
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
    let size = q.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(50);
    let s = state.lock().unwrap();
    let (jobs, next) = page(&s.fireworks, q.get("pageToken").map(String::as_str), size);
    axum::Json(
        json!({"supervisedFineTuningJobs": jobs, "nextPageToken": next.unwrap_or_default(),
                      "totalSize": s.fireworks.len()}),
    )
    .into_response()
}

async fn fireworks_get(State(state): S, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let name = uri.path().trim_start_matches("/v1/");
    let s = state.lock().unwrap();
    match s.fireworks.iter().find(|j| j["name"] == name) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 5, "message": "not found"})),
        )
            .into_response(),
    }
}

async fn hf_list(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let q = query(&q);
    let s = state.lock().unwrap();
    let (jobs, next) = page(
        &s.huggingface,
        q.get("cursor").map(String::as_str),
        s.hf_page,
    );
    let mut response = axum::Json(jobs).into_response();
    if let Some(next) = next {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut link = format!("http://{host}/api/jobs/{ns}?cursor={next}");
        if let Some(label) = q.get("label") {
            link.push_str(&format!(
                "&label={}",
                url::form_urlencoded::byte_serialize(label.as_bytes()).collect::<String>()
            ));
        }
        response
            .headers_mut()
            .insert("link", format!("<{link}>; rel=\"next\"").parse().unwrap());
    }
    response
}

async fn hf_get(
    State(state): S,
    uri: Uri,
    headers: HeaderMap,
    Path((_ns, id)): Path<(String, String)>,
) -> Response {
    record(&state, "GET", &uri);
    if let Some(r) = bearer_ok(&headers) {
        return r;
    }
    let s = state.lock().unwrap();
    match s.huggingface.iter().find(|j| j["id"] == id.as_str()) {
        Some(j) => axum::Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Job not found"})),
        )
            .into_response(),
    }
}
