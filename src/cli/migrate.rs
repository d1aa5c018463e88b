//! `tunewatch migrate --from SQLITE_PATH --to postgres://…`: moves an existing store to
//! PostgreSQL without losing history. The source is locked (no daemon may write it meanwhile)
//! and brought to the current schema; the copy commits only when every table's row count
//! matches.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{PgTarget, SafeUrl, Secret, parse_pg_url};
use crate::store::{InstanceLock, Store};

/// Why a migration did not happen: a sentence, and whether it was a usage mistake (exit 2).
#[derive(Debug)]
pub struct MigrateError {
    pub usage: bool,
    pub message: String,
}

/// Copies `from` into the PostgreSQL database `to` (with `password`); returns the report.
///
/// # Errors
/// [`MigrateError`] naming what is wrong; nothing is kept in the target then.
pub fn migrate(from: &Path, to: &str, password: Option<&Secret>) -> Result<String, MigrateError> {
    let usage = |message: String| MigrateError {
        usage: true,
        message,
    };
    let failed = |message: String| MigrateError {
        usage: false,
        message,
    };
    let url = parse_pg_url(to).map_err(|m| usage(format!("--to {m}")))?;
    if !from.is_file() {
        return Err(usage(format!(
            "--from {} is not a SQLite database file",
            from.display()
        )));
    }
    let _lock = InstanceLock::acquire(from).map_err(|e| failed(e.to_string()))?;
    let source = Store::open(from).map_err(|e| failed(e.to_string()))?;
    let target = PgTarget {
        url: SafeUrl(url),
        password: None,
    };
    let shown = target.to_string();
    let store = Store::open_at(
        crate::store::Location::Postgres(&target.url),
        password,
        false,
    )
    .map_err(|e| failed(e.to_string()))?;
    let copied = source
        .copy_into(&store)
        .map_err(|e| failed(e.to_string()))?;
    let mut out = String::new();
    let _ = writeln!(out, "copied {} to {shown}", from.display());
    let _ = writeln!(
        out,
        "  {:<18} {:>10} {:>10}",
        "TABLE", "SQLITE", "POSTGRESQL"
    );
    for c in &copied {
        let _ = writeln!(
            out,
            "  {:<18} {:>10} {:>10}",
            c.table, c.source_rows, c.target_rows
        );
    }
    let _ = writeln!(
        out,
        "every count matches. Next: set state_db = \"{to}\" and one of state_db_password_env, \
         _file or _credential in the config, and start the daemons; keep {} until they run",
        from.display()
    );
    Ok(out)
}

/// `migrate --from PATH --to URL [--password-file FILE]` (else `$PGPASSWORD`).
///
/// # Errors
/// [`super::Failure`]: exit 2 for a usage mistake, 1 when the copy failed.
pub fn run(
    from: &std::path::Path,
    to: &str,
    password_file: Option<std::path::PathBuf>,
) -> Result<u8, super::Failure> {
    use super::Failure;
    let password = match password_file {
        Some(path) => Some(crate::config::Secret::new(
            std::fs::read_to_string(&path)
                .map_err(|e| Failure {
                    code: 2,
                    message: format!("cannot read --password-file {}: {e}", path.display()),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        )),
        None => std::env::var("PGPASSWORD")
            .ok()
            .map(crate::config::Secret::new),
    };
    let report = migrate(from, to, password.as_ref()).map_err(|e| Failure {
        code: if e.usage { 2 } else { 1 },
        message: e.message,
    })?;
    print!("{report}");
    Ok(0)
}
