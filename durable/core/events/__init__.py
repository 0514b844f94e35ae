"""The events of durable's streams, their envelope, and their versioned codec.

Every state change is an event appended to a stream. There are three kinds of stream,
each with its own union of events, and each fold reads only its own:

- a run (``run:{run_id}``): :data:`RunEvent`, in :mod:`~durable.core.events.run`
- a schedule (``schedule:{workflow}``): :data:`ScheduleEvent`, in
  :mod:`~durable.core.events.schedule`
- a backfill (``backfill:{backfill_id}``): :data:`BackfillEvent`, in
  :mod:`~durable.core.events.backfill`

The notification outbox (``notification_requested``, ``notification_sent``,
``notification_failed``) and ``sla_missed``, in :mod:`~durable.core.events.notify`, may
be in a run's stream and (the outbox) in a backfill's.

:data:`Event` is the union of all three: the store and the codec
(:class:`EventRegistry`, in :mod:`~durable.core.events.codec`) deal in it, and
:func:`stream_kind` says which union a stream holds. Events are frozen, keyword-only
``msgspec.Struct`` s with a stable ``tag``: a tag is never renamed; a changed shape gets
a higher ``VERSION`` and an upcaster.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from durable.core.events.backfill import (
    BACKFILL_EVENT_TYPES,
    BackfillCancelled,
    BackfillEvent,
    BackfillFinished,
    BackfillPaused,
    BackfillRequested,
    BackfillResumed,
    backfill_stream,
)
from durable.core.events.codec import REGISTRY, EventRegistry, Upcaster
from durable.core.events.envelope import (
    EVENT_TYPES,
    STREAM_KINDS,
    Event,
    Recorded,
    StreamKind,
    backfill_event,
    event_type,
    run_event,
    schedule_event,
    stream_kind,
)
from durable.core.events.notify import (
    NOTIFICATION_EVENT_TYPES,
    NOTIFY_ON,
    ChannelKind,
    NotificationEvent,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    NotifyOn,
    NotifyRule,
    SlaKind,
    SlaMissed,
)
from durable.core.events.run import (
    RUN_EVENT_TYPES,
    RerunQueued,
    RerunRequested,
    RunCancelled,
    RunCreated,
    RunEvent,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSucceeded,
    TaskCancelled,
    TaskFailed,
    TaskMapped,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
    run_stream,
)
from durable.core.events.schedule import (
    SCHEDULE_EVENT_TYPES,
    ScheduleEvent,
    SchedulePaused,
    ScheduleResumed,
    schedule_stream,
)
from durable.core.events.values import ErrorInfo, EventBase, TaskNode, Trigger, TriggerRule

__all__ = [
    "BACKFILL_EVENT_TYPES",
    "EVENT_TYPES",
    "NOTIFICATION_EVENT_TYPES",
    "NOTIFY_ON",
    "REGISTRY",
    "RUN_EVENT_TYPES",
    "SCHEDULE_EVENT_TYPES",
    "STREAM_KINDS",
    "BackfillCancelled",
    "BackfillEvent",
    "BackfillFinished",
    "BackfillPaused",
    "BackfillRequested",
    "BackfillResumed",
    "ChannelKind",
    "ErrorInfo",
    "Event",
    "EventBase",
    "EventRegistry",
    "NotificationEvent",
    "NotificationFailed",
    "NotificationRequested",
    "NotificationSent",
    "NotifyOn",
    "NotifyRule",
    "Recorded",
    "RerunQueued",
    "RerunRequested",
    "RunCancelled",
    "RunCreated",
    "RunEvent",
    "RunFailed",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunSucceeded",
    "ScheduleEvent",
    "SchedulePaused",
    "ScheduleResumed",
    "SlaKind",
    "SlaMissed",
    "StreamKind",
    "TaskCancelled",
    "TaskFailed",
    "TaskMapped",
    "TaskNode",
    "TaskRetryScheduled",
    "TaskScheduled",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "TaskWaiting",
    "Trigger",
    "TriggerRule",
    "Upcaster",
    "backfill_event",
    "backfill_stream",
    "event_type",
    "run_event",
    "run_stream",
    "schedule_event",
    "schedule_stream",
    "stream_kind",
]
