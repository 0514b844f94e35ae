-- The log's life cycle: finished runs archived out of the hot tables. A run's events and
-- task logs move to compressed files in the export format (a directory, or an S3
-- bucket); its row stays in durable.runs, so lists, dedup keys, schedules and backfills
-- still see it, marked archived; durable.archives says where its files are and what
-- they hold (`durable history`, `replay` and the API read them back from there).

-- An archived run's stream is closed: the append fence refuses it, so an append decided
-- before the run was archived can never land once its events have left.
ALTER TABLE durable.runs ADD COLUMN archived boolean NOT NULL DEFAULT false;

-- What an archive pass walks: finished runs not archived, oldest end first. A run's row
-- gets finished_at in the update that ends it (not a HOT update already: its status is
-- indexed), so this costs one index entry per finished run.
CREATE INDEX runs_archivable ON durable.runs (finished_at, run_id)
    WHERE finished_at IS NOT NULL AND NOT archived;

-- The tombstone of each archived run (kept, with restored_at, once `durable restore`
-- brought its events back: a retention pass leaves a run restored within its window).
CREATE TABLE durable.archives (
    run_id text PRIMARY KEY,
    workflow text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    uri text NOT NULL,          -- the events: gzip JSON lines, as `durable export` writes
    events integer NOT NULL,
    sha256 text NOT NULL,       -- of the file's bytes, checked on every read
    bytes bigint NOT NULL,
    logs_uri text,              -- the task log lines (NULL: the run had none)
    log_lines integer NOT NULL DEFAULT 0,
    logs_sha256 text,
    archived_at timestamptz NOT NULL DEFAULT now(),
    restored_at timestamptz
);
