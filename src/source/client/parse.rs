//! Reading answers: list pages of every shape the providers use (`{data, has_more}`, a named
//! array with a page token, a bare array), items of a job's lists, and the one-line description
//! of an error answer with the provider's own error code. Pure: bytes in, typed pages or one
//! sentence out.

use reqwest::StatusCode;
use serde_json::Value;
use serde_json::value::RawValue;

use super::super::job::{Job, JobParseError};
use super::super::{ItemsPage, Page, SourceError};
use crate::inert::{self, EXCERPT_CHARS};

/// An error answer read: the provider's own error code when it gives one
/// (`UNAUTHENTICATED`, `ExpiredTokenException`, `invalid_api_key`) and the most useful one-line
/// description, bounded to an excerpt.
pub(in crate::source) fn api_error(
    status: StatusCode,
    content_type: &str,
    aws_error_type: &str,
    body: &str,
) -> (Option<String>, String) {
    let reason = status.canonical_reason().unwrap_or("");
    let short = |s: &str| inert::excerpt(s, EXCERPT_CHARS);
    // AWS names the error in a header: `ExpiredTokenException:http://internal…`.
    let mut code = aws_error_type
        .split(':')
        .next()
        .filter(|c| !c.is_empty())
        .map(short);
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(short);
        code = code
            // Google: {"error": {"status": "UNAUTHENTICATED"}}; OpenAI: {"error": {"code": …}};
            // Anthropic: {"error": {"type": "authentication_error"}}; AWS: {"__type": …}.
            .or_else(|| s("/error/status"))
            .or_else(|| s("/error/code"))
            .or_else(|| s("/error/type").filter(|t| t != "error"))
            .or_else(|| s("/__type"))
            .or_else(|| s("/error").filter(|e| e.len() <= 40 && !e.contains(' ')));
        let message = s("/error/message")
            .or_else(|| s("/message"))
            .or_else(|| s("/Message"))
            .or_else(|| s("/error_description"))
            .or_else(|| s("/error"))
            .or_else(|| s("/detail"));
        if let Some(m) = message {
            return (code, format!("{reason}: {m}"));
        }
    }
    let excerpt = inert::excerpt(body, 120);
    let message = if excerpt.is_empty() {
        reason.to_string()
    } else {
        let ct = if content_type.is_empty() {
            "no content type"
        } else {
            content_type
        };
        format!("{reason} ({ct}): {excerpt}")
    };
    (code, message)
}

/// [`api_error`]'s description alone.
#[cfg(test)]
pub(in crate::source) fn api_error_message(
    status: StatusCode,
    content_type: &str,
    body: &str,
) -> String {
    api_error(status, content_type, "", body).1
}

pub(in crate::source) fn parse_json(url: &str, body: &[u8]) -> Result<Value, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Body {
        url: url.to_string(),
        // serde_json's message already ends with "at line L column C".
        message: format!("invalid JSON: {e}"),
    })
}

/// The top level of a list page; each element of `data` is read on its own, so that one
/// malformed or absurdly nested job is skipped instead of failing the page.
#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    data: Option<Vec<&'a RawValue>>,
    has_more: Option<Value>,
}

/// The `data` elements (each still unparsed) and `has_more` of a list answer; `what` names the
/// list in errors.
pub(in crate::source) fn list_data<'b>(
    url: &str,
    body: &'b [u8],
    what: &str,
) -> Result<(Vec<&'b RawValue>, bool), SourceError> {
    let shape = |message: &str| SourceError::Body {
        url: url.to_string(),
        message: message.to_string(),
    };
    let not_a_list = || shape(&format!("the answer is not a {what} (no `data` array)"));
    let raw: RawPage<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) if e.is_data() => return Err(not_a_list()),
        Err(e) => return Err(shape(&format!("invalid JSON: {e}"))),
    };
    let data = raw.data.ok_or_else(not_a_list)?;
    let has_more = match raw.has_more {
        Some(Value::Bool(b)) => b,
        None | Some(Value::Null) => false,
        Some(_) => return Err(shape("`has_more` is not a boolean")),
    };
    Ok((data, has_more))
}

/// Reads a page of a job's events or checkpoints: each element kept whole when it is an object
/// with a usable id (the cursor), skipped otherwise.
pub(in crate::source) fn parse_items(url: &str, body: &[u8]) -> Result<ItemsPage, SourceError> {
    let (data, has_more) = list_data(url, body, "list")?;
    let mut page = ItemsPage {
        has_more,
        ..ItemsPage::default()
    };
    for item in data {
        let value: Option<Value> = serde_json::from_str(item.get()).ok();
        let id = value
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .filter(|id| super::super::job::check_id(id).is_ok())
            .map(str::to_string);
        match (value, id) {
            (Some(v), Some(id)) if v.is_object() => {
                page.last_id = Some(id);
                page.items.push(v);
            }
            _ => page.skipped += 1,
        }
    }
    Ok(page)
}

/// The elements of a list, each read on its own into `page` (a malformed one is reported in
/// `skipped`). `id_key` names each element's id field, which is also the cursor of
/// `after`-paged lists.
fn read_elements(
    page: &mut Page,
    data: Vec<&RawValue>,
    id_key: &str,
    normalise: &dyn Fn(Value) -> Result<Job, JobParseError>,
) {
    for item in data {
        // The id alone, even when the rest of the element is unreadable: it is the cursor.
        let id = serde_json::from_str::<serde_json::Map<String, Value>>(item.get())
            .ok()
            .and_then(|m| m.get(id_key).and_then(Value::as_str).map(str::to_string));
        if id.is_some() {
            page.last_id.clone_from(&id);
        }
        let parsed = serde_json::from_str::<Value>(item.get())
            .map_err(|e| JobParseError::Unreadable(inert::excerpt(&e.to_string(), 120)))
            .and_then(normalise);
        match parsed {
            Ok(job) => page.jobs.push(job),
            Err(e) => page.skipped.push((id, e)),
        }
    }
}

/// Reads an OpenAI-shaped list page (`{data, has_more}`); elements that are not jobs are
/// reported in `skipped`, not fatal.
pub(in crate::source) fn parse_page(
    url: &str,
    body: &[u8],
    normalise: &dyn Fn(Value) -> Result<Job, JobParseError>,
) -> Result<Page, SourceError> {
    let (data, has_more) = list_data(url, body, "job list")?;
    let mut page = Page {
        has_more,
        ..Page::default()
    };
    read_elements(&mut page, data, "id", normalise);
    Ok(page)
}

/// The shape of a list answer that pages by token.
pub(in crate::source) struct TokenList<'a> {
    /// The array's key (`"tuningJobs"`), or `None` for a bare array.
    pub array: Option<&'a str>,
    /// The key of the next page's token (`"nextPageToken"`, `"nextToken"`).
    pub token: &'a str,
    /// The key of each element's id, for error reports.
    pub id: &'a str,
}

/// Reads a page of a list that pages by token (or not at all): the array under `shape.array`
/// (a missing one is an empty page, as Google's APIs leave it out), and the next token as the
/// cursor (`last_id`). An empty or missing token is the last page.
pub(in crate::source) fn parse_token_page(
    url: &str,
    body: &[u8],
    shape: &TokenList<'_>,
    normalise: &dyn Fn(Value) -> Result<Job, JobParseError>,
) -> Result<Page, SourceError> {
    let bad = |message: String| SourceError::Body {
        url: url.to_string(),
        message,
    };
    let what = shape.array.unwrap_or("job list");
    let invalid = |e: serde_json::Error, not: &str| {
        if e.is_data() {
            bad(format!("the answer is not a {what} ({not})"))
        } else {
            bad(format!("invalid JSON: {e}"))
        }
    };
    let mut page = Page::default();
    match shape.array {
        None => {
            let data: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| invalid(e, "not an array"))?;
            read_elements(&mut page, data, shape.id, normalise);
        }
        Some(key) => {
            let top: std::collections::HashMap<String, Box<RawValue>> =
                serde_json::from_slice(body).map_err(|e| invalid(e, "not an object"))?;
            let token = match top.get(shape.token).map(|t| serde_json::from_str(t.get())) {
                None | Some(Ok(Value::Null)) => None,
                Some(Ok(Value::String(t))) if t.is_empty() => None,
                Some(Ok(Value::String(t)))
                    if t.len() <= 4096 && !t.chars().any(char::is_control) =>
                {
                    Some(t)
                }
                Some(_) => return Err(bad(format!("`{}` is not a page token", shape.token))),
            };
            if let Some(array) = top.get(key) {
                let data: Option<Vec<&RawValue>> = serde_json::from_str(array.get())
                    .map_err(|e| invalid(e, &format!("`{key}` is not an array")))?;
                read_elements(&mut page, data.unwrap_or_default(), shape.id, normalise);
            }
            // The cursor of a token-paged list is the token, not an element's id.
            page.last_id = token;
        }
    }
    if shape.array.is_none() {
        page.last_id = None;
    }
    page.has_more = page.last_id.is_some();
    Ok(page)
}
