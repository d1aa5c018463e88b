//! The fine-tuned models of each source and their retirement dates (DESIGN.md, "Model
//! lifecycle"): a read of the model list is stored like a poll of jobs — a snapshot when a model
//! changed, its row updated — and raises `model.created`, `model.retirement_changed`,
//! `model.retiring` (once per `retire_warn` lead, the nearest only when several are crossed at
//! once) and `model.retired` (its date passed, or it left the list), each once, in the
//! transaction that stores what caused it. The first read of a source is its silent baseline.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::db::{Tx, params};
use super::events::{insert_event, next_seq};
use super::{Store, StoreError};
use crate::event::{Event, ModelFacts};
use crate::model::EventKind;
use crate::source::job::hex;
use crate::source::models::{Model, date_of};

/// What a model read (or a deadline check) needs besides the models.
pub struct ModelPoll<'a> {
    pub source: &'a str,
    /// Unix seconds, from the daemon's clock.
    pub now: i64,
    /// `retire_warn` in seconds, longest first.
    pub leads: &'a [u64],
    /// Names the notifiers an event of `(type, source)` goes to.
    pub route: crate::model::plan::Route<'a>,
}

/// One stored model, for `tunewatch models` and the status page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelRow {
    pub source: String,
    pub model_id: String,
    pub base: Option<String>,
    pub job_id: Option<String>,
    pub created_at: Option<i64>,
    pub retires_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub gone_at: Option<i64>,
}

impl ModelRow {
    /// Whole days from `now`'s day (UTC) to its retirement day.
    pub fn days_left(&self, now: i64) -> Option<i64> {
        self.retires_at.map(|r| days_between(now, r))
    }
}

/// Whole days from the day of `now` (UTC) to the day `at` starts.
pub fn days_between(now: i64, at: i64) -> i64 {
    (at - (now - now.rem_euclid(86_400))).div_euclid(86_400)
}

/// What the store keeps of a model between reads.
struct Known {
    hash: String,
    retires_at: Option<i64>,
    warned: Vec<u64>,
    retired_at: Option<i64>,
    gone_at: Option<i64>,
    base: Option<String>,
    job: Option<String>,
}

fn hash(model: &Model) -> String {
    let text = format!("{}|{:?}|{:?}", model.raw, model.retires_at, model.base);
    hex(&Sha256::digest(text.as_bytes()))
}

fn warned_text(w: &[u64]) -> String {
    w.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn warned_parse(text: &str) -> Vec<u64> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

impl Store {
    /// Whether a read of `source`'s model list is due at `now`: never read, or read
    /// `interval` seconds ago or more.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn models_due(&self, source: &str, now: i64, interval: i64) -> Result<bool, StoreError> {
        let last: Option<Option<i64>> = self
            .conn()
            .query_map(
                "SELECT last_read_at FROM model_reads WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .map_err(self.sql_error("reading when the models were read"))?
            .into_iter()
            .next();
        Ok(last.flatten().is_none_or(|t| now - t >= interval))
    }

    /// The model ids stored for `source`.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn model_ids(&self, source: &str) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .conn()
            .query_map(
                "SELECT model_id FROM models WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .map_err(self.sql_error("listing models"))?
            .into_iter()
            .collect())
    }

    /// Records a model read that failed (shown by `status`); the next one is due as before.
    ///
    /// # Errors
    /// [`StoreError`] when the row cannot be written.
    pub fn models_failed(&self, source: &str, error: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to record a model read"))?;
        self.fence(&tx)?;
        tx.execute(
            "INSERT INTO model_reads (source, last_error) VALUES (?1, ?2)
             ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error",
            params![source, error],
        )
        .map_err(self.sql_error("recording a model read"))?;
        tx.commit()
            .map_err(self.sql_error("committing a model read"))
    }

    /// Stores a read of the model list: what changed, and the events it raises (none at the
    /// source's first read). `job_of` names the job that made a model, by its id.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written; then nothing of the read is kept.
    pub fn observe_models(
        &self,
        poll: &ModelPoll<'_>,
        models: Vec<Model>,
        job_of: &HashMap<String, String>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to store the models"))?;
        self.fence(&tx)?;
        let sql = |a| self.sql_error(a);
        let baseline = self.model_baseline(&tx, poll.source)?;
        let mut known = self.known_models(&tx, poll.source)?;
        let mut events = Vec::new();
        let mut listed = HashSet::new();
        for mut model in models {
            if !listed.insert(model.id.clone()) {
                continue;
            }
            if model.job.is_none() {
                model.job = job_of.get(&model.id).cloned();
            }
            let h = hash(&model);
            let before = known.remove(&model.id);
            let raw = model.raw.clone();
            let facts = |warned: &[u64], retired: Option<i64>| Known {
                hash: h.clone(),
                retires_at: model.retires_at,
                warned: warned.to_vec(),
                retired_at: retired,
                gone_at: None,
                base: model.base.clone(),
                job: model.job.clone(),
            };
            let mut state = match before {
                None => {
                    let state = facts(&[], None);
                    if !baseline {
                        events.push(self.model_event(
                            poll,
                            &EventKind::ModelCreated,
                            &state,
                            &model.id,
                            Some(raw.clone()),
                        ));
                    }
                    self.write_model(&tx, poll, &model, &h, true)?;
                    state
                }
                Some(old) => {
                    if old.hash != h || old.gone_at.is_some() {
                        self.write_model(&tx, poll, &model, &h, false)?;
                    }
                    let mut state = facts(&old.warned, old.retired_at);
                    if old.retires_at != model.retires_at {
                        events.push(self.date_moved(poll, &old, &mut state, &model));
                    }
                    state
                }
            };
            events.extend(self.deadlines(poll, &mut state, &model.id, Some(&raw), baseline));
            self.save_state(&tx, poll.source, &model.id, &state)?;
        }
        self.gone(&tx, poll, known, baseline, &mut events)?;
        tx.execute(
            "INSERT INTO model_reads (source, baseline_done, last_read_at, last_error)
             VALUES (?1, 1, ?2, NULL)
             ON CONFLICT (source) DO UPDATE SET baseline_done = 1,
                 last_read_at = excluded.last_read_at, last_error = NULL",
            params![poll.source, poll.now],
        )
        .map_err(sql("recording a model read"))?;
        self.raise_models(&tx, poll, &events)?;
        tx.commit().map_err(sql("committing the models"))?;
        Ok(events)
    }

    /// Whether the source's model list has not been read before (its first read raises nothing).
    fn model_baseline(&self, tx: &Tx<'_, '_>, source: &str) -> Result<bool, StoreError> {
        Ok(tx
            .query_map(
                "SELECT baseline_done FROM model_reads WHERE source = ?1",
                [source],
                |r| r.get::<i64>(0),
            )
            .map_err(self.sql_error("reading the model baseline"))?
            .first()
            .is_none_or(|done| *done == 0))
    }

    /// A model whose retirement date moved: the leads it no longer crosses are re-armed, a
    /// retirement now in the future is undone, and the change is an event.
    fn date_moved(
        &self,
        poll: &ModelPoll<'_>,
        old: &Known,
        state: &mut Known,
        model: &Model,
    ) -> Event {
        state
            .warned
            .retain(|l| crossed(model.retires_at, *l, poll.now));
        if old.retired_at.is_some() && model.retires_at.is_none_or(|r| r > poll.now) {
            state.retired_at = None;
        }
        let mut e = self.model_event(
            poll,
            &EventKind::ModelRetirementChanged,
            state,
            &model.id,
            Some(model.raw.clone()),
        );
        if let Some(f) = e.model.as_mut() {
            f.previous_retires_on = old.retires_at.map(date_of);
        }
        e
    }

    /// Models that left the list: retired, once (silently at the baseline).
    fn gone(
        &self,
        tx: &Tx<'_, '_>,
        poll: &ModelPoll<'_>,
        known: HashMap<String, Known>,
        baseline: bool,
        events: &mut Vec<Event>,
    ) -> Result<(), StoreError> {
        for (id, mut old) in known {
            if old.gone_at.is_some() {
                continue;
            }
            old.gone_at = Some(poll.now);
            if old.retired_at.is_none() {
                old.retired_at = Some(poll.now);
                if !baseline {
                    let mut e = self.model_event(poll, &EventKind::ModelRetired, &old, &id, None);
                    if let Some(f) = e.model.as_mut() {
                        f.reason = Some("removed".into());
                    }
                    events.push(e);
                }
            }
            self.save_state(tx, poll.source, &id, &old)?;
        }
        Ok(())
    }

    /// Raises what time alone brings — a lead crossed, a date passed — for the models stored,
    /// without reading the list (every poll).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn model_deadlines(&self, poll: &ModelPoll<'_>) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting a model deadline check"))?;
        self.fence(&tx)?;
        let mut events = Vec::new();
        for (id, mut state) in self.known_models(&tx, poll.source)? {
            if state.gone_at.is_some() || state.retires_at.is_none() {
                continue;
            }
            let (warned, retired) = (state.warned.clone(), state.retired_at);
            let raised = self.deadlines(poll, &mut state, &id, None, false);
            if state.warned != warned || state.retired_at != retired {
                self.save_state(&tx, poll.source, &id, &state)?;
            }
            events.extend(raised);
        }
        if !events.is_empty() {
            self.raise_models(&tx, poll, &events)?;
        }
        tx.commit()
            .map_err(self.sql_error("committing a model deadline check"))?;
        Ok(events)
    }

    /// Every stored model, soonest retirement first (none last).
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        self.conn()
            .query_map(
                "SELECT source, model_id, base, job_id, created_at, retires_at, retired_at, gone_at
                 FROM models
                 ORDER BY CASE WHEN retires_at IS NULL THEN 1 ELSE 0 END, retires_at,
                          source, model_id",
                params![],
                |r| {
                    Ok(ModelRow {
                        source: r.get(0)?,
                        model_id: r.get(1)?,
                        base: r.get(2)?,
                        job_id: r.get(3)?,
                        created_at: r.get(4)?,
                        retires_at: r.get(5)?,
                        retired_at: r.get(6)?,
                        gone_at: r.get(7)?,
                    })
                },
            )
            .map_err(self.sql_error("listing models"))
    }

    fn known_models(
        &self,
        tx: &Tx<'_, '_>,
        source: &str,
    ) -> Result<HashMap<String, Known>, StoreError> {
        Ok(tx
            .query_map(
                "SELECT model_id, content_hash, retires_at, warned, retired_at, gone_at, base, job_id
                 FROM models WHERE source = ?1",
                [source],
                |r| {
                    let warned: String = r.get(3)?;
                    Ok((
                        r.get::<String>(0)?,
                        Known {
                            hash: r.get(1)?,
                            retires_at: r.get(2)?,
                            warned: warned_parse(&warned),
                            retired_at: r.get(4)?,
                            gone_at: r.get(5)?,
                            base: r.get(6)?,
                            job: r.get(7)?,
                        },
                    ))
                },
            )
            .map_err(self.sql_error("reading the stored models"))?
            .into_iter()
            .collect())
    }

    /// A snapshot of `model` and its row (a new row when `new`).
    fn write_model(
        &self,
        tx: &Tx<'_, '_>,
        poll: &ModelPoll<'_>,
        model: &Model,
        hash: &str,
        new: bool,
    ) -> Result<(), StoreError> {
        let sql = |a| self.sql_error(a);
        let snapshot: i64 = tx
            .query_row(
                "INSERT INTO model_snapshots (source, model_id, observed_at, content_hash, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![poll.source, model.id, poll.now, hash, model.raw.to_string()],
                |r| r.get(0),
            )
            .map_err(sql("storing a model snapshot"))?;
        if new {
            tx.execute(
                "INSERT INTO models (source, model_id, base, job_id, created_at, retires_at,
                     content_hash, latest_snapshot_id, first_seen_at, last_change_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    poll.source,
                    model.id,
                    model.base,
                    model.job,
                    model.created,
                    model.retires_at,
                    hash,
                    snapshot,
                    poll.now
                ],
            )
        } else {
            tx.execute(
                "UPDATE models SET base = ?3, job_id = ?4, created_at = ?5, retires_at = ?6,
                     content_hash = ?7, latest_snapshot_id = ?8, last_change_at = ?9, gone_at = NULL
                 WHERE source = ?1 AND model_id = ?2",
                params![
                    poll.source,
                    model.id,
                    model.base,
                    model.job,
                    model.created,
                    model.retires_at,
                    hash,
                    snapshot,
                    poll.now
                ],
            )
        }
        .map_err(sql("storing a model"))?;
        Ok(())
    }

    fn save_state(
        &self,
        tx: &Tx<'_, '_>,
        source: &str,
        id: &str,
        state: &Known,
    ) -> Result<(), StoreError> {
        tx.execute(
            "UPDATE models SET warned = ?3, retired_at = ?4, gone_at = ?5
             WHERE source = ?1 AND model_id = ?2",
            params![
                source,
                id,
                warned_text(&state.warned),
                state.retired_at,
                state.gone_at
            ],
        )
        .map_err(self.sql_error("storing a model's warnings"))?;
        Ok(())
    }

    /// `model.retired` when its date has passed, else one `model.retiring` for the nearest
    /// lead crossed and not yet raised; at the baseline they are only recorded.
    fn deadlines(
        &self,
        poll: &ModelPoll<'_>,
        state: &mut Known,
        id: &str,
        raw: Option<&Value>,
        silent: bool,
    ) -> Vec<Event> {
        let Some(at) = state.retires_at else {
            return Vec::new();
        };
        if at <= poll.now {
            if state.retired_at.is_some() {
                return Vec::new();
            }
            state.retired_at = Some(poll.now);
            if silent {
                return Vec::new();
            }
            let mut e = self.model_event(poll, &EventKind::ModelRetired, state, id, raw.cloned());
            if let Some(f) = e.model.as_mut() {
                f.reason = Some("date_passed".into());
            }
            return vec![e];
        }
        let now_crossed: Vec<u64> = poll
            .leads
            .iter()
            .copied()
            .filter(|l| crossed(Some(at), *l, poll.now))
            .collect();
        let fresh = now_crossed.iter().any(|l| !state.warned.contains(l));
        if !fresh {
            return Vec::new();
        }
        let nearest = now_crossed.iter().copied().min();
        for l in now_crossed {
            if !state.warned.contains(&l) {
                state.warned.push(l);
            }
        }
        if silent {
            return Vec::new();
        }
        let mut e = self.model_event(poll, &EventKind::ModelRetiring, state, id, raw.cloned());
        if let Some(f) = e.model.as_mut() {
            f.warn_days = nearest.map(|l| (l / 86_400) as i64);
        }
        vec![e]
    }

    fn model_event(
        &self,
        poll: &ModelPoll<'_>,
        kind: &EventKind,
        state: &Known,
        id: &str,
        raw: Option<Value>,
    ) -> Event {
        let facts = ModelFacts {
            id: id.to_string(),
            base: state.base.clone(),
            retires_on: state.retires_at.map(date_of),
            days_left: state.retires_at.map(|r| days_between(poll.now, r)),
            job: state.job.clone(),
            previous_retires_on: None,
            warn_days: None,
            reason: None,
        };
        Event::about_model(kind, poll.source, facts, raw, poll.now)
    }

    fn raise_models(
        &self,
        tx: &Tx<'_, '_>,
        poll: &ModelPoll<'_>,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let sql = |a| self.sql_error(a);
        let mut seq = next_seq(tx).map_err(sql("numbering events"))?;
        for e in events {
            seq += 1;
            let plans = (poll.route)(e);
            insert_event(tx, e, seq, None, &plans, poll.now)
                .map_err(sql("writing a model event"))?;
        }
        Ok(())
    }
}

/// Whether the lead `lead` (seconds) before `retires_at` has been reached by `now`.
fn crossed(retires_at: Option<i64>, lead: u64, now: i64) -> bool {
    retires_at.is_some_and(|at| at > now && at - i64::try_from(lead).unwrap_or(i64::MAX) <= now)
}
