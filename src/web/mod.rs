//! The status page (DESIGN.md, "Status page"): `GET /` (jobs, sources, outbox),
//! `GET /jobs/SOURCE/JOB_ID` (timeline, loss chart as inline SVG, checkpoints), and the same as
//! JSON at `/api/jobs` and `/api/jobs/SOURCE/JOB_ID`. Read-only and server-rendered: no script,
//! no external asset, a strict `Content-Security-Policy`. When `daemon.listen` is not loopback,
//! every page wants the `ui_token` (Bearer header, or `?token=` once, which sets an HttpOnly
//! cookie); `/healthz` and `/metrics` stay open.

pub mod data;
pub mod pages;
pub mod svg;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::Config;
use crate::store::Store;

/// No script at all, styles only from the page itself, images only inline: an API string that
/// got into the page could not run.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const COOKIE: &str = "tunewatch_token";

/// What the pages read.
pub struct Web {
    pub store: Store,
    /// The running generation's config (a reload replaces it).
    pub config: std::sync::RwLock<Arc<Config>>,
    /// The token pages want; `None` on a loopback address without one.
    pub token: Option<String>,
}

impl Web {
    /// The config now running.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes a reloaded config the one pages read.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// The routes of the status page.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/jobs/{source}/{id}", get(job))
        .route("/api/jobs", get(api_jobs))
        .route("/api/jobs/{source}/{id}", get(api_job))
        .with_state(web)
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The 401 a request without the token gets.
struct Refused;

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "this status page wants its token: Authorization: Bearer TOKEN, or open it once \
             with ?token=TOKEN (daemon.ui_token_*)\n",
        )
            .into_response()
    }
}

/// `Ok(cookie to set)` when the request may see the page, else [`Refused`].
fn authorise(
    web: &Web,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Option<String>, Refused> {
    let Some(token) = &web.token else {
        return Ok(None);
    };
    let h = |n| {
        headers
            .get(n)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    if h(header::AUTHORIZATION.as_str())
        .strip_prefix("Bearer ")
        .is_some_and(|t| same(t.trim(), token))
    {
        return Ok(None);
    }
    let cookie = h(header::COOKIE.as_str())
        .split(';')
        .filter_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .any(|c| same(&c, token));
    if cookie {
        return Ok(None);
    }
    if query.get("token").is_some_and(|t| same(t, token)) {
        return Ok(Some(format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000"
        )));
    }
    Err(Refused)
}

/// A response with the page's security headers (and the cookie, when one is set).
fn respond(body: Response, cookie: Option<String>) -> Response {
    let mut r = body;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "the status page could not read the database");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the database could not be read\n",
    )
        .into_response()
}

type Q = Query<HashMap<String, String>>;

/// Every page and API answer: check the token, read what it shows from the store (`None`: no such
/// job), answer `render` of it with the security headers.
async fn answer<T: Send + 'static>(
    web: &Web,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    read: impl FnOnce(&Store, &Config) -> Result<Option<T>, crate::store::StoreError> + Send + 'static,
    render: impl FnOnce(T) -> Response,
) -> Response {
    let cookie = match authorise(web, headers, q) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let config = web.config();
    match web.store.blocking(move |s| read(s, &config)).await {
        Ok(Some(t)) => respond(render(t), cookie),
        Ok(None) => respond(
            (StatusCode::NOT_FOUND, "no such job in this database\n").into_response(),
            cookie,
        ),
        Err(e) => failed(e),
    }
}

fn html(m: maud::Markup) -> Response {
    axum::response::Html(m.into_string()).into_response()
}

/// `?page=N` (from 1; anything else is page 1).
fn page_number(q: &HashMap<String, String>) -> usize {
    q.get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000)
}

async fn index(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Q) -> Response {
    let page = page_number(&q);
    let read = move |s: &Store, c: &Config| data::overview(s, c, page).map(Some);
    answer(&web, &headers, &q, read, |o| html(pages::index(&o))).await
}

async fn job(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((source, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let read = move |s: &Store, c: &Config| data::job(s, c, &source, &id);
    answer(&web, &headers, &q, read, |d| html(pages::job(&d))).await
}

async fn api_jobs(State(web): State<Arc<Web>>, headers: HeaderMap, Query(q): Q) -> Response {
    let page = page_number(&q);
    let read = move |s: &Store, c: &Config| data::overview(s, c, page).map(Some);
    answer(&web, &headers, &q, read, |o| axum::Json(o).into_response()).await
}

async fn api_job(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path((source, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let read = move |s: &Store, c: &Config| data::job(s, c, &source, &id);
    answer(&web, &headers, &q, read, |d| axum::Json(d).into_response()).await
}
