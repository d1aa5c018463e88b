//! A loopback Telegram Bot API stand-in (`POST /bot{TOKEN}/sendMessage`), answering in the Bot
//! API's shapes (`{"ok": true, "result": Message}`, or `{"ok": false, "error_code",
//! "description", "parameters": {"retry_after"}}`), with scripted refusals; and a checker of
//! Telegram's HTML rules (the tags it parses, the entities it knows, the length after parsing).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Default)]
struct Inner {
    script: VecDeque<(u16, Value)>,
    got: Vec<(String, Value, Instant, u16)>,
}

#[derive(Clone)]
pub struct Telegram {
    pub addr: std::net::SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Telegram {
    pub async fn start() -> Telegram {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{bot}/sendMessage", post(send))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Telegram { addr, inner }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next answers: a 429 asking to wait `seconds`, or a 400.
    pub fn too_many(&self, seconds: u64) {
        self.inner.lock().unwrap().script.push_back((
            429,
            json!({"ok": false, "error_code": 429,
                   "description": format!("Too Many Requests: retry after {seconds}"),
                   "parameters": {"retry_after": seconds}}),
        ));
    }

    pub fn bad_request(&self) {
        self.inner.lock().unwrap().script.push_back((
            400,
            json!({"ok": false, "error_code": 400,
                   "description": "Bad Request: can't parse entities"}),
        ));
    }

    /// Every request: (the path's bot segment, body, when, status answered).
    pub fn got(&self) -> Vec<(String, Value, Instant, u16)> {
        self.inner.lock().unwrap().got.clone()
    }

    /// The messages answered 200.
    pub fn sent(&self) -> Vec<Value> {
        self.got()
            .into_iter()
            .filter(|g| g.3 == 200)
            .map(|g| g.1)
            .collect()
    }
}

async fn send(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(bot): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut s = inner.lock().unwrap();
    let (status, answer) = s.script.pop_front().unwrap_or_else(|| {
        (
            200,
            json!({"ok": true, "result": {"message_id": 1, "date": 1_733_000_000,
                   "chat": {"id": body["chat_id"].clone(), "type": "group"},
                   "text": body["text"].clone()}}),
        )
    });
    s.got.push((bot, body, Instant::now(), status));
    (StatusCode::from_u16(status).unwrap(), Json(answer)).into_response()
}

/// Checks `text` as Telegram's HTML parse mode would: only its tags, balanced; only its named
/// entities; at most 4 096 UTF-16 units once parsed. Returns the visible text.
pub fn parse_html(text: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-spoiler",
    ];
    let mut visible = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest.find('>').ok_or("an unclosed <")?;
                let tag = &rest[1..end];
                let (closing, name) = match tag.strip_prefix('/') {
                    Some(n) => (true, n),
                    None => (false, tag.split_whitespace().next().unwrap_or("")),
                };
                if !TAGS.contains(&name) {
                    return Err(format!("unsupported tag <{tag}>"));
                }
                if closing {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!("</{name}> closes nothing"));
                    }
                } else {
                    open.push(name.to_string());
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').ok_or("an unterminated entity")?;
                visible.push(match &rest[1..end] {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    other => return Err(format!("unknown entity &{other};")),
                });
                rest = &rest[end + 1..];
            }
            '>' => return Err("a bare >".into()),
            c => {
                visible.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !open.is_empty() {
        return Err(format!("unclosed tags {open:?}"));
    }
    let units = visible.encode_utf16().count();
    if units > 4096 {
        return Err(format!("{units} UTF-16 units, more than 4096"));
    }
    Ok(visible)
}
