-- tunewatch schema 7 (PostgreSQL): as ../0007_bounded_reads.sql.

CREATE TABLE job_item_cursors (
    source       TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    list         TEXT NOT NULL CHECK (list IN ('events', 'checkpoints')),
    resume_after TEXT NOT NULL,
    PRIMARY KEY (source, job_id, list)
);

ALTER TABLE refresh_requests ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refresh_requests ADD COLUMN next_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refresh_requests ADD COLUMN last_error TEXT;
ALTER TABLE refresh_requests ADD COLUMN gave_up_at BIGINT;
