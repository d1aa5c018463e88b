-- tunewatch schema 2 (PostgreSQL): as ../0002_fault_tracking.sql.

ALTER TABLE source_state ADD COLUMN failing_alerted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stall_alerted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN gone_at BIGINT;
