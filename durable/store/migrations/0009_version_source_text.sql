-- The text of the file a workflow version was defined in (its `source` is the path),
-- as read when the version was first recorded with one: the UI shows a version's code.
-- NULL for versions recorded before, or defined without a file.
ALTER TABLE durable.workflow_versions ADD COLUMN source_text text;
