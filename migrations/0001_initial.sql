-- tunewatch schema 1: sources, jobs, snapshots, events and the delivery outbox.
-- Times ending in _at are unix seconds; those ending in _ms are unix milliseconds.

-- Per source: whether its baseline poll has completed, and how its polls are going.
CREATE TABLE source_state (
    source               TEXT PRIMARY KEY,
    baseline_done        INTEGER NOT NULL DEFAULT 0,
    last_poll_at         INTEGER,
    last_success_at      INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT
);

-- The latest known state of every job; one row per (source, job).
CREATE TABLE jobs (
    source             TEXT NOT NULL,
    job_id             TEXT NOT NULL,
    status             TEXT NOT NULL,
    model              TEXT,
    content_hash       TEXT NOT NULL,
    latest_snapshot_id INTEGER NOT NULL,
    first_seen_at      INTEGER NOT NULL,
    status_since       INTEGER NOT NULL,
    last_change_at     INTEGER NOT NULL,
    PRIMARY KEY (source, job_id)
);

-- Every changed version of every job, with the raw JSON the API returned.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    observed_at  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    raw          TEXT NOT NULL
);
CREATE INDEX snapshots_by_job ON snapshots (job_id, id);

-- Every event ever raised; `payload` is the JSON envelope, fixed at creation.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    source      TEXT NOT NULL,
    job_id      TEXT,
    snapshot_id INTEGER REFERENCES snapshots (id),
    created_at  INTEGER NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, seq);

-- One row per (event, notifier): what is left to deliver, and how it went.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    notifier        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    done_ms         INTEGER,
    UNIQUE (event_id, notifier)
);
-- The dispatcher's question, "what is due?", reads only pending rows.
CREATE INDEX outbox_due ON outbox (next_attempt_ms) WHERE state = 'pending';
