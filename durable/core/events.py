"""The events of a run's life, their envelope, and their versioned codec.

Every state change of a run is one of these events appended to the run's stream.
Events are frozen, keyword-only ``msgspec.Struct`` s with a stable ``tag``: a tag is
never renamed. When an event's shape changes, its class gets a higher ``VERSION`` and
an upcaster (a pure ``dict -> dict`` function) turns the stored older shape into the
new one while decoding (:class:`EventRegistry`).

Pure: no I/O, no clock, no randomness. Times are the store's commit times and arrive
in the envelope (:class:`Recorded`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeAlias

import msgspec

from durable.core.errors import MalformedEvent, UnknownEventType

__all__ = [
    "EVENT_TYPES",
    "REGISTRY",
    "BackfillCancelled",
    "BackfillPaused",
    "BackfillRequested",
    "BackfillResumed",
    "ErrorInfo",
    "Event",
    "EventRegistry",
    "Recorded",
    "RerunQueued",
    "RerunRequested",
    "RunCancelled",
    "RunCreated",
    "RunFailed",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunSucceeded",
    "SchedulePaused",
    "ScheduleResumed",
    "TaskCancelled",
    "TaskFailed",
    "TaskMapped",
    "TaskNode",
    "TaskRetryScheduled",
    "TaskScheduled",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "Trigger",
    "TriggerRule",
    "Upcaster",
    "backfill_stream",
    "event_type",
    "run_stream",
    "schedule_stream",
]


def run_stream(run_id: str) -> str:
    """The stream id of a run's log."""
    return f"run:{run_id}"


# ---------------------------------------------------------------------------------------
# Value objects carried inside events


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


# ---------------------------------------------------------------------------------------
# The events. Base class keeps shared config; each subclass declares its stable tag.


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    VERSION: ClassVar[int] = 1


class RunCreated(_Event, frozen=True, kw_only=True, tag="run_created"):
    """A run came into being, pinned to one version of its workflow."""

    run_id: str
    workflow: str
    version: str
    tasks: tuple[TaskNode, ...]
    params: dict[str, Any] = {}
    trigger: Trigger = Trigger(kind="manual")
    idempotency_key: str | None = None


class RunStarted(_Event, frozen=True, kw_only=True, tag="run_started"):
    """An executor began working on the run."""

    executor: str | None = None


class TaskScheduled(_Event, frozen=True, kw_only=True, tag="task_scheduled"):
    """An attempt of a task is ready to run (its upstream tasks are done).

    ``not_before``: the attempt must not start earlier (a durable sleep, recorded so a
    restart keeps the same wake-up time).
    """

    task: str
    generation: int
    attempt: int
    not_before: datetime | None = None


class TaskMapped(_Event, frozen=True, kw_only=True, tag="task_mapped"):
    """A map task fanned out into ``count`` child tasks, ``task[0]`` … ``task[count-1]``,
    one per item of its upstream list; it succeeds with their outputs once all did."""

    task: str
    generation: int
    count: int


class TaskStarted(_Event, frozen=True, kw_only=True, tag="task_started"):
    """An executor started an attempt of a task."""

    task: str
    generation: int
    attempt: int
    executor: str | None = None


class TaskSucceeded(_Event, frozen=True, kw_only=True, tag="task_succeeded"):
    """A task attempt finished; its output is recorded exactly once."""

    task: str
    generation: int
    attempt: int
    output: Any = None
    assets: tuple[str, ...] = ()
    """Assets (tables, files) the task declares it produces: updated by this completion."""


class TaskRetryScheduled(_Event, frozen=True, kw_only=True, tag="task_retry_scheduled"):
    """A task attempt failed and will be retried at ``retry_at``."""

    task: str
    generation: int
    attempt: int
    error: ErrorInfo
    retry_at: datetime


class TaskFailed(_Event, frozen=True, kw_only=True, tag="task_failed"):
    """A task attempt failed for good (no retries left, or not retryable)."""

    task: str
    generation: int
    attempt: int
    error: ErrorInfo


class TaskSkipped(_Event, frozen=True, kw_only=True, tag="task_skipped"):
    """A task will not run in this generation (untaken branch, failed upstream)."""

    task: str
    generation: int
    reason: str


class TaskCancelled(_Event, frozen=True, kw_only=True, tag="task_cancelled"):
    """A pending or running task was cancelled with its run."""

    task: str
    generation: int
    reason: str = ""


class RunSucceeded(_Event, frozen=True, kw_only=True, tag="run_succeeded"):
    """Every task of the run succeeded or was skipped."""


class RunFailed(_Event, frozen=True, kw_only=True, tag="run_failed"):
    """The run ended because a task failed for good, or it ran out of time."""

    reason: str
    failed_tasks: tuple[str, ...] = ()


class RunCancelled(_Event, frozen=True, kw_only=True, tag="run_cancelled"):
    """The run was cancelled by a user or a policy."""

    reason: str = ""
    by: str | None = None


class RunPaused(_Event, frozen=True, kw_only=True, tag="run_paused"):
    """No new task is scheduled until the run is resumed; running tasks may finish."""

    reason: str = ""
    by: str | None = None


class RunResumed(_Event, frozen=True, kw_only=True, tag="run_resumed"):
    """A paused run continues from its log."""

    by: str | None = None


class RerunRequested(_Event, frozen=True, kw_only=True, tag="rerun_requested"):
    """Run ``tasks`` again (and, with ``downstream``, all that depends on them).

    The fold moves them to a new generation; upstream outputs are kept. A request id is
    applied once.
    """

    request_id: str
    tasks: tuple[str, ...]
    downstream: bool = False
    failed_only: bool = False
    by: str | None = None


class RerunQueued(_Event, frozen=True, kw_only=True, tag="rerun_queued"):
    """A rerun asked for while the run was still going: it is applied (as a
    ``RerunRequested`` with the same request id) once the run succeeds or fails, and
    dropped if the run is cancelled."""

    request_id: str
    tasks: tuple[str, ...]
    downstream: bool = False
    failed_only: bool = False
    by: str | None = None


class SchedulePaused(_Event, frozen=True, kw_only=True, tag="schedule_paused"):
    """A schedule stops creating runs (in the ``schedule:{workflow}`` stream)."""

    reason: str = ""
    by: str | None = None


class ScheduleResumed(_Event, frozen=True, kw_only=True, tag="schedule_resumed"):
    """A paused schedule creates runs again (missed ticks: as its catch-up policy says)."""

    by: str | None = None


class BackfillRequested(_Event, frozen=True, kw_only=True, tag="backfill_requested"):
    """A backfill: one run per schedule interval whose logical time is in [start, end)."""

    backfill_id: str
    workflow: str
    start: datetime
    end: datetime
    intervals: int
    max_parallel: int | None = None
    reprocess: Literal["none", "failed", "all"] = "none"
    by: str | None = None


class BackfillPaused(_Event, frozen=True, kw_only=True, tag="backfill_paused"):
    """No new run of the backfill starts; running ones finish."""

    by: str | None = None


class BackfillResumed(_Event, frozen=True, kw_only=True, tag="backfill_resumed"):
    by: str | None = None


class BackfillCancelled(_Event, frozen=True, kw_only=True, tag="backfill_cancelled"):
    """The backfill stops; its unfinished runs are cancelled."""

    by: str | None = None


def backfill_stream(backfill_id: str) -> str:
    return f"backfill:{backfill_id}"


def schedule_stream(workflow: str) -> str:
    """The stream id of a workflow's schedule."""
    return f"schedule:{workflow}"


Event: TypeAlias = (
    RunCreated
    | RunStarted
    | TaskScheduled
    | TaskMapped
    | TaskStarted
    | TaskSucceeded
    | TaskRetryScheduled
    | TaskFailed
    | TaskSkipped
    | TaskCancelled
    | RunSucceeded
    | RunFailed
    | RunCancelled
    | RunPaused
    | RunResumed
    | RerunRequested
    | RerunQueued
    | SchedulePaused
    | ScheduleResumed
    | BackfillRequested
    | BackfillPaused
    | BackfillResumed
    | BackfillCancelled
)

EVENT_TYPES: tuple[type[Event], ...] = typing.get_args(Event)


def event_type(event: Event) -> str:
    """The stable tag of an event, e.g. ``"task_succeeded"``."""
    return type(event).__struct_config__.tag  # type: ignore[return-value,unused-ignore]


# ---------------------------------------------------------------------------------------
# The envelope


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the store recorded it.

    ``seq`` numbers the events of one stream from 1; ``position`` orders all events of
    the store by commit; ``recorded_at`` is the commit time.
    """

    stream_id: str
    seq: int
    position: int
    recorded_at: datetime
    event: Event


# ---------------------------------------------------------------------------------------
# The versioned codec

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
"""A pure function from the stored data of version N to the data of version N + 1."""


class EventRegistry:
    """Encodes events and decodes stored ones, upcasting older versions on the way.

    ``upcasters`` maps ``(tag, from_version)`` to the function that lifts data of that
    version by one. Data already at the current version decodes on a fast path with no
    upcasting.
    """

    def __init__(
        self,
        types: Iterable[type[Any]] = EVENT_TYPES,
        upcasters: dict[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._types: dict[str, type[Any]] = {t.__struct_config__.tag: t for t in types}
        self._upcasters = dict(upcasters or {})
        union = tuple(self._types.values())
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            union[0] if len(union) == 1 else _union(union)
        )
        self._encoder = msgspec.json.Encoder()

    @property
    def tags(self) -> list[str]:
        return sorted(self._types)

    def version_of(self, tag: str) -> int:
        return int(self._type(tag).VERSION)

    def encode(self, event: Any) -> tuple[str, int, bytes]:
        """``(tag, version, JSON bytes)``; the JSON includes the ``type`` tag."""
        cls = type(event)
        return cls.__struct_config__.tag, cls.VERSION, self._encoder.encode(event)

    def decode(self, tag: str, version: int, data: bytes | str, *, where: str = "") -> Any:
        """Decode stored data of ``tag`` at ``version`` into the current event class."""
        cls = self._type(tag, where=where)
        try:
            if version == cls.VERSION:
                event = self._decoder.decode(data)
                if type(event) is not cls:
                    raise MalformedEvent(
                        where or tag,
                        f"data says type {event_type(event)!r} but the record says {tag!r}",
                    )
                return event
            if version > cls.VERSION:
                raise MalformedEvent(
                    where or tag,
                    f"{tag} version {version} is newer than this durable knows ({cls.VERSION})",
                    hint="upgrade durable to read this history",
                )
            raw = msgspec.json.decode(data)
            if not isinstance(raw, dict):
                raise MalformedEvent(where or tag, "event data is not a JSON object")
            for v in range(version, cls.VERSION):
                up = self._upcasters.get((tag, v))
                if up is None:
                    raise MalformedEvent(
                        where or tag,
                        f"no upcaster from {tag} version {v} to {v + 1}",
                        hint="this history predates a format durable no longer reads",
                    )
                raw = up(raw)
            raw["type"] = tag
            return msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise MalformedEvent(where or tag, f"invalid {tag} event: {exc}") from None
        except msgspec.DecodeError as exc:
            raise MalformedEvent(where or tag, f"not valid JSON: {exc}") from None

    def _type(self, tag: str, *, where: str = "") -> type[Any]:
        try:
            return self._types[tag]
        except KeyError:
            raise UnknownEventType(tag, list(self._types), where=where) from None


def _union(types: tuple[type[Any], ...]) -> Any:
    # typing.Union of a runtime tuple: msgspec accepts it as a tagged union.
    from typing import Union

    return Union[types]  # noqa: UP007


REGISTRY = EventRegistry()
"""The registry of this version of durable's events (no older versions exist yet)."""
