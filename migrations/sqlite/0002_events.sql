-- Conversations, delivery hints, duplicate detection and the durable event log.

-- The conversation (or MCP session) a job belongs to, how its result should be delivered, and
-- the realtime function call that started it, when the app said.
ALTER TABLE jobs ADD COLUMN conversation TEXT;
ALTER TABLE jobs ADD COLUMN delivery TEXT;
ALTER TABLE jobs ADD COLUMN call_id TEXT;
-- Same tool, same normalised arguments, same conversation: a repeated call finds this job.
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
-- When the conversation was told the job ended (piggy-back, job_status); NULL until then.
ALTER TABLE jobs ADD COLUMN announced_at INTEGER;

CREATE INDEX jobs_by_dedupe_key ON jobs (dedupe_key, created_at) WHERE dedupe_key IS NOT NULL;
-- Only ended, unannounced jobs: every tool call of a conversation asks whether there are any,
-- and its jobs still working must not make that question slower.
CREATE INDEX jobs_unannounced ON jobs (owner, conversation, finished_at)
    WHERE announced_at IS NULL AND status IN ('completed', 'failed');

-- Every job state change, in commit order. Written in the same transaction as the change, so
-- a stream resumed with Last-Event-ID misses nothing and repeats nothing. AUTOINCREMENT: ids
-- are never reused, even after retention deletes the newest rows.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        TEXT NOT NULL,
    owner         TEXT NOT NULL,
    conversation  TEXT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX events_by_owner ON events (owner, id);
CREATE INDEX events_by_time ON events (created_at);

-- The webhook outbox: one row per (event, endpoint), retried until delivered or given up.
CREATE TABLE deliveries (
    -- The Standard Webhooks `webhook-id`, identical on every retry so receivers can dedupe.
    id              TEXT PRIMARY KEY NOT NULL,
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    job_id          TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER
) STRICT;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_job ON deliveries (job_id);
