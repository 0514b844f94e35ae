-- Kafka triggers: which incarnation of a partition's log the stored offsets belong to.
-- A broker that lost its log (a new cluster, a topic deleted and recreated) hands out the
-- same offsets again, to new messages. `epoch` counts the resets detected for the
-- partition (it joins offset-based idempotency keys and dead letters from the first reset
-- on); `last_fingerprint` identifies the last message consumed, so that a log which grew
-- back past our position is told apart from the one we read.
ALTER TABLE durable.kafka_offsets
    ADD COLUMN epoch integer NOT NULL DEFAULT 0,
    ADD COLUMN last_fingerprint text;

ALTER TABLE durable.dead_letters ADD COLUMN epoch integer NOT NULL DEFAULT 0;
ALTER TABLE durable.dead_letters
    DROP CONSTRAINT dead_letters_source_topic_partition_offset_workflow_key;
ALTER TABLE durable.dead_letters
    ADD CONSTRAINT dead_letters_source_topic_partition_offset_workflow_epoch_key
    UNIQUE (source, topic, partition, "offset", workflow, epoch);
