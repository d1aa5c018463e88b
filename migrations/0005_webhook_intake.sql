-- tunewatch schema 5: OpenAI's webhooks taken in. A receipt per `webhook-id` (kept 72 h, so a
-- redelivery does nothing) and a refresh request per webhook, written together before the
-- webhook is answered: a refresh left by a daemon that died is carried out after its restart.

CREATE TABLE webhook_receipts (
    source      TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, webhook_id)
);

CREATE TABLE refresh_requests (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    requested_at INTEGER NOT NULL
);

ALTER TABLE source_state ADD COLUMN last_webhook_at INTEGER;
