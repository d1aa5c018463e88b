//! Validation of each `[[source]]`: the keys of its kind, ranges, secrets named once each;
//! returns the typed [`SourceConfig`].

use super::raw::{RawSource, SourceKind, Watch};
use super::validate::{DEFAULT_AZURE_API_VERSION, Validator};
use super::{ConfigError, Dur, InsightConfig, SafeUrl, SourceConfig};

impl Validator<'_> {
    /// Keys that only some kinds take: set for another kind, they are refused with their line
    /// rather than silently ignored.
    fn kind_keys(&self, i: usize, s: &RawSource) -> Result<(), ConfigError> {
        self.foreign_keys(i, s)?;
        let watch = s.watch.clone().unwrap_or_else(|| s.kind.default_watch());
        if watch.is_empty() {
            return Err(self.at(
                "source",
                i,
                "watch",
                "`watch` is empty; name \"fine_tuning\", \"batches\" or both".into(),
            ));
        }
        for w in [Watch::FineTuning, Watch::Batches, Watch::Models] {
            if watch.contains(&w) && !s.kind.can_watch(w) {
                let (word, api) = match w {
                    Watch::FineTuning => ("fine_tuning", "fine-tuning"),
                    Watch::Batches => ("batches", "batch"),
                    Watch::Models => ("models", "model list"),
                };
                return Err(self.at(
                    "source",
                    i,
                    "watch",
                    format!(
                        "`watch` \"{word}\": kind = \"{}\" has no {api} API",
                        s.kind.name()
                    ),
                ));
            }
        }
        if !(s.batch_failed_ratio.is_finite() && (0.0..=1.0).contains(&s.batch_failed_ratio)) {
            return Err(self.at(
                "source",
                i,
                "batch_failed_ratio",
                format!(
                    "batch_failed_ratio {} is outside 0..=1 (a share: 0.01 is 1 %)",
                    s.batch_failed_ratio
                ),
            ));
        }
        if let Some(v) = &s.api_version
            && (v.is_empty()
                || v.len() > 40
                || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(self.at(
                "source",
                i,
                "api_version",
                format!("api_version {v:?} is not a version like \"2024-10-21\""),
            ));
        }
        Ok(())
    }

    /// One `[[source]]`, checked and typed.
    pub(super) fn source(&self, i: usize, s: &RawSource) -> Result<SourceConfig, ConfigError> {
        let idle = s
            .idle_poll_interval
            .unwrap_or_else(|| super::raw_source::default_idle_poll_interval(s.poll_interval));
        self.name("source", i, &s.name)?;
        if self.file.sources[..i].iter().any(|o| o.name == s.name) {
            return Err(self.at(
                "source",
                i,
                "name",
                format!("duplicate source name {:?}", s.name),
            ));
        }
        self.source_secrets(i, s)?;
        if let Some(base) = &s.api_base
            && !matches!(base.scheme(), "http" | "https")
        {
            return Err(self.at(
                "source",
                i,
                "api_base",
                format!("api_base {base} is not an http(s) URL"),
            ));
        }
        self.kind_keys(i, s)?;
        self.source_ranges(i, s, idle)?;
        let auth = self.auth(i, s)?;
        let scope = self.scope(i, s)?;
        let evaluate = self.evaluate(i, s)?;
        Ok(SourceConfig {
            name: s.name.clone(),
            kind: s.kind,
            api_base: self.api_base(i, s)?,
            api_version: api_version(s),
            auth,
            scope,
            organization: s.organization.clone(),
            project: s.project.clone().filter(|_| s.kind == SourceKind::Openai),
            poll_interval: s.poll_interval,
            idle_poll_interval: idle,
            webhook_secret: s.webhook_secret(),
            full_scan_every: s.full_scan_every,
            stall_after: s.stall_after,
            page_size: s.page_size,
            connect_timeout: s.connect_timeout,
            request_timeout: s.request_timeout,
            failing_after: s.failing_after,
            max_retries: s.max_retries,
            max_pages: s.max_pages,
            watch: watch(s),
            batch_failed_ratio: s.batch_failed_ratio,
            models_interval: s.models_interval,
            retire_warn: retire_warn(s),
            evaluate,
            insight: InsightConfig {
                enabled: s.insight,
                metrics_interval: s.metrics_interval,
                checkpoints: s.checkpoints,
                progress_marks: {
                    let mut marks = s.progress_marks.clone();
                    marks.sort_unstable();
                    marks.dedup();
                    marks
                },
                overfit_tolerance: s.overfit_tolerance,
                overfit_patience: s.overfit_patience,
            },
        })
    }

    /// Each credential named once (an `_env`, a `_file` or a `_credential`), by a valid name.
    fn source_secrets(&self, i: usize, s: &RawSource) -> Result<(), ConfigError> {
        // Each family names one secret: at most one of its `_env`, `_file`, `_credential`.
        for family in [
            "api_key",
            "google_credentials",
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "webhook_secret",
        ] {
            let keys = ["env", "file", "credential"].map(|w| format!("{family}_{w}"));
            let set: Vec<(&str, bool)> = keys
                .iter()
                .map(|k| (k.as_str(), self.has_key("source", i, k)))
                .collect();
            self.one_secret("source", i, &set, false)?;
        }
        for (key, name) in [
            ("api_key_env", s.api_key_env.as_deref()),
            (
                "google_credentials_env",
                s.google_credentials_env.as_deref(),
            ),
            ("aws_access_key_id_env", s.aws_access_key_id_env.as_deref()),
            (
                "aws_secret_access_key_env",
                s.aws_secret_access_key_env.as_deref(),
            ),
            ("aws_session_token_env", s.aws_session_token_env.as_deref()),
            ("webhook_secret_env", s.webhook_secret_env.as_deref()),
        ] {
            self.env_name("source", i, key, name)?;
        }
        Ok(())
    }

    /// Every number and duration of a source in its range.
    fn source_ranges(&self, i: usize, s: &RawSource, idle: Dur) -> Result<(), ConfigError> {
        for (key, d) in [
            ("poll_interval", s.poll_interval),
            ("idle_poll_interval", idle),
            ("stall_after", s.stall_after),
            ("full_scan_every", s.full_scan_every),
            ("metrics_interval", s.metrics_interval),
            ("models_interval", s.models_interval),
            ("connect_timeout", s.connect_timeout),
            ("request_timeout", s.request_timeout),
        ] {
            self.within("source", i, key, d)?;
        }
        for lead in &s.retire_warn {
            self.within("source", i, "retire_warn", *lead)?;
        }
        for (key, value, most) in [
            ("max_pages", u64::from(s.max_pages), 100_000),
            ("overfit_patience", u64::from(s.overfit_patience), 1000),
            ("page_size", u64::from(s.page_size), 100),
        ] {
            if !(1..=most).contains(&value) {
                return Err(self.at(
                    "source",
                    i,
                    key,
                    format!("{key} {value} is outside 1..={most}"),
                ));
            }
        }
        if idle < s.poll_interval {
            return Err(self.at(
                "source",
                i,
                "idle_poll_interval",
                format!(
                    "idle_poll_interval ({}) is shorter than poll_interval ({})",
                    idle, s.poll_interval
                ),
            ));
        }
        if s.failing_after == 0 {
            return Err(self.at(
                "source",
                i,
                "failing_after",
                "`failing_after` must be at least 1".into(),
            ));
        }
        if let Some(m) = s.progress_marks.iter().find(|m| !(1..=99).contains(*m)) {
            return Err(self.at(
                "source",
                i,
                "progress_marks",
                format!("progress mark {m} is outside 1..=99 (percent)"),
            ));
        }
        if !(s.overfit_tolerance.is_finite()
            && s.overfit_tolerance > 0.0
            && s.overfit_tolerance <= 10.0)
        {
            return Err(self.at(
                "source",
                i,
                "overfit_tolerance",
                format!(
                    "overfit_tolerance {} is outside 0..=10 (a fraction: 0.10 is 10 %)",
                    s.overfit_tolerance
                ),
            ));
        }
        Ok(())
    }

    /// `api_base`, or the kind's default.
    fn api_base(&self, i: usize, s: &RawSource) -> Result<SafeUrl, ConfigError> {
        Ok(match (&s.api_base, s.kind.default_api_base(s)) {
            (Some(base), _) => base.clone(),
            (None, Some(default)) => SafeUrl(url::Url::parse(&default).map_err(|e| {
                self.at(
                    "source",
                    i,
                    "kind",
                    format!("the default api_base {default} is not a URL ({e}); set api_base"),
                )
            })?),
            (None, None) => {
                return Err(self.at(
                    "source",
                    i,
                    "kind",
                    format!(
                        "a {} source needs `api_base` (https://RESOURCE.openai.azure.com/openai)",
                        s.kind.name()
                    ),
                ));
            }
        })
    }
}

/// Azure's `api-version` (its default when unset); none for other kinds.
fn api_version(s: &RawSource) -> Option<String> {
    (s.kind == SourceKind::AzureOpenai).then(|| {
        s.api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_string())
    })
}

/// What the source watches, each once (the kind's default when unset).
fn watch(s: &RawSource) -> Vec<Watch> {
    let mut w = Vec::new();
    for x in &s.watch.clone().unwrap_or_else(|| s.kind.default_watch()) {
        if !w.contains(x) {
            w.push(*x);
        }
    }
    w
}

/// `retire_warn` in seconds, longest first, each once.
fn retire_warn(s: &RawSource) -> Vec<u64> {
    let mut leads: Vec<u64> = s.retire_warn.iter().map(|d| d.0.as_secs()).collect();
    leads.sort_unstable_by(|a, b| b.cmp(a));
    leads.dedup();
    leads
}
