-- Executors: leases on runs, concurrency slots, task logs, workflow versions.

-- Who works on a run, until when. A lease that expired can be taken over; appends stay
-- fenced by the run's seq, so a zombie executor can never record anything after that.
CREATE TABLE durable.leases (
    run_id text PRIMARY KEY REFERENCES durable.runs (run_id) ON DELETE CASCADE,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL,
    -- counts against the workflow's max_active_runs while the run is not finished
    holds_slot boolean NOT NULL DEFAULT false
) WITH (fillfactor = 50);

-- Runs an executor may have to act on; the partial index keeps claiming cheap.
CREATE INDEX runs_active ON durable.runs (created_at) WHERE status IN ('pending', 'running');

-- Each task attempt's log lines (stdout/stderr of shell tasks, ctx.log of Python tasks).
CREATE TABLE durable.task_logs (
    run_id text NOT NULL,
    task text NOT NULL,
    generation integer NOT NULL,
    attempt integer NOT NULL,
    line integer NOT NULL,
    at timestamptz NOT NULL,
    stream text NOT NULL,
    message text NOT NULL,
    PRIMARY KEY (run_id, task, generation, attempt, line)
);

-- Every version of every workflow that was loaded: `durable versions` lists and diffs them.
CREATE TABLE durable.workflow_versions (
    workflow text NOT NULL,
    version text NOT NULL,
    definition jsonb NOT NULL,
    source text NOT NULL DEFAULT '',
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, version)
);
