//! The small rules [`super::validate`] applies key by key (names, one secret source, duration
//! ranges, environment variable names), and where each error is located.

use super::locate::locate;
use super::validate::Validator;
use super::{ConfigError, DURATION_RANGES, Dur};

impl Validator<'_> {
    pub(super) fn name(&self, table: &str, i: usize, name: &str) -> Result<(), ConfigError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(())
        } else {
            Err(self.at(
                table,
                i,
                "name",
                format!("{table} name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
            ))
        }
    }

    pub(super) fn one_secret(
        &self,
        table: &str,
        i: usize,
        keys: &[(&str, bool)],
        required: bool,
    ) -> Result<(), ConfigError> {
        let set: Vec<&str> = keys.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect();
        if set.len() > 1 {
            return Err(self.at(
                table,
                i,
                set[1],
                format!("set only one of `{}`", set.join("`, `")),
            ));
        }
        if required && set.is_empty() {
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            return Err(self.at(
                table,
                i,
                "name",
                format!("{table} needs one of `{}`", names.join("`, `")),
            ));
        }
        Ok(())
    }

    /// Refuses a duration outside its documented range ([`DURATION_RANGES`]).
    pub(super) fn within(
        &self,
        table: &str,
        i: usize,
        key: &str,
        d: Dur,
    ) -> Result<(), ConfigError> {
        match out_of_range(key, d) {
            Some(message) => Err(self.at(table, i, key, message)),
            None => Ok(()),
        }
    }

    /// [`Validator::within`] for a key of `[daemon]`.
    pub(super) fn daemon_within(&self, key: &str, d: Dur) -> Result<(), ConfigError> {
        match out_of_range(key, d) {
            Some(message) => Err(self.daemon_at(key, message)),
            None => Ok(()),
        }
    }

    /// `*_env` must name an environment variable; a value that is not a name (a key pasted in
    /// by mistake) is refused without being echoed.
    pub(super) fn env_name(
        &self,
        table: &str,
        i: usize,
        key: &str,
        name: Option<&str>,
    ) -> Result<(), ConfigError> {
        let Some(name) = name else { return Ok(()) };
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            return Ok(());
        }
        Err(self.at(
            table,
            i,
            key,
            format!(
                "`{key}` must name an environment variable (letters, digits and _), like \
                 OPENAI_API_KEY; its value is not shown, in case it is the secret itself"
            ),
        ))
    }

    /// An error located at `key` of the single `[table]` (`[inference_prices]`).
    pub(super) fn table_at(&self, table: &str, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: super::locate::locate_in_table(self.text, table, key).unwrap_or(1),
            message,
        }
    }

    /// An error located at `key` of `[daemon]`.
    pub(super) fn daemon_at(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: super::locate::locate_in_table(self.text, "daemon", key).unwrap_or(1),
            message,
        }
    }

    /// Whether the `i`-th `[[table]]` sets `key` on a line of its own.
    pub(super) fn has_key(&self, table: &str, i: usize, key: &str) -> bool {
        let header = locate(self.text, table, i, "\u{0}");
        locate(self.text, table, i, key).is_some_and(|line| Some(line) != header)
    }

    /// An error located at `key` inside the `i`-th `[[table]]` (or at its header).
    pub(super) fn at(&self, table: &str, i: usize, key: &str, message: String) -> ConfigError {
        let line = locate(self.text, table, i, key).unwrap_or(1);
        let message = if message.contains(&format!("`{key}`")) {
            message
        } else {
            format!("key `{key}`: {message}")
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            message,
        }
    }
}

/// Why `d` is outside `key`'s documented range, if it is.
fn out_of_range(key: &str, d: Dur) -> Option<String> {
    let (_, min, max) = DURATION_RANGES.iter().find(|(k, _, _)| *k == key)?;
    (d.0 < *min || d.0 > *max).then(|| {
        format!(
            "`{key}` = \"{d}\" is outside its range, {} to {}",
            Dur(*min),
            Dur(*max)
        )
    })
}
