//! A loopback webhook receiver that checks Standard Webhooks signatures with its own HMAC code
//! and answers as scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::HOOK_SECRET;

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
