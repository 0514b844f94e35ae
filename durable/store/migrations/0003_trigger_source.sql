-- Where a run came from (a backfill's id, a schedule's expression, a topic...), so a
-- backfill can count, throttle and cancel its runs.
ALTER TABLE durable.runs ADD COLUMN trigger_source text;
CREATE INDEX runs_backfill ON durable.runs (trigger_source, status) WHERE trigger_kind = 'backfill';
