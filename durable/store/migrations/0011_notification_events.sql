-- The notification outbox's events, for `durable notifications` and its API route: a
-- partial index holds only them, so listing them never scans the log, and the appends
-- of every other event pay nothing for it.
CREATE INDEX events_notifications ON durable.events (position)
    WHERE type IN ('notification_requested', 'notification_sent', 'notification_failed');
