-- tunewatch schema 4 (PostgreSQL): as ../0004_insight_signals.sql.

CREATE TABLE job_insight (
    source             TEXT NOT NULL,
    job_id             TEXT NOT NULL,
    marks_raised       TEXT NOT NULL DEFAULT ',',
    overfitting_raised BIGINT NOT NULL DEFAULT 0,
    diverging_raised   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, job_id)
);
