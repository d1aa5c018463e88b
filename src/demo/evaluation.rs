//! The demo's evaluation: a dozen support cases, and the simulated chat completions that answer
//! them — the fine-tune of `ftjob-support` answers as its training taught it, its base model
//! mostly does not — so the run ends with `fine_tuning.job.evaluated` and a verdict.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{SimState, authorised, unauthorised};

/// (id, prompt, expect, the fine-tune's answer, the base model's answer).
const CASES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "refund-window",
        "How long do I have to ask for a refund?",
        r#"{"contains": "30 days"}"#,
        "You can ask for a refund within 30 days of purchase.",
        "Refund windows vary; please check the policy.",
    ),
    (
        "refund-json",
        "Classify: 'I want my money back'. Answer as JSON with a label.",
        r#"{"json_schema": {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["refund", "billing", "other"]}}}}"#,
        r#"{"label": "refund"}"#,
        "This is a refund request.",
    ),
    (
        "greeting",
        "Say hello to a customer named Ana.",
        r#"{"regex": "^Hello,? Ana"}"#,
        "Hello, Ana! How can I help you today?",
        "Hi there! How can I help?",
    ),
    (
        "no-apology",
        "A customer asks where their parcel is.",
        r#"{"not_contains": ["sorry", "apologize"]}"#,
        "Your parcel is on its way; the tracking link is in your e-mail.",
        "I'm sorry for the delay. Your parcel is on its way.",
    ),
    (
        "plan-name",
        "Which plan includes phone support? One word.",
        r#"{"equals_ci": "business"}"#,
        "Business",
        "Enterprise",
    ),
    (
        "escalate",
        "Should a chargeback be escalated? yes or no.",
        r#"{"one_of": ["yes", "no"]}"#,
        "yes",
        "It depends on the case.",
    ),
    (
        "short-reply",
        "Acknowledge a bug report in under 80 characters.",
        r#"{"max_chars": 80}"#,
        "Thanks, we have logged the bug and will follow up.",
        "Thank you very much for taking the time to report this issue; our engineering team will investigate it carefully.",
    ),
    (
        "hours",
        "When is support open?",
        r#"{"similar": "Support is open Monday to Friday, 9:00 to 17:00 CET.", "threshold": 0.8}"#,
        "Support is open Monday to Friday, 9:00 to 17:00 CET.",
        "We are available around the clock.",
    ),
    (
        "order-id",
        "Extract the order id from: 'order AB-1234 never arrived'.",
        r#"{"regex": "AB-1234"}"#,
        "AB-1234",
        "AB-1234",
    ),
    (
        "vat",
        "Is VAT included in prices? Answer yes or no.",
        r#"{"equals": "yes"}"#,
        "yes",
        "yes",
    ),
    (
        "cancel",
        "How do I cancel my subscription?",
        r#"{"contains": ["Settings", "Cancel plan"]}"#,
        "Open Settings, then choose Cancel plan.",
        "Contact us to cancel.",
    ),
    (
        "lang",
        "Reply in Spanish: thank you for waiting.",
        r#"{"contains": "Gracias"}"#,
        "Gracias por esperar.",
        "Thank you for waiting.",
    ),
];

/// The cases file, as JSONL.
pub(super) fn cases_file() -> String {
    CASES
        .iter()
        .map(|(id, prompt, expect, _, _)| {
            let expect: Value = serde_json::from_str(expect).unwrap_or(Value::Null);
            json!({"id": id, "prompt": prompt, "expect": expect}).to_string() + "\n"
        })
        .collect()
}

/// `POST /v1/chat/completions`: the scripted answer of the model asked, in OpenAI's shape.
pub(super) async fn complete(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let model = body["model"].as_str().unwrap_or_default();
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let fine_tune = model.starts_with("ft:");
    let text = CASES
        .iter()
        .find(|c| c.1 == prompt)
        .map_or("I am not sure.", |c| if fine_tune { c.3 } else { c.4 });
    let prompt_tokens = prompt.len() / 4 + 12;
    let completion_tokens = text.len() / 4 + 1;
    Json(json!({
        "id": format!("chatcmpl-demo{}", fastrand::u32(..)),
        "object": "chat.completion",
        "created": crate::store::unix_now(),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": text, "refusal": null}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}
