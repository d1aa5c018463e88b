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

/// Whether `host` (a `Host` header: name or address, maybe with a port) names this machine's
/// loopback or one of `extra`.
fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // "[::1]:9187"
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    crate::config::is_loopback(name) || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
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
        .route(
            "/jobs/{source}/{id}/silence",
            axum::routing::post(silence_job),
        )
        .route("/api/jobs", get(api_jobs))
        .route("/api/jobs/{source}/{id}", get(api_job))
        .with_state(web)
}

/// Equal in time independent of where they differ and of their lengths: the SHA-256 digests of
/// both are compared, every byte.
fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
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

/// Whether and how a request may see the page.
enum Access {
    Granted,
    /// The token came in the query: set it as a cookie and send the browser to the same address
    /// without it, so it leaves the address bar, the history and the refreshes.
    SetCookie(String),
    /// No token, or a wrong one.
    NoToken,
    /// A page without a token, asked under a name that is not this machine's.
    WrongHost,
}

/// Whether the request came over HTTPS (through a reverse proxy that says so).
fn over_https(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    h("x-forwarded-proto").eq_ignore_ascii_case("https")
        || h("forwarded")
            .split([';', ','])
            .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
}

/// Whether the request may see the page.
fn authorise(web: &Web, headers: &HeaderMap, query: &HashMap<String, String>) -> Access {
    let h = |n| {
        headers
            .get(n)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let Some(token) = &web.token else {
        // No token, so loopback only: refuse a Host that is not this machine's (a page
        // elsewhere rebinding its name to 127.0.0.1 would otherwise read this one).
        let host = h(header::HOST.as_str());
        return if host_allowed(host, &web.config().daemon.ui_hosts) {
            Access::Granted
        } else {
            Access::WrongHost
        };
    };
    if h(header::AUTHORIZATION.as_str())
        .strip_prefix("Bearer ")
        .is_some_and(|t| same(t.trim(), token))
    {
        return Access::Granted;
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
        return Access::Granted;
    }
    if query.get("token").is_some_and(|t| same(t, token)) {
        let secure = if over_https(headers) { "; Secure" } else { "" };
        return Access::SetCookie(format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000{secure}"
        ));
    }
    Access::NoToken
}

/// The address of `uri` without its `token` parameter.
fn without_token(uri: &axum::http::Uri) -> String {
    let kept: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let path = uri.path();
    if kept.is_empty() {
        return path.to_string();
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("{path}?{query}")
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
    (headers, uri): (&HeaderMap, &axum::http::Uri),
    q: &HashMap<String, String>,
    read: impl FnOnce(&Store, &Config) -> Result<Option<T>, crate::store::StoreError> + Send + 'static,
    render: impl FnOnce(T) -> Response,
) -> Response {
    match authorise(web, headers, q) {
        Access::Granted => {}
        Access::SetCookie(cookie) => {
            let to = without_token(uri);
            let redirect = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            return respond(redirect, Some(cookie));
        }
        Access::NoToken => return Refused.into_response(),
        Access::WrongHost => {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this status page answers only to loopback host names (and daemon.ui_hosts)\n",
            )
                .into_response();
        }
    }
    let config = web.config();
    match web.store.blocking(move |s| read(s, &config)).await {
        Ok(Some(t)) => respond(render(t), None),
        Ok(None) => respond(
            (StatusCode::NOT_FOUND, "no such job in this database\n").into_response(),
            None,
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

async fn index(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Q,
) -> Response {
    let page = page_number(&q);
    let read = move |s: &Store, c: &Config| data::overview(s, c, page).map(Some);
    answer(&web, (&headers, &uri), &q, read, |o| html(pages::index(&o))).await
}

async fn job(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((source, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let read = move |s: &Store, c: &Config| data::job(s, c, &source, &id);
    answer(&web, (&headers, &uri), &q, read, |d| html(pages::job(&d))).await
}

/// Whether a POST came from this page itself: its `Origin` (or, without one,
/// `Sec-Fetch-Site`) names this host. A form on another site cannot silence anything.
fn same_origin(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match (h("origin"), h("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host)),
        (None, _) => h("sec-fetch-site").is_some_and(|s| s == "same-origin"),
        _ => false,
    }
}

/// `POST /jobs/SOURCE/JOB_ID/silence` (`hours=1|8|24`): silences the job, then back to its page.
async fn silence_job(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((source, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !matches!(authorise(&web, &headers, &HashMap::new()), Access::Granted) {
        return Refused.into_response();
    }
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a silence is added from this page only
",
        )
            .into_response();
    }
    let hours = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "hours")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .filter(|h| [1, 8, 24].contains(h));
    let Some(hours) = hours else {
        return (
            StatusCode::BAD_REQUEST,
            "hours is 1, 8 or 24
",
        )
            .into_response();
    };
    let max = web.config().daemon.max_silence.0.as_millis() as i64;
    let now = crate::store::unix_now_ms();
    let silence = crate::model::silence::Silence {
        id: 0,
        source: Some(source.clone()),
        job: Some(id.clone()),
        model: None,
        event: None,
        starts_ms: now,
        ends_ms: now + (hours * 3_600_000).min(max),
        comment: format!("silenced for {hours} h from the status page"),
        created_ms: now,
        expired_ms: None,
    };
    match web.store.blocking(move |s| s.add_silence(&silence)).await {
        Ok(_) => {
            let to = uri.path().trim_end_matches("/silence").to_string();
            respond(
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
                None,
            )
        }
        Err(e) => failed(e),
    }
}

async fn api_jobs(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Q,
) -> Response {
    let page = page_number(&q);
    let read = move |s: &Store, c: &Config| data::overview(s, c, page).map(Some);
    answer(&web, (&headers, &uri), &q, read, |o| {
        axum::Json(o).into_response()
    })
    .await
}

async fn api_job(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path((source, id)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let read = move |s: &Store, c: &Config| data::job(s, c, &source, &id);
    answer(&web, (&headers, &uri), &q, read, |d| {
        axum::Json(d).into_response()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest_and_hosts_by_name() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cret", "s3cre") && !same("s3cret", "s3cret-longer") && !same("", "x"));
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9187",
            "localhost",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(host_allowed(ok, &[]), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "127.0.0.1.evil.example",
            "localhost.evil:80",
            "[::2]",
        ] {
            assert!(!host_allowed(bad, &[]), "{bad}");
        }
        assert!(host_allowed("tw.internal:443", &["tw.internal".into()]));
    }

    #[test]
    fn the_token_leaves_the_address_and_other_parameters_stay() {
        let uri: axum::http::Uri = "/jobs/prod/x?token=abc&page=2".parse().unwrap();
        assert_eq!(without_token(&uri), "/jobs/prod/x?page=2");
        let uri: axum::http::Uri = "/?token=abc".parse().unwrap();
        assert_eq!(without_token(&uri), "/");
    }
}
