-- Task logs are written while attempts run, in small batches, and followed live: every
-- line gets an id that grows in the order lines are written, and a reader asks for a
-- run's lines after the last id it saw. A batch takes a transaction-scoped advisory lock
-- on its run before it draws its ids, so the ids of one run also commit in order: a line
-- committed later never has a smaller id than one a reader has already seen.
ALTER TABLE durable.task_logs ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;

CREATE UNIQUE INDEX task_logs_run_id_id ON durable.task_logs (run_id, id);
