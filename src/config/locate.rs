//! Where a mistake is: the line of a key in the config text, and toml's own errors turned into
//! one sentence with that line.

use std::path::Path;

use super::ConfigError;

/// Turns toml's multi-line report into one sentence with the line and the key.
pub(super) fn parse_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = line_of(text, span.start);
            let key = key_on_line(text, line);
            let message = match key {
                Some(k) if !message.contains(&format!("`{k}`")) => format!("key `{k}`: {message}"),
                _ => message,
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message,
            }
        }
        None => ConfigError::Whole {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The key assigned on a line (`key = value`), if the line is an assignment.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// The line of `key` inside the `index`-th `[[table]]`, or of that table's header (`key` not
/// in it). Read from the spans toml's own parser gives every key (`toml::Spanned`), so inline
/// tables, dotted keys and quoted keys are located like any other.
pub(super) fn locate(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let (_, tables) = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == table)?;
    let toml::de::DeValue::Array(items) = tables.get_ref() else {
        return None;
    };
    let item = items.get(index)?;
    let toml::de::DeValue::Table(entries) = item.get_ref() else {
        return None;
    };
    let found = entries
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, _)| k.span().start);
    Some(line_of(
        text,
        found.unwrap_or_else(|| header(text, item.span().start)),
    ))
}

/// The line of `key` inside the subtable `sub` (`[source.evaluate]`) of the `index`-th
/// `[[table]]`; `None` when the subtable or the key is not there.
pub(super) fn locate_sub(
    text: &str,
    table: &str,
    index: usize,
    sub: &str,
    key: &str,
) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let (_, tables) = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == table)?;
    let toml::de::DeValue::Array(items) = tables.get_ref() else {
        return None;
    };
    let toml::de::DeValue::Table(entries) = items.get(index)?.get_ref() else {
        return None;
    };
    let (_, inner) = entries.iter().find(|(k, _)| k.get_ref().as_ref() == sub)?;
    let toml::de::DeValue::Table(inner) = inner.get_ref() else {
        return None;
    };
    let (k, _) = inner.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
    Some(line_of(text, k.span().start))
}

/// The line of `key` in the `[table]` (a single table, `[daemon]`), or of its header.
pub(super) fn locate_in_table(text: &str, table: &str, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let (name, value) = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == table)?;
    let toml::de::DeValue::Table(entries) = value.get_ref() else {
        return None;
    };
    let at = entries
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map_or(name.span().start, |(k, _)| k.span().start);
    Some(line_of(text, at))
}

/// Where the `[[table]]` header of a table whose span starts at `start` is: there, or the last
/// `[[` before it when the span begins after the header.
fn header(text: &str, start: usize) -> usize {
    let start = start.min(text.len());
    if text[start..].trim_start().starts_with("[[") {
        start
    } else {
        text[..start].rfind("[[").unwrap_or(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_headers_are_found_by_their_spans() {
        let text = "[daemon]\nstate_db = \"x\"\n\n[[source]]\nname = \"a\"\n\n[[source]]\n\"name\" = \"b\"\nlabels = { purpose = \"t\" }\n";
        assert_eq!(locate(text, "source", 0, "name"), Some(5));
        assert_eq!(locate(text, "source", 1, "name"), Some(8));
        assert_eq!(locate(text, "source", 1, "labels"), Some(9));
        assert_eq!(locate(text, "source", 1, "kind"), Some(7), "the header");
        assert_eq!(locate(text, "source", 0, "kind"), Some(4), "the header");
        assert_eq!(locate(text, "source", 2, "name"), None);
    }
}
