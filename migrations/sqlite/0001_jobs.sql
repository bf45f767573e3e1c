-- Jobs: one row per background job; the single source of truth for every view.
-- Times are microseconds since the Unix epoch.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    tool          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    input         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('working', 'completed', 'failed', 'cancelled')),
    output        TEXT,
    error_code    TEXT,
    error_message TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    eta_ms        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    -- The process that runs the job and until when; an expired lease means it died.
    lease_owner   TEXT,
    lease_until   INTEGER
) STRICT;

CREATE INDEX jobs_working_by_lease ON jobs (lease_until) WHERE status = 'working';
CREATE INDEX jobs_working_by_owner ON jobs (lease_owner) WHERE status = 'working';
CREATE INDEX jobs_ended_by_time ON jobs (finished_at) WHERE status <> 'working';
