//! Text tables that fit the terminal: columns keep their natural width while the row fits, and
//! the shrinkable ones give way (their cells cut with `…`) when it does not. Cells are shown
//! inert: control characters escaped, so no value can break a row or drive the terminal.

use std::fmt::Write as _;

use crate::inert::escape_control;

/// The width to fit: `$COLUMNS`, else the terminal's, else 80 (a pipe or a file).
pub fn terminal_width() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok());
    let from_tty = || terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
    from_env.or_else(from_tty).unwrap_or(80).max(40)
}

/// One column: its header, and how it gives way when the row is too wide.
pub struct Column {
    pub header: &'static str,
    /// 0: never cut (ids people copy, times); otherwise higher numbers are cut first.
    pub shrink: u8,
    /// Cut in the middle (`ft:gpt-4o-m…v2:Ab12Cd34`), for values whose end matters.
    pub middle: bool,
}

/// A column that is cut at its end when it must give way (`shrink` as in [`Column`]).
pub const fn col(header: &'static str, shrink: u8) -> Column {
    Column {
        header,
        shrink,
        middle: false,
    }
}

/// A column cut in its middle.
pub const fn col_middle(header: &'static str, shrink: u8) -> Column {
    Column {
        header,
        shrink,
        middle: true,
    }
}

/// A left-aligned table no wider than `width` (unless even the fixed columns are wider); the
/// last column is not padded.
pub fn table(columns: &[Column], rows: &[Vec<String>], width: usize) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_control(c).into_owned()).collect())
        .collect();
    let n = columns.len();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.header.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let gaps = 2 * n.saturating_sub(1);
    // Give way one character at a time: first the columns that matter least, the widest of them
    // first, down to 8 characters (or the header), so that no single column takes all the cuts.
    while widths.iter().sum::<usize>() + gaps > width {
        let widest = (0..n)
            .filter(|&i| columns[i].shrink > 0 && widths[i] > columns[i].header.len().max(8))
            .max_by_key(|&i| (columns[i].shrink, widths[i]));
        match widest {
            Some(i) => widths[i] -= 1,
            None => break,
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = if columns[i].middle {
                cut_middle(cell, widths[i])
            } else {
                cut(cell, widths[i])
            };
            if i + 1 == n {
                l.push_str(&cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.header).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `s` in at most `width` characters, cut with `…`.
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `s` in at most `width` characters, its middle replaced by `…`.
pub fn cut_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let head = keep / 2;
    let tail = keep - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &[col("A", 0), col("BB", 0), col("C", 1)],
            &[vec!["xxx".into(), "y".into(), "z z".into()]],
            80,
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z z\n");
    }

    #[test]
    fn shrinkable_columns_give_way_so_no_line_is_wider_than_the_terminal() {
        let long = "e".repeat(200);
        let t = table(
            &[
                col("ID", 0),
                col("JOB", 1),
                col_middle("MODEL", 2),
                col("ERROR", 3),
            ],
            &[vec![
                "1".into(),
                "ftjob-".repeat(8),
                "ft:gpt-4o-mini:acme::Ab12Cd34".into(),
                long,
            ]],
            80,
        );
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        assert!(t.contains(&"ftjob-".repeat(8)), "the job is cut last: {t}");
        assert!(t.contains("Ab12Cd34"), "a model keeps its end: {t}");
    }
}
