//! Every source's poll health: what `/healthz` answers and `status` agrees with.
//!
//! A source is healthy while it has polled successfully within three of its intervals (counting
//! from start-up until its first success); otherwise the reason names it and its last error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

#[derive(Debug, Clone)]
struct SourceHealth {
    interval: Duration,
    /// When the source's current run of health began: its last success, or when it was added.
    last_success_ms: Option<i64>,
    watched_since_ms: i64,
    last_error: Option<String>,
}

/// Every source's poll health, and this daemon's role among others on a shared store.
#[derive(Debug, Default)]
pub struct Health {
    sources: Mutex<BTreeMap<String, SourceHealth>>,
    role: Mutex<Role>,
}

/// Whether this daemon polls (leads) or leaves polling to another (follows).
#[derive(Debug, Clone, Default)]
struct Role {
    instance: String,
    /// `None`: one daemon per database (SQLite), which always polls.
    leading: Option<bool>,
    leader: Option<String>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceHealth>> {
        // Plain values only; a poisoned lock still holds a consistent map.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the watched sources (at start and on reload), keeping what is known of each.
    pub fn configure(&self, sources: &[(String, Duration)], now_ms: i64) {
        let mut map = self.lock();
        map.retain(|name, _| sources.iter().any(|(n, _)| n == name));
        for (name, interval) in sources {
            map.entry(name.clone())
                .and_modify(|h| h.interval = *interval)
                .or_insert(SourceHealth {
                    interval: *interval,
                    last_success_ms: None,
                    watched_since_ms: now_ms,
                    last_error: None,
                });
        }
    }

    /// Records this daemon's role on a shared store. Taking the lead restarts every source's
    /// grace of three intervals: it has not polled them before.
    pub fn set_role(&self, instance: &str, leading: bool, leader: Option<&str>, now_ms: i64) {
        let mut role = self.role.lock().unwrap_or_else(|p| p.into_inner());
        if leading && role.leading != Some(true) {
            for h in self.lock().values_mut() {
                h.last_success_ms = None;
                h.watched_since_ms = now_ms;
            }
        }
        *role = Role {
            instance: instance.to_string(),
            leading: Some(leading),
            leader: leader.map(str::to_string),
        };
    }

    /// The interval the source now polls at (short or idle): health allows three of them.
    pub fn expect_every(&self, source: &str, interval: Duration) {
        if let Some(h) = self.lock().get_mut(source) {
            h.interval = interval;
        }
    }

    pub fn success(&self, source: &str, now_ms: i64) {
        if let Some(h) = self.lock().get_mut(source) {
            h.last_success_ms = Some(now_ms);
            h.last_error = None;
        }
    }

    pub fn failure(&self, source: &str, error: &str) {
        if let Some(h) = self.lock().get_mut(source) {
            h.last_error = Some(error.to_string());
        }
    }

    /// `Ok(summary)` when healthy, `Err(reason)` naming the first failing source.
    pub fn check(&self, now_ms: i64) -> Result<serde_json::Value, String> {
        let role = self.role.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if role.leading == Some(false) {
            // A follower polls nothing: it is healthy while it can deliver, and says who polls.
            return Ok(
                json!({"status": "ok", "instance": role.instance, "leading": false,
                             "leader": role.leader}),
            );
        }
        let map = self.lock();
        let mut sources = Vec::new();
        for (name, h) in map.iter() {
            let since = h.last_success_ms.unwrap_or(h.watched_since_ms);
            let allowed = 3 * h.interval.as_millis() as i64;
            let age = now_ms - since;
            if age > allowed {
                let error = h
                    .last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                let what = match h.last_success_ms {
                    Some(_) => "has not polled successfully",
                    None => "has not polled successfully since start-up",
                };
                return Err(format!(
                    "source {name:?} {what} for {} (allowed: 3 intervals = {}){error}",
                    humantime::format_duration(Duration::from_secs((age / 1000) as u64)),
                    humantime::format_duration(Duration::from_millis(allowed as u64)),
                ));
            }
            sources.push(json!({
                "name": name,
                "last_success_ms": h.last_success_ms,
                "seconds_since_success": h.last_success_ms.map(|t| (now_ms - t) / 1000),
            }));
        }
        let mut summary = json!({"status": "ok", "sources": sources});
        if role.leading == Some(true) {
            summary["instance"] = json!(role.instance);
            summary["leading"] = json!(true);
            summary["leader"] = json!(role.instance);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_allows_three_intervals_then_names_the_source() {
        let h = Health::default();
        h.configure(&[("prod".into(), Duration::from_secs(60))], 0);
        assert!(h.check(179_000).is_ok(), "grace from start-up");
        let e = h.check(181_000).unwrap_err();
        assert!(
            e.contains("\"prod\" has not polled successfully since start-up"),
            "{e}"
        );
        h.success("prod", 200_000);
        assert!(h.check(300_000).is_ok());
        h.expect_every("prod", Duration::from_secs(300));
        assert!(
            h.check(1_000_000).is_ok(),
            "an idle source polls less often"
        );
        h.expect_every("prod", Duration::from_secs(60));
        h.failure("prod", "GET … answered HTTP 500");
        let e = h.check(381_000).unwrap_err();
        assert!(
            e.contains("for 3m 1s") && e.ends_with("last error: GET … answered HTTP 500"),
            "{e}"
        );
        h.configure(&[], 0);
        assert!(
            h.check(10_000_000).is_ok(),
            "a removed source no longer counts"
        );
    }
}
