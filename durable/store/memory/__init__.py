"""The in-memory store (for pure executor tests): the same protocols and contracts as
PostgreSQL's, over Python structures. Nothing survives the process."""

from durable.store.memory.log import MemoryEventStore

__all__ = ["MemoryEventStore"]
