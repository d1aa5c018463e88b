//! Deterministic graders: `equals` (trimmed; `equals_ci`), `contains` / `not_contains` (a string
//! or a list), `regex`, `json` (parses), `json_schema`, `one_of`, `max_chars`, `similar`
//! (normalised edit similarity ≥ `threshold`). A case passes when every grader passes. A failing
//! grader says why in words that never quote the answer or the case.

use regex::Regex;
use serde_json::Value;

use super::schema::Schema;

/// The longest text the edit similarity compares (each side): its cost grows with the product.
const SIMILAR_CHARS: usize = 2000;
/// The size limit of a compiled regex (bytes of the automaton).
const REGEX_SIZE: usize = 1 << 20;

/// One grader, compiled.
#[derive(Debug, Clone)]
pub enum Grader {
    Equals(String),
    EqualsCi(String),
    Contains(Vec<String>),
    NotContains(Vec<String>),
    Regex(Regex),
    Json,
    JsonSchema(Box<Schema>),
    OneOf(Vec<String>),
    MaxChars(usize),
    Similar { text: String, threshold: f64 },
}

/// A case's graders.
#[derive(Debug, Clone)]
pub struct Graders(pub Vec<Grader>);

/// A grader that failed: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub grader: &'static str,
    pub reason: String,
}

impl Grader {
    pub fn name(&self) -> &'static str {
        match self {
            Grader::Equals(_) => "equals",
            Grader::EqualsCi(_) => "equals_ci",
            Grader::Contains(_) => "contains",
            Grader::NotContains(_) => "not_contains",
            Grader::Regex(_) => "regex",
            Grader::Json => "json",
            Grader::JsonSchema(_) => "json_schema",
            Grader::OneOf(_) => "one_of",
            Grader::MaxChars(_) => "max_chars",
            Grader::Similar { .. } => "similar",
        }
    }

    /// Whether `answer` passes; why not when it does not.
    pub fn check(&self, answer: &str) -> Result<(), String> {
        let trimmed = answer.trim();
        let fail = |why: String| Err(why);
        match self {
            Grader::Equals(want) if trimmed == want.trim() => Ok(()),
            Grader::Equals(_) => fail("the answer is not the expected text".into()),
            Grader::EqualsCi(want) if trimmed.to_lowercase() == want.trim().to_lowercase() => {
                Ok(())
            }
            Grader::EqualsCi(_) => fail("the answer is not the expected text (any case)".into()),
            Grader::Contains(all) => match all.iter().position(|w| !answer.contains(w.as_str())) {
                None => Ok(()),
                Some(i) => fail(format!("expected text #{} is missing", i + 1)),
            },
            Grader::NotContains(none) => {
                match none.iter().position(|w| answer.contains(w.as_str())) {
                    None => Ok(()),
                    Some(i) => fail(format!("forbidden text #{} is present", i + 1)),
                }
            }
            Grader::Regex(re) if re.is_match(answer) => Ok(()),
            Grader::Regex(_) => fail("the pattern does not match".into()),
            Grader::Json => match parse_json(answer) {
                Some(_) => Ok(()),
                None => fail("the answer is not JSON".into()),
            },
            Grader::JsonSchema(schema) => match parse_json(answer) {
                Some(v) => schema.check(&v),
                None => fail("the answer is not JSON".into()),
            },
            Grader::OneOf(options) if options.iter().any(|o| o.trim() == trimmed) => Ok(()),
            Grader::OneOf(_) => fail("the answer is none of the options".into()),
            Grader::MaxChars(n) => {
                let len = answer.chars().count();
                if len <= *n {
                    Ok(())
                } else {
                    fail(format!("{len} characters, more than {n}"))
                }
            }
            Grader::Similar { text, threshold } => {
                let s = similarity(trimmed, text.trim());
                if s >= *threshold {
                    Ok(())
                } else {
                    fail(format!("similarity {s:.2} below {threshold:.2}"))
                }
            }
        }
    }
}

/// The answer as JSON: whole, or inside one Markdown code fence.
fn parse_json(answer: &str) -> Option<Value> {
    let t = answer.trim();
    serde_json::from_str(t).ok().or_else(|| {
        let inner = t.strip_prefix("```")?.strip_suffix("```")?;
        let inner = inner.strip_prefix("json").unwrap_or(inner);
        serde_json::from_str(inner.trim()).ok()
    })
}

impl Graders {
    /// The graders of a case's `expect` object, compiled; why not, without quoting the case.
    ///
    /// # Errors
    /// A sentence naming the grader that is malformed.
    pub fn parse(expect: &Value) -> Result<Graders, String> {
        let obj = expect
            .as_object()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| "`expect` is not an object with at least one grader".to_string())?;
        let mut graders = Vec::new();
        for (key, value) in obj {
            if key == "threshold" {
                continue;
            }
            graders.push(grader(key, value, obj.get("threshold"))?);
        }
        if graders.is_empty() {
            return Err("`expect` has no grader".into());
        }
        Ok(Graders(graders))
    }

    /// The first grader that fails `answer`, if any.
    pub fn grade(&self, answer: &str) -> Option<Failed> {
        self.0.iter().find_map(|g| {
            g.check(answer).err().map(|reason| Failed {
                grader: g.name(),
                reason,
            })
        })
    }
}

fn strings(key: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{key}` lists something that is not a string"))
            })
            .collect(),
        _ => Err(format!("`{key}` is not a string or a list of strings")),
    }
}

fn grader(key: &str, v: &Value, threshold: Option<&Value>) -> Result<Grader, String> {
    let text = || {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("`{key}` is not a string"))
    };
    Ok(match key {
        "equals" => Grader::Equals(text()?),
        "equals_ci" => Grader::EqualsCi(text()?),
        "contains" => Grader::Contains(strings(key, v)?),
        "not_contains" => Grader::NotContains(strings(key, v)?),
        "one_of" => Grader::OneOf(strings(key, v)?),
        "regex" => {
            let pattern = text()?;
            let re = regex::RegexBuilder::new(&pattern)
                .size_limit(REGEX_SIZE)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => "`regex` compiles too large".to_string(),
                    _ => "`regex` does not compile".to_string(),
                })?;
            Grader::Regex(re)
        }
        "json" => match v {
            Value::Bool(true) => Grader::Json,
            _ => return Err("`json` must be true".into()),
        },
        "json_schema" => Grader::JsonSchema(Box::new(Schema::compile(v)?)),
        "max_chars" => Grader::MaxChars(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| "`max_chars` is not a whole number".to_string())?,
        ),
        "similar" => {
            let t = threshold.map_or(Some(0.8), Value::as_f64);
            match t {
                Some(t) if (0.0..=1.0).contains(&t) => Grader::Similar {
                    text: text()?,
                    threshold: t,
                },
                _ => return Err("`threshold` is not a number between 0 and 1".into()),
            }
        }
        other => {
            return Err(format!(
                "unknown grader {:?} (equals, equals_ci, contains, not_contains, regex, json, \
                 json_schema, one_of, max_chars, similar)",
                crate::inert::excerpt(other, 40)
            ));
        }
    })
}

/// Normalised edit similarity: 1 − Levenshtein distance / the longer length, over characters
/// (each side cut at [`SIMILAR_CHARS`]).
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().take(SIMILAR_CHARS).collect();
    let b: Vec<char> = b.chars().take(SIMILAR_CHARS).collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    1.0 - row[b.len()] as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn g(expect: Value) -> Graders {
        Graders::parse(&expect).unwrap()
    }

    #[test]
    fn each_grader_passes_and_fails() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"equals": "4"}), " 4\n", "5"),
            (json!({"equals_ci": "Paris"}), "PARIS", "Lyon"),
            (
                json!({"contains": ["refund", "7 days"]}),
                "a refund within 7 days",
                "a refund",
            ),
            (json!({"not_contains": "sorry"}), "Sure.", "I'm sorry"),
            (json!({"regex": "^[A-Z]{3}-\\d+$"}), "ABC-12", "abc-12"),
            (json!({"json": true}), "```json\n{\"a\": 1}\n```", "{a: 1}"),
            (
                json!({"json_schema": {"type": "object", "required": ["a"],
                                       "properties": {"a": {"type": "integer"}}}}),
                "{\"a\": 3}",
                "{\"a\": \"x\"}",
            ),
            (json!({"one_of": ["yes", "no"]}), "no", "maybe"),
            (json!({"max_chars": 5}), "short", "too long"),
            (
                json!({"similar": "the cat sat", "threshold": 0.8}),
                "the cat sat.",
                "a dog ran",
            ),
        ];
        for (expect, pass, fail) in cases {
            let graders = g(expect.clone());
            assert_eq!(graders.grade(pass), None, "{expect} should pass {pass:?}");
            let failed = graders.grade(fail).expect("fails");
            assert!(
                !failed.reason.contains(fail),
                "the reason quotes the answer"
            );
        }
    }

    #[test]
    fn malformed_graders_are_named() {
        for (expect, word) in [
            (json!({"regex": "(x"}), "regex"),
            (json!({"similar": "x", "threshold": 2}), "threshold"),
            (json!({"bogus": 1}), "unknown grader"),
            (json!({}), "expect"),
            (json!({"json": false}), "json"),
            (json!({"max_chars": -1}), "max_chars"),
        ] {
            let e = Graders::parse(&expect).unwrap_err();
            assert!(e.contains(word), "{e}");
        }
    }

    #[test]
    fn similarity_is_normalised() {
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("abc", "abc"), 1.0);
        assert!((similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-9);
    }
}
