//! A temp dir with a config pointing at the stand-ins, and the real binary run with it.

use std::path::PathBuf;
use std::time::Duration;

use super::api::Api;
use super::wait::wait_until;
use super::{API_KEY, HOOK_SECRET};

/// Which store a test's daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `state/tunewatch.db` in the test's directory.
    Sqlite,
    /// A new database on the test binary's throwaway PostgreSQL server.
    Postgres,
}

/// A temp dir with a config pointing at `api` and `hook`, key and secret in files.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub backend: Backend,
    /// The PostgreSQL URL (no password), for [`Backend::Postgres`].
    pub pg_url: Option<String>,
}

impl Setup {
    /// `extra` is appended to the config (more notifiers, routes…).
    pub fn new(api: &Api, hook_url: &str, extra: &str) -> Setup {
        Setup::on(Backend::Sqlite, api, hook_url, extra)
    }

    /// [`Setup::new`] on `backend`.
    pub fn on(backend: Backend, api: &Api, hook_url: &str, extra: &str) -> Setup {
        Setup::with_source_on(
            backend,
            &format!(
                r#"[[source]]
name = "prod"
kind = "openai"
api_base = "{api}"
api_key_file = "api.key"
poll_interval = "200ms"
idle_poll_interval = "200ms"
page_size = 2
max_retries = 2
"#,
                api = api.base()
            ),
            hook_url,
            extra,
        )
    }

    /// A config whose `[[source]]` block is `source` (it may name `api.key`, which holds
    /// [`API_KEY`]); `extra` is appended.
    pub fn with_source(source: &str, hook_url: &str, extra: &str) -> Setup {
        Setup::with_source_on(Backend::Sqlite, source, hook_url, extra)
    }

    /// [`Setup::with_source`] on `backend`.
    pub fn with_source_on(backend: Backend, source: &str, hook_url: &str, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (state_db, pg_url) = match backend {
            Backend::Sqlite => ("state_db = \"state/tunewatch.db\"".to_string(), None),
            Backend::Postgres => {
                let url = super::pg::server().database();
                std::fs::write(dir.path().join("pg.password"), super::pg::PG_PASSWORD).unwrap();
                (
                    format!("state_db = \"{url}\"\nstate_db_password_file = \"pg.password\""),
                    Some(url),
                )
            }
        };
        std::fs::write(dir.path().join("api.key"), format!("{API_KEY}\n")).unwrap();
        std::fs::write(dir.path().join("hook.secret"), HOOK_SECRET).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"[daemon]
{state_db}

{source}
[[notifier]]
name = "hook"
kind = "webhook"
url = "{hook_url}"
secret_file = "hook.secret"
retry_initial = "100ms"
retry_max = "400ms"
give_up_after = "1h"

[[route]]
events = ["fine_tuning.job.*"]
notifiers = ["hook"]
{extra}"#
            ),
        )
        .unwrap();
        Setup {
            dir,
            config,
            backend,
            pg_url,
        }
    }

    /// The store this setup's daemons use, opened for a test's own reads and writes.
    pub fn store(&self) -> tunewatch::store::Store {
        let config = self.load();
        let password = config.state_db_password().unwrap();
        tunewatch::store::Store::open_at(config.state_db.location(), password.as_ref(), false)
            .unwrap()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state/tunewatch.db")
    }

    pub fn load(&self) -> tunewatch::config::Config {
        tunewatch::config::Config::load(&self.config).unwrap()
    }

    /// Starts `tunewatch run` with stderr in `dir/log`: systemd's variables cleared, `env` set.
    pub fn spawn_run(&self, log: &str, env: &[(&str, &str)]) -> std::process::Child {
        let file = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let mut c = self.command(&["run"]);
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
        ] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap()
    }

    /// What a daemon started with [`Setup::spawn_run`] has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (with a deadline) until the daemon's log `log` contains `needle`; `what` names the
    /// wait in the failure message.
    pub async fn wait_for_log(&self, log: &str, needle: &str, what: &str) {
        wait_until(what, Duration::from_secs(15), || {
            self.log(log).contains(needle)
        })
        .await;
    }

    /// Waits (with a deadline) until the daemon logging to `log` has polled `n` more times:
    /// long enough for anything that should not happen to have happened.
    pub async fn wait_for_more_polls(&self, log: &str, n: usize) {
        let before = self.log(log).matches("polled").count();
        wait_until("more polls", Duration::from_secs(10), || {
            self.log(log).matches("polled").count() >= before + n
        })
        .await;
    }

    /// Rewrites the config file.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, f(text)).unwrap();
    }

    /// A command running the real binary with this config.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tunewatch"));
        c.arg("--config").arg(&self.config).args(args);
        // Wide, so that assertions see whole cells; the 80-column layout has tests of its own.
        c.env_remove("TUNEWATCH_CONFIG")
            .env("RUST_LOG", "debug")
            .env("COLUMNS", "300");
        c
    }
}
