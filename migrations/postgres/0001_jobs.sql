-- The shared store: the same tables as the embedded SQLite store (see migrations/sqlite/),
-- written by every instance. Times are microseconds since the Unix epoch; JSON is kept as text.

-- Jobs: one row per background job; the single source of truth for every view.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    tool          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    input         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('working', 'completed', 'failed', 'cancelled')),
    output        TEXT,
    error_code    TEXT,
    error_message TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    eta_ms        BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    -- The instance (row in `instances`) that runs the job; NULL once it ended.
    lease_owner   TEXT,
    conversation  TEXT,
    delivery      TEXT,
    call_id       TEXT,
    dedupe_key    TEXT,
    announced_at  BIGINT,
    progress      TEXT
);

-- Running instances and until when they are known alive; each renews its own row.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY NOT NULL,
    alive_until   BIGINT NOT NULL
);

CREATE INDEX jobs_working_by_owner ON jobs (lease_owner, created_at) WHERE status = 'working';
CREATE INDEX jobs_ended_by_time ON jobs (finished_at) WHERE status <> 'working';
CREATE INDEX jobs_by_dedupe_key ON jobs (dedupe_key, created_at) WHERE dedupe_key IS NOT NULL;
CREATE INDEX jobs_unannounced ON jobs (owner, conversation, finished_at)
    WHERE announced_at IS NULL AND status IN ('completed', 'failed');

-- The last event id handed out. Every transaction that writes events takes the next ids by
-- updating this one row, and so holds its lock until it commits: ids are handed out in commit
-- order, across all instances. A sequence would not do: a transaction that took id 11 could
-- commit after the one that took 12, and a reader resuming after 12 would never see 11.
CREATE TABLE event_ids (
    only_row      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last_id       BIGINT NOT NULL
);
INSERT INTO event_ids (only_row, last_id) VALUES (TRUE, 0);

-- Every job state change, in commit order, written in the same transaction as the change.
CREATE TABLE events (
    id            BIGINT PRIMARY KEY NOT NULL,
    job_id        TEXT NOT NULL,
    owner         TEXT NOT NULL,
    conversation  TEXT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE INDEX events_by_owner ON events (owner, id);
CREATE INDEX events_by_time ON events (created_at);

-- The webhook outbox: one row per (event, endpoint), retried until delivered or given up.
CREATE TABLE deliveries (
    -- The Standard Webhooks `webhook-id`, identical on every retry so receivers can dedupe.
    id              TEXT PRIMARY KEY NOT NULL,
    event_id        BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    job_id          TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_job ON deliveries (job_id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
