//! Several daemons on one PostgreSQL database: one *leader* polls and raises events, every daemon
//! delivers.
//!
//! The leader holds the `leader_lease` row: a holder, an expiry on the database's clock (so the
//! hosts' clocks do not matter), and an epoch that grows whenever the leader changes. The leader
//! renews it every third of the lease. Each write only a leader may make ([`Store::fence`])
//! first checks, in its own transaction and under a share lock on the row, that this daemon still
//! holds the epoch it was given: a deposed leader (paused, partitioned, slow) has its writes
//! refused instead of raising events twice. On SQLite there is one daemon per file (the lock
//! file), which always leads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::db::{Optional, Tx, params};
use super::{Store, StoreError};

/// The database's clock, in unix ms.
const PG_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// This daemon's place among others: its name, its epoch while it leads, its claim lease.
#[derive(Debug)]
pub struct Cluster {
    /// Wakes the pollers when this daemon starts leading (they wait on it while following).
    pub gained: tokio::sync::Notify,
    instance: Mutex<String>,
    /// The epoch this daemon leads with; 0 while it does not lead.
    epoch: AtomicI64,
    /// The epoch it last led with: taking the lease again at that epoch means nobody else led
    /// in between, so its job index is still the database's.
    last_epoch: AtomicI64,
    claim_ms: AtomicI64,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            gained: tokio::sync::Notify::new(),
            instance: Mutex::new(format!("local-{}", std::process::id())),
            epoch: AtomicI64::new(0),
            last_epoch: AtomicI64::new(0),
            claim_ms: AtomicI64::new(120_000),
        }
    }
}

impl Cluster {
    /// This daemon's name.
    pub fn instance(&self) -> String {
        self.instance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How long a claimed delivery stays this daemon's (ms).
    pub fn claim_ms(&self) -> i64 {
        self.claim_ms.load(Ordering::Relaxed)
    }

    /// The epoch this daemon leads with, if it leads.
    pub fn epoch(&self) -> Option<i64> {
        Some(self.epoch.load(Ordering::Acquire)).filter(|e| *e > 0)
    }
}

/// Who leads, as `status` and the status page show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub holder: String,
    pub epoch: i64,
    /// Milliseconds until the lease runs out (negative: it has).
    pub expires_in_ms: i64,
}

impl Store {
    /// Names this daemon and sets its claim lease.
    pub fn join(&self, instance: &str, claim_ms: i64) {
        let c = &self.inner.cluster;
        *c.instance.lock().unwrap_or_else(|p| p.into_inner()) = instance.to_string();
        c.claim_ms.store(claim_ms.max(1), Ordering::Relaxed);
    }

    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// Whether this daemon may poll and raise events: always on SQLite (one daemon per file),
    /// while it holds the lease on PostgreSQL.
    pub fn leads(&self) -> bool {
        !self.inner.shared || self.inner.cluster.epoch().is_some()
    }

    /// Takes the lease if it is free or run out, or renews it if this daemon holds it, for
    /// `lease_ms`. Returns the epoch this daemon now leads with, or `None` when another leads.
    ///
    /// A new epoch (this daemon was not leading) reloads the job index: the previous leader wrote
    /// jobs this daemon has not seen. On SQLite this daemon always leads, with epoch 1.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached; the caller stops leading once its
    /// lease has run out without a renewal.
    pub fn acquire_lease(&self, lease_ms: i64) -> Result<Option<i64>, StoreError> {
        let instance = self.cluster().instance();
        let mut conn = self.conn();
        if !conn.is_shared() {
            self.inner.cluster.epoch.store(1, Ordering::Release);
            return Ok(Some(1));
        }
        let tx = conn
            .transaction()
            .map_err(self.sql_error("taking the leader's lease"))?;
        let epoch: Option<i64> = tx
            .query_row(
                &format!(
                    "UPDATE leader_lease SET
                         epoch = CASE WHEN holder = ?1 THEN epoch ELSE epoch + 1 END,
                         holder = ?1, expires_ms = {PG_NOW_MS} + ?2, renewed_ms = {PG_NOW_MS}
                     WHERE name = 'poller' AND (holder = ?1 OR expires_ms < {PG_NOW_MS})
                     RETURNING epoch"
                ),
                params![instance, lease_ms],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("taking the leader's lease"))?;
        let before = self.inner.cluster.epoch.load(Ordering::Acquire);
        let last = self.inner.cluster.last_epoch.load(Ordering::Acquire);
        if let Some(epoch) = epoch
            && epoch != last
        {
            self.index()
                .reload(&tx)
                .map_err(self.sql_error("reloading the job index"))?;
        }
        tx.commit()
            .map_err(self.sql_error("taking the leader's lease"))?;
        self.inner
            .cluster
            .epoch
            .store(epoch.unwrap_or(0), Ordering::Release);
        if let Some(e) = epoch {
            self.inner.cluster.last_epoch.store(e, Ordering::Release);
        }
        if epoch.is_some_and(|e| e != before) {
            self.inner.cluster.gained.notify_waiters();
        }
        Ok(epoch)
    }

    /// Stops leading: locally at once, and in the database when this daemon still holds the
    /// lease (a clean stop hands over without waiting for the lease to run out).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn resign(&self) -> Result<(), StoreError> {
        self.inner.cluster.epoch.store(0, Ordering::Release);
        let conn = self.conn();
        if !conn.is_shared() {
            return Ok(());
        }
        conn.execute(
            "UPDATE leader_lease SET expires_ms = 0 WHERE name = 'poller' AND holder = ?1",
            [self.cluster().instance()],
        )
        .map_err(self.sql_error("giving up the leader's lease"))?;
        Ok(())
    }

    /// Forgets leadership locally (the lease ran out without a renewal).
    pub fn step_down(&self) {
        self.inner.cluster.epoch.store(0, Ordering::Release);
    }

    /// Who holds the lease (PostgreSQL), or `None` on SQLite.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn leader(&self) -> Result<Option<Leader>, StoreError> {
        let conn = self.conn();
        if !conn.is_shared() {
            return Ok(None);
        }
        conn.query_row(
            &format!(
                "SELECT holder, epoch, expires_ms - {PG_NOW_MS} FROM leader_lease
                 WHERE name = 'poller'"
            ),
            (),
            |r| {
                Ok(Leader {
                    holder: r.get(0)?,
                    epoch: r.get(1)?,
                    expires_in_ms: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(self.sql_error("reading the leader's lease"))
    }

    /// Inside a transaction that only a leader may commit: proves this daemon still holds the
    /// epoch it leads with, and keeps the lease row share-locked until the commit, so a takeover
    /// waits for this transaction rather than overlapping it.
    ///
    /// # Errors
    /// [`StoreError::Deposed`] when another daemon leads now (or this one never led).
    pub(super) fn fence(&self, tx: &Tx<'_, '_>) -> Result<(), StoreError> {
        if !tx.is_shared() {
            return Ok(());
        }
        let instance = self.cluster().instance();
        let deposed = |message: String| StoreError::Deposed {
            path: self.inner.path.clone(),
            message,
        };
        let Some(epoch) = self.cluster().epoch() else {
            return Err(deposed(format!(
                "{instance} does not lead, so it does not poll or raise events"
            )));
        };
        let held = tx
            .query_row(
                "SELECT epoch FROM leader_lease
                 WHERE name = 'poller' AND holder = ?1 AND epoch = ?2 FOR SHARE",
                params![instance, epoch],
                |r| r.get::<i64>(0),
            )
            .optional()
            .map_err(self.sql_error("checking the leader's epoch"))?;
        if held.is_none() {
            self.inner.cluster.epoch.store(0, Ordering::Release);
            return Err(deposed(format!(
                "{instance} was deposed (its epoch {epoch} is over): another daemon leads, so \
                 this write as leader is refused"
            )));
        }
        Ok(())
    }
}
