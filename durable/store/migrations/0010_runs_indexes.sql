-- The console's pages at scale (tests/bench/bench_console.py, 100,000 runs): a version's
-- run count reads this index only, and the runs list ordered by (created_at, run_id)
-- with a workflow and/or status filter pages on an index whose order is the list's (the
-- workflows list asks for each workflow's latest failed runs: without the status in the
-- index, a workflow that never failed is scanned whole).
CREATE INDEX runs_workflow_version ON durable.runs (workflow, version);
CREATE INDEX runs_workflow_page ON durable.runs (workflow, created_at DESC, run_id DESC);
CREATE INDEX runs_workflow_status_page ON durable.runs (workflow, status, created_at DESC, run_id DESC);
CREATE INDEX runs_status_page ON durable.runs (status, created_at DESC, run_id DESC);
CREATE INDEX runs_page ON durable.runs (created_at DESC, run_id DESC);
DROP INDEX durable.runs_workflow_created;
DROP INDEX durable.runs_status_created;
DROP INDEX durable.runs_created;
