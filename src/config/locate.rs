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

/// The line of `key` inside the `index`-th `[[table]]`, or of that table's header.
///
/// Scans the text the way people write TOML (one `key = value` a line); the fallback to the
/// header keeps errors located even for inline tables.
pub(super) fn locate(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{table}]]");
    let mut seen = 0usize;
    let mut header_line = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            if header_line.is_some() {
                break;
            }
            if line.replace(' ', "") == header {
                if seen == index {
                    header_line = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if header_line.is_some()
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return Some(n + 1);
        }
    }
    header_line
}
