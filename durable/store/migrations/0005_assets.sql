-- Data-aware triggers: the latest update of each asset (lineage: which run and task
-- produced it), and how far each log-tailing service has read.
CREATE TABLE durable.assets (
    asset text PRIMARY KEY,
    workflow text NOT NULL,
    run_id text NOT NULL,
    task text NOT NULL,
    generation integer NOT NULL,
    updated_at timestamptz NOT NULL,
    position bigint NOT NULL
);

CREATE TABLE durable.log_positions (
    reader text PRIMARY KEY,
    position bigint NOT NULL
);
