"""Value objects carried inside run events (the DAG's nodes, what started a run, a task's
error), and the base every event class shares.

Pure. Changing a field here changes the stored format of the events that carry it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal, TypeAlias

import msgspec

__all__ = ["ErrorInfo", "EventBase", "TaskNode", "Trigger", "TriggerRule"]


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """What every event shares: frozen, keyword-only, tagged on ``type``, versioned.

    A subclass declares its stable ``tag`` (never renamed) and, once its shape changes,
    a higher ``VERSION`` with an upcaster in the registry.
    """

    VERSION: ClassVar[int] = 1


TriggerRule: TypeAlias = Literal["all_success", "none_failed", "one_failed", "all_done"]
"""When a task may run, given its upstream tasks' outcomes.

- ``all_success``: every upstream task succeeded (a failed or skipped one skips this task)
- ``none_failed``: every upstream task is done and none failed (a join after a switch)
- ``one_failed``: an upstream task failed (a catch handler)
- ``all_done``: every upstream task is done, whatever the outcome (a finally task)
"""


class TaskNode(msgspec.Struct, frozen=True, kw_only=True):
    """One task of the run's DAG as it was when the run was created."""

    name: str
    upstream: tuple[str, ...] = ()
    trigger_rule: TriggerRule = "all_success"


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """What started a run: ``kind`` is manual, api, schedule, backfill, kafka, s3, http
    (webhooks), rerun."""

    kind: str
    source: str | None = None
    logical_time: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    traceparent: str | None = None
    """W3C trace context of the source (a Kafka header, an HTTP header), kept on the run."""


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A task attempt's failure: exception type, message, and whether retrying can help."""

    type: str
    message: str
    retryable: bool = True
    traceback: str | None = None
