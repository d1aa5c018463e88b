//! The `json_schema` grader: the part of JSON Schema that answers are graded with — `type`,
//! `properties`, `required`, `additionalProperties` (a boolean), `items`, `enum`, `const`,
//! `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`, `pattern`. A keyword
//! outside it is refused when the case is read (`check` names the line), never ignored: a schema
//! that silently checked less than it says would pass answers it should fail. No `$ref`, so no
//! schema can reach a file or the network, and none can recurse.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

/// The deepest schema compiled: answers are graded in bounded time.
const MAX_DEPTH: usize = 32;

/// A compiled schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    types: Vec<String>,
    properties: BTreeMap<String, Schema>,
    required: Vec<String>,
    additional: Option<bool>,
    items: Option<Box<Schema>>,
    one_of_values: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_len: Option<usize>,
    max_len: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    pattern: Option<Regex>,
}

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

impl Schema {
    /// Compiles `v`.
    ///
    /// # Errors
    /// A sentence naming the keyword that is not supported or malformed.
    pub fn compile(v: &Value) -> Result<Schema, String> {
        compile_at(v, 0)
    }

    /// Whether `v` fits; why not (a path and a rule, no value quoted).
    pub fn check(&self, v: &Value) -> Result<(), String> {
        self.check_at(v, "$")
    }

    fn check_at(&self, v: &Value, path: &str) -> Result<(), String> {
        if !self.types.is_empty() && !self.types.iter().any(|t| is_type(v, t)) {
            return Err(format!("{path} is not of type {}", self.types.join(" or ")));
        }
        if let Some(values) = &self.one_of_values
            && !values.contains(v)
        {
            return Err(format!("{path} is not one of the allowed values"));
        }
        if let Some(n) = v.as_f64()
            && (self.minimum.is_some_and(|m| n < m) || self.maximum.is_some_and(|m| n > m))
        {
            return Err(format!("{path} is out of range"));
        }
        if let Some(s) = v.as_str() {
            let len = s.chars().count();
            if self.min_len.is_some_and(|m| len < m) || self.max_len.is_some_and(|m| len > m) {
                return Err(format!("{path} has the wrong length"));
            }
            if self.pattern.as_ref().is_some_and(|p| !p.is_match(s)) {
                return Err(format!("{path} does not match its pattern"));
            }
        }
        if let Some(items) = v.as_array() {
            if self.min_items.is_some_and(|m| items.len() < m)
                || self.max_items.is_some_and(|m| items.len() > m)
            {
                return Err(format!("{path} has the wrong number of items"));
            }
            if let Some(schema) = &self.items {
                for (i, item) in items.iter().enumerate() {
                    schema.check_at(item, &format!("{path}[{i}]"))?;
                }
            }
        }
        if let Some(obj) = v.as_object() {
            if let Some(missing) = self.required.iter().find(|r| !obj.contains_key(*r)) {
                return Err(format!("{path}.{missing} is required"));
            }
            for (key, value) in obj {
                match self.properties.get(key) {
                    Some(schema) => schema.check_at(value, &format!("{path}.{key}"))?,
                    None if self.additional == Some(false) => {
                        return Err(format!("{path} has a property it may not have"));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|n| n.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn compile_at(v: &Value, depth: usize) -> Result<Schema, String> {
    if depth > MAX_DEPTH {
        return Err(format!("`json_schema` nests deeper than {MAX_DEPTH}"));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| "`json_schema` is not an object".to_string())?;
    let mut s = Schema::default();
    for (key, value) in obj {
        keyword(&mut s, key, value, depth)?;
    }
    Ok(s)
}

/// One keyword of a schema into `s`.
// Long by design: one arm per supported keyword, read as a table.
fn keyword(s: &mut Schema, key: &str, value: &Value, depth: usize) -> Result<(), String> {
    let size = |key: &str, v: &Value| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("`json_schema` {key} is not a whole number"))
    };
    match key {
        "$schema" | "title" | "description" | "$comment" | "examples" | "default" => {}
        "type" => {
            s.types = match value {
                Value::String(t) => vec![t.clone()],
                Value::Array(ts) => ts
                    .iter()
                    .map(|t| t.as_str().unwrap_or("").to_string())
                    .collect(),
                _ => Vec::new(),
            };
            if s.types.is_empty() || s.types.iter().any(|t| !TYPES.contains(&t.as_str())) {
                return Err("`json_schema` has an unknown type".into());
            }
        }
        "properties" => {
            let props = value
                .as_object()
                .ok_or_else(|| "`json_schema` properties is not an object".to_string())?;
            for (name, sub) in props {
                s.properties
                    .insert(name.clone(), compile_at(sub, depth + 1)?);
            }
        }
        "required" => {
            s.required = value
                .as_array()
                .and_then(|r| r.iter().map(|x| x.as_str().map(str::to_string)).collect())
                .ok_or_else(|| "`json_schema` required is not a list of names".to_string())?;
        }
        "additionalProperties" => {
            s.additional = Some(value.as_bool().ok_or_else(|| {
                "`json_schema` additionalProperties must be true or false".to_string()
            })?);
        }
        "items" => s.items = Some(Box::new(compile_at(value, depth + 1)?)),
        "enum" => {
            s.one_of_values = Some(
                value
                    .as_array()
                    .cloned()
                    .ok_or_else(|| "`json_schema` enum is not a list".to_string())?,
            );
        }
        "const" => s.one_of_values = Some(vec![value.clone()]),
        "minimum" | "maximum" => {
            let n = value
                .as_f64()
                .ok_or_else(|| format!("`json_schema` {key} is not a number"))?;
            if key == "minimum" {
                s.minimum = Some(n);
            } else {
                s.maximum = Some(n);
            }
        }
        "minLength" => s.min_len = Some(size(key, value)?),
        "maxLength" => s.max_len = Some(size(key, value)?),
        "minItems" => s.min_items = Some(size(key, value)?),
        "maxItems" => s.max_items = Some(size(key, value)?),
        "pattern" => {
            let p = value
                .as_str()
                .ok_or_else(|| "`json_schema` pattern is not a string".to_string())?;
            s.pattern = Some(
                regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|_| "`json_schema` pattern does not compile".to_string())?,
            );
        }
        other => {
            return Err(format!(
                "`json_schema` keyword {:?} is not supported (type, properties, required, \
                     additionalProperties, items, enum, const, minimum, maximum, minLength, \
                     maxLength, minItems, maxItems, pattern)",
                crate::inert::excerpt(other, 40)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subset_checks_what_it_says_and_refuses_what_it_cannot() {
        let s = Schema::compile(&json!({
            "type": "object", "required": ["label", "score"], "additionalProperties": false,
            "properties": {
                "label": {"enum": ["spam", "ham"]},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "pattern": "^[a-z]+$"}}
            }
        }))
        .unwrap();
        assert!(
            s.check(&json!({"label": "spam", "score": 0.5, "tags": ["a"]}))
                .is_ok()
        );
        for bad in [
            json!({"label": "eggs", "score": 0.5}),
            json!({"label": "spam"}),
            json!({"label": "spam", "score": 2}),
            json!({"label": "spam", "score": 0.1, "extra": 1}),
            json!({"label": "spam", "score": 0.1, "tags": ["A"]}),
            json!({"label": "spam", "score": 0.1, "tags": ["a", "b", "c"]}),
            json!([1]),
        ] {
            assert!(s.check(&bad).is_err(), "{bad}");
        }
        assert!(Schema::compile(&json!({"$ref": "file:///etc/passwd"})).is_err());
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"items": deep});
        }
        assert!(Schema::compile(&deep).is_err());
    }
}
