-- tunewatch schema 9: the fine-tuned models a source's account has, and when each retires
-- (DESIGN.md, "Model lifecycle"). Stored like jobs: the latest state per model, and every changed
-- state as a snapshot.
CREATE TABLE model_snapshots (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    model_id     TEXT NOT NULL,
    observed_at  INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    raw          TEXT NOT NULL
);
CREATE INDEX model_snapshots_by_model ON model_snapshots (source, model_id, id);

CREATE TABLE models (
    source             TEXT NOT NULL,
    model_id           TEXT NOT NULL,
    base               TEXT,
    job_id             TEXT,
    created_at         INTEGER,
    -- 00:00 UTC of the day it retires (its own date or its base's); NULL: none announced.
    retires_at         INTEGER,
    content_hash       TEXT NOT NULL,
    latest_snapshot_id INTEGER NOT NULL REFERENCES model_snapshots (id),
    first_seen_at      INTEGER NOT NULL,
    last_change_at     INTEGER NOT NULL,
    -- The retire_warn leads (seconds, comma-separated) already raised for this date.
    warned             TEXT NOT NULL DEFAULT '',
    -- When model.retired was raised.
    retired_at         INTEGER,
    -- When the model left the list.
    gone_at            INTEGER,
    PRIMARY KEY (source, model_id)
);

-- Each source's model reads: the first one is the silent baseline; the next is due
-- models_interval after the last.
CREATE TABLE model_reads (
    source        TEXT PRIMARY KEY,
    baseline_done INTEGER NOT NULL DEFAULT 0,
    last_read_at  INTEGER,
    last_error    TEXT
);
