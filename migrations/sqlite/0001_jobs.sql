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
    -- The process (row in `instances`) that runs the job; NULL once it ended.
    lease_owner   TEXT
) STRICT;

-- Running processes and until when they are known alive. A process renews its own row; when it
-- dies the row expires, and every job it owned can be claimed by another (or the restarted) one.
-- One row per process, whatever the number of jobs it drives.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY NOT NULL,
    alive_until   INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_working_by_owner ON jobs (lease_owner) WHERE status = 'working';
CREATE INDEX jobs_ended_by_time ON jobs (finished_at) WHERE status <> 'working';
