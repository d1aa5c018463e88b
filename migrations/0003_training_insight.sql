-- tunewatch schema 3: training insight — what a job's events and checkpoints say.

-- Every item of a job's `…/events` or `…/checkpoints` list, kept once, as the API sent it.
-- `list` is 'events' or 'checkpoints'; metric points are the events of type 'metrics'.
CREATE TABLE job_items (
    source     TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    list       TEXT NOT NULL CHECK (list IN ('events', 'checkpoints')),
    item_id    TEXT NOT NULL,
    created_at INTEGER,
    type       TEXT,
    raw        TEXT NOT NULL,
    PRIMARY KEY (source, job_id, list, item_id)
);
