"""The use cases: creating runs, applying commands to streams, schedules and backfills.

Every interface (the HTTP API, the CLI, triggers, the scheduler) goes through here to
change anything; below it are only the pure core and the store.
"""
