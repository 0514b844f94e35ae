"""The pure core: events, the fold, decisions, workflow specs, schedule and backfill math.

Nothing here does I/O, reads a clock or draws a random number: ``now`` and ids come from
the caller. A test checks by package path that this package imports nothing impure.
"""
