-- tunewatch schema 8: what each watched object is, so that a poll fetches an unfinished one
-- through the client that lists its kind (Mistral's fine-tuning jobs and batches share an id
-- shape). Until now only OpenAI's and Azure's batches existed, and their ids start with `batch_`.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'fine_tuning'
    CHECK (kind IN ('fine_tuning', 'batch'));
UPDATE jobs SET kind = 'batch' WHERE substr(job_id, 1, 6) = 'batch_';
