-- tunewatch schema 11: fewer, better alerts (DESIGN.md, "Fewer, better alerts"). Grouping, quiet
-- hours and silences decide which message carries an outbox row and when — never whether the row
-- exists: every row stays, in state pending, grouped (carried by a group), silenced, delivered or
-- dead.
-- SQLite cannot change a CHECK in place: the table is rebuilt with the two new states.
CREATE TABLE outbox_v11 (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    notifier        TEXT NOT NULL,
    state           TEXT NOT NULL
        CHECK (state IN ('pending', 'delivered', 'dead', 'grouped', 'silenced')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    done_ms         INTEGER,
    claimed_by      TEXT,
    claim_until_ms  INTEGER,
    group_id        INTEGER,
    held_until_ms   INTEGER,
    held_by         TEXT,
    silence_id      INTEGER,
    UNIQUE (event_id, notifier)
);
INSERT INTO outbox_v11 (id, event_id, notifier, state, attempts, created_ms, next_attempt_ms,
                        last_attempt_ms, last_status, last_error, done_ms, claimed_by,
                        claim_until_ms)
    SELECT id, event_id, notifier, state, attempts, created_ms, next_attempt_ms, last_attempt_ms,
           last_status, last_error, done_ms, claimed_by, claim_until_ms
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v11 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX outbox_by_group ON outbox (group_id);

-- A group message: open (rows still join it) until it is first sent; then frozen with its body,
-- so every retry sends the same bytes with the same id.
CREATE TABLE alert_groups (
    id              INTEGER PRIMARY KEY,
    notifier        TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    -- open | frozen | delivered | dead | silenced
    state           TEXT NOT NULL,
    flush_ms        INTEGER NOT NULL,
    interval_ms     INTEGER NOT NULL,
    max_items       INTEGER NOT NULL,
    held_by         TEXT,
    created_ms      INTEGER NOT NULL,
    message_id      TEXT,
    body            TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    last_error      TEXT,
    last_status     INTEGER,
    done_ms         INTEGER,
    claimed_by      TEXT,
    claim_until_ms  INTEGER
);
CREATE INDEX alert_groups_by_key ON alert_groups (notifier, group_key, state);
CREATE INDEX alert_groups_by_state ON alert_groups (state, flush_ms);

CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    source      TEXT,
    job_id      TEXT,
    model       TEXT,
    event       TEXT,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    comment     TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expired_ms  INTEGER
);

-- A notifier's run of failed attempts, for tunewatch.notifier.failing / .recovered.
CREATE TABLE notifier_state (
    notifier             TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_alerted      INTEGER NOT NULL DEFAULT 0,
    failing_since_ms     INTEGER,
    last_error           TEXT
);

-- Each digest's last covered time: one digest per due time, whoever sends it.
CREATE TABLE digests (
    name         TEXT PRIMARY KEY,
    last_due_ms  INTEGER NOT NULL,
    last_sent_ms INTEGER NOT NULL
);
