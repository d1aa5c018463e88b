//! Config tests: every mistake one sentence with its line; the typed model as documented.
//! Compiled only under #[cfg(test)] (declared so in mod.rs).

use super::*;
use std::path::Path;
use std::time::Duration;

const GOOD: &str = r#"
[daemon]
state_db = "state/tunewatch.db"

[[source]]
name = "prod"
kind = "openai"
api_key_env = "OPENAI_API_KEY"
poll_interval = "90s"

[[notifier]]
name = "ops-hook"
kind = "webhook"
url = "https://hooks.example.com/tunewatch"
secret_env = "HOOK_SECRET"

[[notifier]]
name = "team-mail"
kind = "email"
smtp_host = "smtp.example.com"
from = "tunewatch <t@example.com>"
to = ["ml@example.com"]

[[route]]
events = ["fine_tuning.job.succeeded", "fine_tuning.job.*"]
notifiers = ["ops-hook"]

[[route]]
events = ["fine_tuning.job.failed"]
notifiers = ["team-mail"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/tw/config.toml"))
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn a_good_config_parses_with_defaults_and_resolved_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.daemon.state_db, Path::new("/etc/tw/state/tunewatch.db"));
    let s = &c.sources[0];
    assert_eq!(s.poll_interval.0, Duration::from_secs(90));
    assert_eq!(s.stall_after.0, Duration::from_secs(6 * 3600));
    assert_eq!(s.api_base.as_str(), "https://api.openai.com/v1");
    assert_eq!(
        s.auth,
        crate::config::SourceAuth::Key(SecretRef::Env("OPENAI_API_KEY".into()))
    );
    assert_eq!(c.notifiers[0].retry.initial, Duration::from_secs(30));
    assert_eq!(
        c.notifiers_for("fine_tuning.job.succeeded", "prod"),
        vec!["ops-hook"]
    );
    assert!(
        c.notifiers_for("tunewatch.source.failing", "prod")
            .is_empty()
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("poll_interval = \"90s\"", "poll_intervall = \"90s\"");
    let e = err(&text);
    assert!(e.starts_with("/etc/tw/config.toml, line 9:"), "{e}");
    assert!(e.contains("poll_intervall"), "{e}");
}

#[test]
fn a_bad_duration_is_named_with_its_key_and_line() {
    let e = err(&GOOD.replace("\"90s\"", "\"ninety\""));
    assert!(e.contains("line 9"), "{e}");
    assert!(e.contains("poll_interval"), "{e}");
    assert!(e.contains("invalid duration"), "{e}");
}

#[test]
fn a_wrong_type_is_named_with_its_line() {
    let e = err(&GOOD.replace("poll_interval = \"90s\"", "poll_interval = 90"));
    assert!(e.contains("line 9") && e.contains("poll_interval"), "{e}");
}

#[test]
fn a_bad_url_is_named_with_its_line() {
    let e = err(&GOOD.replace("https://hooks.example.com/tunewatch", "not a url"));
    assert!(e.contains("line 14") && e.contains("url"), "{e}");
}

#[test]
fn a_route_to_a_missing_notifier_is_refused_at_its_line() {
    let e = err(&GOOD.replace("notifiers = [\"ops-hook\"]", "notifiers = [\"pager\"]"));
    assert!(e.contains("line 26"), "{e}");
    assert!(e.contains("notifiers") && e.contains("\"pager\""), "{e}");
}

#[test]
fn a_route_to_a_missing_source_is_refused() {
    let text = GOOD.replace(
        "notifiers = [\"ops-hook\"]",
        "notifiers = [\"ops-hook\"]\nsources = [\"staging\"]",
    );
    let e = err(&text);
    assert!(e.contains("line 27") && e.contains("\"staging\""), "{e}");
}

#[test]
fn duplicate_names_are_refused_at_the_second() {
    let text = GOOD.replace("name = \"team-mail\"", "name = \"ops-hook\"");
    let e = err(&text);
    assert!(
        e.contains("line 18") && e.contains("duplicate notifier"),
        "{e}"
    );
    let text =
        format!("{GOOD}\n[[source]]\nname = \"prod\"\nkind = \"openai\"\napi_key_env = \"K\"\n");
    let e = err(&text);
    assert!(
        e.contains("line 33") && e.contains("duplicate source"),
        "{e}"
    );
}

#[test]
fn an_unknown_event_type_is_refused() {
    let e = err(&GOOD.replace("fine_tuning.job.succeeded", "job.succeeded"));
    assert!(
        e.contains("line 25") && e.contains("unknown event type"),
        "{e}"
    );
    let e = err(&GOOD.replace("fine_tuning.job.succeeded", "tunewatch.source.exploded"));
    assert!(e.contains("unknown event type"), "{e}");
}

#[test]
fn keys_of_another_kind_and_missing_required_keys_are_refused() {
    let e = err(&GOOD.replace(
        "secret_env = \"HOOK_SECRET\"",
        "secret_env = \"HOOK_SECRET\"\nsmtp_host = \"x\"",
    ));
    assert!(e.contains("line 16") && e.contains("smtp_host"), "{e}");
    let e = err(&GOOD.replace("url = \"https://hooks.example.com/tunewatch\"\n", ""));
    assert!(e.contains("needs a `url`"), "{e}");
    let e = err(&GOOD.replace("to = [\"ml@example.com\"]", "to = []"));
    assert!(e.contains("empty `to`"), "{e}");
    let e = err(&GOOD.replace("api_key_env = \"OPENAI_API_KEY\"\n", ""));
    assert!(e.contains("api_key_env") && e.contains("line 6"), "{e}");
}

#[test]
fn plaintext_smtp_is_refused_for_a_remote_host_unless_allowed() {
    let remote = GOOD.replace(
        "to = [\"ml@example.com\"]",
        "to = [\"ml@example.com\"]\ntls = \"none\"",
    );
    let e = err(&remote);
    assert!(
        e.contains("line 23") && e.contains("clear text to smtp.example.com"),
        "{e}"
    );
    parse(&remote.replace("tls = \"none\"", "tls = \"none\"\nallow_plaintext = true")).unwrap();
    parse(&remote.replace("smtp.example.com", "127.0.0.1")).unwrap();
    parse(&remote.replace("smtp.example.com", "localhost")).unwrap();
    assert!(is_loopback("[::1]") && !is_loopback("10.0.0.1"));
}

#[test]
fn email_addresses_and_credentials_are_checked() {
    let e = err(&GOOD.replace("tunewatch <t@example.com>", "not an address"));
    assert!(e.contains("line 21") && e.contains("`from`"), "{e}");
    let e = err(&GOOD.replace("ml@example.com", "ml at example"));
    assert!(e.contains("line 22") && e.contains("`to`"), "{e}");
    let e = err(&GOOD.replace("to = [", "username = \"tw\"\nto = ["));
    assert!(
        e.contains("line 22") && e.contains("needs both `username`"),
        "{e}"
    );
    parse(&GOOD.replace("to = [", "username = \"tw\"\npassword_env = \"P\"\nto = [")).unwrap();
}

#[test]
fn a_notifier_no_route_reaches_is_refused_at_its_line() {
    let text = GOOD.replace("notifiers = [\"team-mail\"]", "notifiers = [\"ops-hook\"]");
    let e = err(&text);
    assert!(
        e.contains("line 18")
            && e.contains("no [[route]] or [[digest]] names notifier \"team-mail\""),
        "{e}"
    );
}

#[test]
fn two_sources_for_one_secret_are_refused() {
    let e = err(&GOOD.replace(
        "secret_env = \"HOOK_SECRET\"",
        "secret_env = \"HOOK_SECRET\"\nsecret_file = \"hook.key\"",
    ));
    assert!(e.contains("only one of") && e.contains("line 16"), "{e}");
}

#[test]
fn no_source_is_refused() {
    let e = err("[daemon]\nstate_db = \"x.db\"\n");
    assert!(e.contains("no [[source]]"), "{e}");
}

#[test]
fn missing_secrets_are_named_without_values() {
    let c = parse(&GOOD.replace("OPENAI_API_KEY", "TW_TEST_SURELY_UNSET_VAR")).unwrap();
    let errors: Vec<String> = c.check_secrets().iter().map(|e| e.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("$TW_TEST_SURELY_UNSET_VAR is not set")),
        "{errors:?}"
    );
}

#[test]
fn secrets_are_read_from_files_and_never_debug_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "sk-very-secret\n").unwrap();
    let secret = SecretRef::File(path).resolve().unwrap();
    assert_eq!(secret.expose(), "sk-very-secret");
    assert!(!format!("{secret:?} {secret}").contains("very-secret"));
}

#[test]
fn readable_secret_files_and_configs_naming_them_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("api.key");
    std::fs::write(&key, "sk-x").unwrap();
    let config = dir.path().join("config.toml");
    let text = GOOD.replace(
        "api_key_env = \"OPENAI_API_KEY\"",
        "api_key_file = \"api.key\"",
    );
    std::fs::write(&config, &text).unwrap();
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set(&key, 0o600);
    set(&config, 0o640);
    assert!(
        Config::load(&config)
            .unwrap()
            .permission_warnings()
            .is_empty()
    );
    set(&key, 0o644);
    set(&config, 0o644);
    let w = Config::load(&config).unwrap().permission_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("names secret files and is readable by every user"),
        "{w:?}"
    );
    assert!(
        w[1].contains("api.key") && w[1].contains("mode 644"),
        "{w:?}"
    );
}

#[test]
fn a_bad_log_filter_is_refused() {
    let e = err(&GOOD.replace("[daemon]", "[daemon]\nlog_level = \"info,,=[\""));
    assert!(e.contains("log_level"), "{e}");
}

#[test]
fn route_patterns_match_exactly_or_by_prefix() {
    assert!(event_matches("fine_tuning.job.*", "fine_tuning.job.paused"));
    assert!(event_matches("*", "tunewatch.source.failing"));
    assert!(!event_matches(
        "fine_tuning.job.failed",
        "fine_tuning.job.failed2"
    ));
}

#[test]
fn the_example_config_parses_and_documents_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tunewatch.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::parse(&text, &path).unwrap();
    assert_eq!(c.sources[0].name, "prod");
    // Every `pub field:` of the config structs is mentioned (set or commented) in the example.
    let sources = [
        include_str!("raw.rs"),
        include_str!("raw_source.rs"),
        include_str!("raw_notifier.rs"),
        include_str!("evaluate.rs"),
        include_str!("alerting.rs"),
    ];
    for line in sources
        .iter()
        .flat_map(|s| s.split("#[cfg(test)]").next().unwrap().lines())
    {
        let l = line.trim();
        if let Some(field) = l
            .strip_prefix("pub ")
            .and_then(|r| r.split_once(':'))
            .map(|f| f.0)
            && !field.contains(' ')
            && ![
                "path",
                "daemon",
                "sources",
                "notifiers",
                "routes",
                "window",
                "zone",
                "daily",
            ]
            .contains(&field)
        {
            assert!(
                text.contains(&format!("{field} =")),
                "config/tunewatch.example.toml does not document `{field}`"
            );
        }
    }
}

#[test]
fn config_path_prefers_flag_then_default() {
    assert_eq!(config_path(Some("/x.toml".into())), Path::new("/x.toml"));
}

#[test]
fn a_postgres_state_db_is_not_a_path_and_takes_its_password_keys_and_leases() {
    let c = parse(&GOOD.replace(
        "state_db = \"state/tunewatch.db\"",
        "state_db = \"postgres://tw@db.internal:5433/tunewatch?sslmode=verify-full\"\n\
         state_db_password_file = \"pg.pw\"\nleader_lease = \"30s\"\ninstance = \"tw-a\"",
    ))
    .unwrap();
    let StateDb::Postgres(t) = &c.state_db else {
        panic!("{:?}", c.state_db)
    };
    assert_eq!(t.to_string(), "postgres://tw@db.internal:5433/tunewatch");
    assert_eq!(
        t.password,
        Some(SecretRef::File("/etc/tw/pg.pw".into())),
        "relative to the config"
    );
    assert_eq!(c.daemon.leader_lease.0, Duration::from_secs(30));
    assert_eq!(c.daemon.claim_lease.0, Duration::from_secs(120), "default");
    assert_eq!(instance_name(c.daemon.instance.as_deref()), "tw-a");
    let sqlite = parse(GOOD).unwrap();
    assert_eq!(
        sqlite.state_db,
        StateDb::Sqlite("/etc/tw/state/tunewatch.db".into())
    );
    assert!(instance_name(None).ends_with(&format!("-{}", std::process::id())));
}

#[test]
fn postgres_mistakes_are_one_sentence_with_their_line() {
    let pg = |extra: &str| {
        err(&GOOD.replace(
            "state_db = \"state/tunewatch.db\"",
            &format!("state_db = \"postgres://tw@db/tw\"\n{extra}"),
        ))
    };
    let e = err(&GOOD.replace(
        "state_db = \"state/tunewatch.db\"",
        "state_db = \"postgres://tw:s3cret@db/tw\"",
    ));
    assert!(
        e.contains("line 3") && e.contains("has a password in it") && !e.contains("s3cret"),
        "{e}"
    );
    let e = pg("leader_lease = \"1s\"");
    assert!(
        e.contains("line 4")
            && e.contains("`leader_lease` = \"1s\" is outside its range, 3s to 5m"),
        "{e}"
    );
    let e = pg("claim_lease = \"2h\"");
    assert!(
        e.contains("`claim_lease` = \"2h\" is outside its range"),
        "{e}"
    );
    let e = pg("state_db_password_env = \"A\"\nstate_db_password_file = \"b\"");
    assert!(e.contains("line 5") && e.contains("set only one of"), "{e}");
    let e = pg("instance = \"tw a\"");
    assert!(e.contains("`instance` must be"), "{e}");
    // PostgreSQL-only keys on a SQLite file are refused, not ignored.
    let e = err(&GOOD.replace(
        "state_db = \"state/tunewatch.db\"",
        "state_db = \"state/tunewatch.db\"\nstate_db_password_env = \"PGPASSWORD\"",
    ));
    assert!(
        e.contains("line 4") && e.contains("applies only to a PostgreSQL state_db"),
        "{e}"
    );
}
