-- tunewatch schema 4: which training-insight events a job has raised, so that each is raised
-- once per job (a progress mark once per mark), across restarts.

CREATE TABLE job_insight (
    source             TEXT NOT NULL,
    job_id             TEXT NOT NULL,
    -- Progress marks raised, in percent, as a comma-separated list: ',50,90,'.
    marks_raised       TEXT NOT NULL DEFAULT ',',
    overfitting_raised INTEGER NOT NULL DEFAULT 0,
    diverging_raised   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, job_id)
);
