-- tunewatch schema 10: evaluations of new models against their baselines (DESIGN.md, "Evaluating
-- a new model"). One row per (source, job, cases file, run); every (case, model) result is kept as
-- it arrives, so a run resumed after a kill never asks (and pays) twice.
CREATE TABLE evaluations (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    job_id         TEXT NOT NULL,
    cases_hash     TEXT NOT NULL,
    -- 0 for the one a success enqueues; `evaluate --again` adds 1, 2, ...
    run            INTEGER NOT NULL DEFAULT 0,
    model          TEXT NOT NULL,
    -- The job's base model (for baseline = "base").
    base_model     TEXT,
    -- pending | running | done | failed
    state          TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    started_ms     INTEGER,
    finished_ms    INTEGER,
    claimed_by     TEXT,
    claim_until_ms INTEGER,
    -- The `evaluation` object of its event, once finished.
    result         TEXT,
    UNIQUE (source, job_id, cases_hash, run)
);
CREATE INDEX evaluations_by_state ON evaluations (state, id);

CREATE TABLE evaluation_results (
    evaluation_id BIGINT NOT NULL REFERENCES evaluations (id),
    case_id       TEXT NOT NULL,
    -- model | baseline
    role          TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    -- The first grader that failed and why (no output text).
    grader        TEXT,
    reason        TEXT,
    cost_micros   INTEGER NOT NULL DEFAULT 0,
    -- At most 120 characters of the answer, kept only with show_outputs.
    output        TEXT,
    PRIMARY KEY (evaluation_id, case_id, role)
);
