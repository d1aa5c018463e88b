//! The cases file (JSONL, ≤ 5 MB, ≤ 10 000 cases, unique ids): each line a case with `messages`
//! or a `prompt` and what its answer must satisfy (`expect`). Read whole, checked whole: a bad
//! line is named by its number, and nothing of a case's text goes into the sentence.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::grade::{Grader, Graders};

/// The largest cases file read.
pub const MAX_BYTES: usize = 5 * 1024 * 1024;
/// The most cases a file may hold.
pub const MAX_CASES: usize = 10_000;
/// The longest case id.
const MAX_ID: usize = 200;

/// One chat message of a case.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One case: its id, the conversation sent, and its graders.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub messages: Vec<Message>,
    pub graders: Graders,
}

impl Case {
    /// Characters of the prompt (for the pre-flight estimate: about 4 per token).
    pub fn prompt_chars(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum()
    }
}

/// A cases file, read and checked.
#[derive(Debug, Clone)]
pub struct Cases {
    pub cases: Vec<Case>,
    /// SHA-256 of the file's bytes, hex: one evaluation per (source, job, cases file).
    pub hash: String,
}

/// Why a cases file cannot be used, with the line at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read the cases file: {0}")]
    Read(String),
    #[error("the cases file is {0} bytes, more than the 5 MB allowed")]
    TooLarge(usize),
    #[error("the cases file has more than {MAX_CASES} cases")]
    TooMany,
    #[error("the cases file has no case")]
    Empty,
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

/// Reads and checks the cases file at `path`.
///
/// # Errors
/// [`CasesError`] naming what is wrong and, for a bad case, its line.
pub fn load(path: &std::path::Path) -> Result<Cases, CasesError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| CasesError::Read(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CasesError::Read(e.to_string()))?;
    parse(&bytes)
}

/// Checks the bytes of a cases file.
///
/// # Errors
/// [`CasesError`] as for [`load`].
pub fn parse(bytes: &[u8]) -> Result<Cases, CasesError> {
    if bytes.len() > MAX_BYTES {
        return Err(CasesError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| CasesError::Line {
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1,
        message: "is not UTF-8".into(),
    })?;
    let mut cases = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| CasesError::Line {
            line: n + 1,
            message,
        };
        if cases.len() >= MAX_CASES {
            return Err(CasesError::TooMany);
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| bad(format!("is not a JSON object ({})", e.classify_word())))?;
        let case = case(&value).map_err(bad)?;
        if !ids.insert(case.id.clone()) {
            return Err(bad(format!(
                "the id {:?} is used twice",
                crate::inert::excerpt(&case.id, 60)
            )));
        }
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(CasesError::Empty);
    }
    Ok(Cases {
        cases,
        hash: hex(&Sha256::digest(bytes)),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// serde_json's error, named by its category only: the message could quote the line.
trait Classify {
    fn classify_word(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_word(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "wrong types",
            serde_json::error::Category::Eof => "it ends early",
        }
    }
}

/// One line's case, or why it is not one (without quoting its text).
fn case(value: &Value) -> Result<Case, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| "is not a JSON object".to_string())?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "id" | "messages" | "prompt" | "expect" | "metadata"
        ) {
            return Err(format!(
                "unknown key {:?} (a case has id, messages or prompt, expect)",
                crate::inert::excerpt(key, 40)
            ));
        }
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_ID => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(format!(
                "needs an `id` (a string of 1 to {MAX_ID} characters)"
            ));
        }
    };
    let messages = match (obj.get("messages"), obj.get("prompt")) {
        (Some(m), None) => messages(m)?,
        (None, Some(Value::String(p))) => vec![Message {
            role: "user".into(),
            content: p.clone(),
        }],
        (None, Some(_)) => return Err("`prompt` is not a string".into()),
        (Some(_), Some(_)) => return Err("has both `messages` and `prompt`; give one".into()),
        (None, None) => return Err("needs `messages` or a `prompt`".into()),
    };
    let expect = obj
        .get("expect")
        .ok_or_else(|| "needs `expect` (at least one grader)".to_string())?;
    let graders = Graders::parse(expect)?;
    Ok(Case {
        id,
        messages,
        graders,
    })
}

fn messages(m: &Value) -> Result<Vec<Message>, String> {
    let list = m
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| "`messages` is not a non-empty list".to_string())?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str);
            let content = m.get("content").and_then(Value::as_str);
            match (role, content) {
                (Some(r @ ("system" | "user" | "assistant" | "developer")), Some(c)) => {
                    Ok(Message {
                        role: r.to_string(),
                        content: c.to_string(),
                    })
                }
                _ => Err(format!(
                    "messages[{i}] needs a role (system, user, assistant, developer) and a \
                     string content"
                )),
            }
        })
        .collect()
}

/// The graders a file's cases use, by name, for `check`'s summary.
pub fn grader_names(cases: &Cases) -> std::collections::BTreeSet<&'static str> {
    cases
        .cases
        .iter()
        .flat_map(|c| c.graders.0.iter().map(Grader::name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_reads_and_a_bad_line_is_named_without_its_text() {
        let good = br#"{"id": "a", "prompt": "2+2?", "expect": {"equals": "4"}}

{"id": 7, "messages": [{"role": "user", "content": "hi"}], "expect": {"contains": ["hello", "hi"]}}
"#;
        let cases = parse(good).unwrap();
        assert_eq!(cases.cases.len(), 2);
        assert_eq!(cases.cases[1].id, "7");
        assert_eq!(cases.hash.len(), 64);

        let dup = b"{\"id\": \"a\", \"prompt\": \"x\", \"expect\": {\"json\": true}}\n{\"id\": \"a\", \"prompt\": \"SECRET PROMPT\", \"expect\": {\"json\": true}}\n";
        let e = parse(dup).unwrap_err().to_string();
        assert!(e.starts_with("line 2:") && e.contains("used twice"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");

        let bad_regex =
            b"{\"id\": \"r\", \"prompt\": \"x\", \"expect\": {\"regex\": \"(unclosed\"}}\n";
        let e = parse(bad_regex).unwrap_err().to_string();
        assert!(e.starts_with("line 1:") && e.contains("regex"), "{e}");

        let broken = b"{\"id\": \"a\", \"prompt\": \"SECRET\"\n";
        let e = parse(broken).unwrap_err().to_string();
        assert!(e.starts_with("line 1:") && !e.contains("SECRET"), "{e}");

        assert_eq!(parse(b"\n\n").unwrap_err(), CasesError::Empty);
        let big = vec![b' '; MAX_BYTES + 1];
        assert!(matches!(parse(&big), Err(CasesError::TooLarge(_))));
    }
}
