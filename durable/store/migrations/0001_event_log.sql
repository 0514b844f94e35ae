-- The run log: every state change of every run, schedule and backfill.

-- Where each stream other than a run's is: the fence an append states it expects.
-- (A run's fence is durable.runs.last_seq, moved in the read model's own row update.)
CREATE TABLE durable.streams (
    stream_id text PRIMARY KEY,
    last_seq integer NOT NULL CHECK (last_seq > 0)
) WITH (fillfactor = 50);  -- room on the page: updates stay HOT, no index churn

CREATE TABLE durable.events (
    -- commit order across all streams: appends hold a lock from assigning
    -- positions to commit, so no smaller position becomes visible later
    position bigint GENERATED ALWAYS AS IDENTITY,
    stream_id text NOT NULL,
    seq integer NOT NULL CHECK (seq > 0),
    type text NOT NULL,
    version smallint NOT NULL,
    data jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, seq)
);
CREATE UNIQUE INDEX events_position ON durable.events (position);

-- Read model of runs, written in the same transaction as the events.
CREATE TABLE durable.runs (
    run_id text PRIMARY KEY,
    workflow text NOT NULL,
    version text NOT NULL,
    status text NOT NULL,
    trigger_kind text NOT NULL,
    -- the dedup key: one run per source event / caller key, ever
    idempotency_key text UNIQUE,
    params jsonb NOT NULL,
    logical_time timestamptz,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL,
    -- seq of the run's last event: the fence of appends to the run's stream
    last_seq integer NOT NULL
) WITH (fillfactor = 50);  -- updated on every append: keep updates HOT
CREATE INDEX runs_created ON durable.runs (created_at DESC, run_id);
CREATE INDEX runs_workflow_created ON durable.runs (workflow, created_at DESC);
CREATE INDEX runs_status_created ON durable.runs (status, created_at DESC);
