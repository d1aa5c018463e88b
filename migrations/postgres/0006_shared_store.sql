-- tunewatch schema 6 (PostgreSQL): several daemons on one database. Used on PostgreSQL (one daemon per SQLite
-- file holds both trivially); kept in step on SQLite so that `tunewatch migrate` copies like for
-- like.

-- The leader's lease: who polls, until when (unix ms, the database's clock), and its epoch, which
-- grows at every change of leader. A leader's writes check the epoch they were given.
CREATE TABLE leader_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL DEFAULT '',
    epoch      BIGINT NOT NULL DEFAULT 0,
    expires_ms BIGINT NOT NULL DEFAULT 0,
    renewed_ms BIGINT NOT NULL DEFAULT 0
);
INSERT INTO leader_lease (name) VALUES ('poller');

-- A delivery being attempted: by which daemon, and until when (unix ms) no other takes it.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claim_until_ms BIGINT;
