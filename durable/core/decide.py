"""Where operators' commands were imported from before :mod:`durable.core.step`.

Kept so the callers that import ``Cancel``, ``Pause``, ``Resume``, ``Rerun``,
``CommandRejected`` and ``decide_command`` from here keep working; new code imports them
from :mod:`durable.core.commands` (the decisions of a run are
:func:`durable.core.step.step`).
"""

from __future__ import annotations

from durable.core.commands import (
    Cancel,
    Command,
    CommandRejected,
    Pause,
    Rerun,
    Resume,
    decide_command,
)

__all__ = ["Cancel", "Command", "CommandRejected", "Pause", "Rerun", "Resume", "decide_command"]
