-- tunewatch schema 11: fewer, better alerts (DESIGN.md, "Fewer, better alerts"). Grouping, quiet
-- hours and silences decide which message carries an outbox row and when — never whether the row
-- exists: every row stays, in state pending, grouped (carried by a group), silenced, delivered or
-- dead.
ALTER TABLE outbox ADD COLUMN group_id INTEGER;
ALTER TABLE outbox ADD COLUMN held_until_ms INTEGER;
ALTER TABLE outbox ADD COLUMN held_by TEXT;
ALTER TABLE outbox ADD COLUMN silence_id INTEGER;
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
