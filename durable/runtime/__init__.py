"""What runs: the executor and its run drivers, task runners, triggers, the scheduler.

The runtime does I/O around the pure core, through the store's protocols and the
application layer; it holds no SQL.
"""
