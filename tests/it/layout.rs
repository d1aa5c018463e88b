//! The layout's rules, read from the source: no file over 600 lines, no function over 80 (unless
//! a comment above it says "Long by design" and why), no arrow back up between the rooms, no
//! engine test outside the engines, no event-type literal compared outside `model`.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}

/// The text before a file's unit tests (`#[cfg(test)]` modules), and a file of tests is none.
fn production(name: &str, text: &str) -> String {
    if name.ends_with("tests.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[test]
fn no_file_is_over_600_lines() {
    let long: Vec<String> = all()
        .iter()
        .filter(|(_, t)| t.lines().count() > 600)
        .map(|(n, t)| format!("{n}: {} lines", t.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over 600 lines: {long:?}");
}

/// Code without string and char literals or comments, for brace counting.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal ('{', '\n') is skipped; a lifetime is kept as it is.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn no_function_is_over_80_lines_without_a_reason() {
    let mut long = Vec::new();
    for (name, text) in all() {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let trimmed = lines[i].trim_start();
            let is_fn = !trimmed.starts_with("//")
                && (trimmed.starts_with("fn ")
                    || trimmed.starts_with("pub fn ")
                    || trimmed.starts_with("async fn ")
                    || trimmed.starts_with("pub async fn ")
                    || trimmed.starts_with("pub(crate) fn ")
                    || trimmed.starts_with("pub(super) fn ")
                    || trimmed.starts_with("pub(crate) async fn ")
                    || trimmed.starts_with("pub(super) async fn ")
                    || trimmed.starts_with("const fn ")
                    || trimmed.starts_with("pub const fn "));
            if !is_fn {
                i += 1;
                continue;
            }
            let (mut depth, mut started, mut j) = (0_i32, false, i);
            while j < lines.len() {
                let code = code_of(lines[j]);
                for c in code.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            started = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (started && depth <= 0) || (!started && code.trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            let reason = lines[i.saturating_sub(3)..i]
                .iter()
                .any(|l| l.contains("Long by design"));
            if started && j - i + 1 > 80 && !reason {
                long.push(format!("{name}:{} {} lines", i + 1, j - i + 1));
            }
            i = if started { j + 1 } else { i + 1 };
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:?}");
}

/// Which rooms a room must not import (`crate::ROOM`), in its production code.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "model/",
        &[
            "cli",
            "config",
            "demo",
            "http",
            "insight",
            "notify",
            "pipeline",
            "run",
            "source",
            "store",
            "telemetry",
            "event",
            "clock",
            "inert",
            "diff",
            "daemon",
            "web",
        ],
    ),
    (
        "pipeline/",
        &[
            "store",
            "run",
            "cli",
            "http",
            "demo",
            "daemon",
            "leader",
            "dispatch",
            "scheduler",
        ],
    ),
    (
        "store/",
        &[
            "pipeline", "diff", "insight", "config", "run", "cli", "http", "notify",
        ],
    ),
    (
        "source/",
        &["store", "run", "cli", "http", "notify", "demo"],
    ),
    ("notify/", &["store", "run", "cli", "http", "demo"]),
    ("insight/", &["store", "run", "cli", "http", "demo"]),
];

#[test]
fn no_room_imports_a_room_above_it() {
    let mut arrows = Vec::new();
    for (name, text) in all() {
        let code = production(&name, &text);
        for (room, banned) in FORBIDDEN {
            if !name.starts_with(room) {
                continue;
            }
            for b in *banned {
                for needle in [format!("crate::{b}::"), format!("crate::{b};")] {
                    if let Some(line) = code
                        .lines()
                        .find(|l| l.contains(&needle) && !l.trim_start().starts_with("//"))
                    {
                        arrows.push(format!("{name} imports {b}: {}", line.trim()));
                    }
                }
            }
        }
    }
    assert!(arrows.is_empty(), "arrows back up: {arrows:#?}");
}

#[test]
fn the_engine_is_asked_only_where_it_is_chosen() {
    let found: Vec<String> = all()
        .iter()
        .filter(|(n, _)| !n.starts_with("config/") && !n.starts_with("store/postgres"))
        .filter(|(_, t)| t.contains("is_postgres()"))
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        found.is_empty(),
        "is_postgres() outside config and store/postgres: {found:?}"
    );
}

#[test]
fn no_event_type_literal_is_compared_outside_the_model() {
    let prefixes = ["fine_tuning.", "batch.", "model.", "tunewatch."];
    let mut found = Vec::new();
    for (name, text) in all() {
        if name.starts_with("model/") {
            continue;
        }
        for (n, line) in production(&name, &text).lines().enumerate() {
            let compared = line.contains("== \"")
                || line.contains("!= \"")
                || line.contains("starts_with(\"")
                || line.trim_start().starts_with('"') && line.contains("\" =>");
            if compared && prefixes.iter().any(|p| line.contains(&format!("\"{p}"))) {
                found.push(format!("{name}:{} {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "event types compared as strings: {found:#?}"
    );
}
