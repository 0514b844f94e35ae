"""The API's request and response bodies, and its query strings, as msgspec structs.

Request bodies forbid unknown fields, so a misspelt field is a 400 naming it rather
than silently ignored. ``proto/openapi.yaml`` is generated from these types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from durable.application.tokens import Scope
from durable.core.attempts_view import Attempt, AttemptsView
from durable.core.history import ExportedEvent
from durable.core.runs_view import RunRow
from durable.core.state import RunStatus, TaskStatus

__all__ = [
    "ArchiveView",
    "AssetList",
    "AssetProducer",
    "AssetUpdateView",
    "AssetView",
    "AttemptList",
    "AttemptView",
    "BackfillCreate",
    "BackfillList",
    "BackfillView",
    "CommandBody",
    "CommandResult",
    "DeadLetterList",
    "DeadLetterView",
    "DeadLettersQuery",
    "ErrorView",
    "EventPage",
    "EventsQuery",
    "Graph",
    "GraphEdge",
    "GraphNode",
    "Grid",
    "GridCell",
    "GridQuery",
    "GridRun",
    "Health",
    "HookRuns",
    "LastRun",
    "LogLine",
    "LogPage",
    "LogStreamEnd",
    "LogStreamQuery",
    "LogsQuery",
    "Problem",
    "RerunBody",
    "RerunResult",
    "RunDetail",
    "RunPage",
    "RunQuery",
    "RunSummary",
    "RunsQuery",
    "S3EventNotification",
    "ScheduleList",
    "ScheduleView",
    "TaskView",
    "TokenCreate",
    "TokenCreated",
    "TokenList",
    "TriggerBody",
    "TriggerResult",
    "TriggerView",
    "VersionDetail",
    "VersionView",
    "WaitQuery",
    "WebhookParams",
    "WorkflowDetail",
    "WorkflowList",
    "WorkflowSource",
    "WorkflowSummary",
]

Text = Annotated[str, msgspec.Meta(max_length=1000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
LineId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
AttemptNumber = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Health(msgspec.Struct, kw_only=True):
    status: str


class Problem(msgspec.Struct, kw_only=True):
    """An error (RFC 9457 ``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


# -- workflows ----------------------------------------------------------------------------


class LastRun(msgspec.Struct, kw_only=True):
    run_id: str
    status: RunStatus
    created_at: datetime


class WorkflowSummary(msgspec.Struct, kw_only=True):
    name: str
    version: str
    description: str
    params: dict[str, Any]
    tasks: int
    triggers: list[str]
    """What starts its runs besides the API: schedule, kafka, s3, webhook, assets."""
    last_run: LastRun | None
    next_fire: datetime | None
    """When its schedule fires next (as ``GET /api/v1/schedules`` says); None: unscheduled."""
    success_rate: float | None
    """Succeeded ÷ finished (succeeded, failed, cancelled) over its latest 20 finished
    runs; None before any run finished."""
    recent: list[RunStatus]
    """The statuses of its latest 10 runs, newest first."""


class WorkflowList(msgspec.Struct, kw_only=True):
    workflows: list[WorkflowSummary]


class GraphNode(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    trigger_rule: str
    """all_success, none_failed (a join), one_failed (a catch), all_done (a finally)."""
    group: str | None
    """The switch whose branches include this task, if any."""
    branches: dict[str, list[str]] | None
    """A switch's cases: value -> the tasks it runs."""
    default_branch: list[str] | None
    """A switch's tasks when no case matches."""
    over: str | None
    """A map's upstream task whose list it maps over (one child task per item)."""


class GraphEdge(msgspec.Struct, kw_only=True):
    source: str
    target: str


class Graph(msgspec.Struct, kw_only=True):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class VersionView(msgspec.Struct, kw_only=True):
    version: str
    first_seen: datetime
    source: str | None
    runs: int


class WorkflowDetail(msgspec.Struct, kw_only=True):
    name: str
    version: str
    definition: dict[str, Any]
    graph: Graph
    versions: list[VersionView]
    schedule: ScheduleView | None
    triggers: list[str]
    params: dict[str, Any]


class VersionDetail(msgspec.Struct, kw_only=True):
    version: str
    first_seen: datetime
    runs: int
    definition: dict[str, Any]
    source_text: str | None
    """The text of the file the version was defined in, as first recorded."""


class WorkflowSource(msgspec.Struct, kw_only=True):
    path: str | None
    language: Literal["python", "yaml"]
    text: str


class GridQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 25


class GridCell(msgspec.Struct, kw_only=True):
    status: TaskStatus
    attempt: int


class GridRun(msgspec.Struct, kw_only=True):
    run_id: str
    status: RunStatus
    created_at: datetime
    logical_time: datetime | None
    generation: int
    cells: dict[str, GridCell]
    """Each task of the run (map items left out) by name."""


class Grid(msgspec.Struct, kw_only=True):
    tasks: list[str]
    """The tasks of the workflow's current definition, in topological order."""
    runs: list[GridRun]
    """Newest first."""


class TriggerBody(_Body):
    """Start a run. Send an ``Idempotency-Key`` header to make retries safe."""

    params: dict[str, Any] = {}
    logical_date: datetime | None = None
    """The run's logical time (as a backfilled or scheduled run has), if any."""


class TriggerResult(msgspec.Struct, kw_only=True):
    run_id: str
    created: bool
    """False when the ``Idempotency-Key`` had already started this run."""


# -- hooks --------------------------------------------------------------------------------

WebhookParams = dict[str, Any]
"""A webhook's body: the run's params, a JSON object."""


class S3EventBucket(msgspec.Struct, kw_only=True):
    name: str


class S3EventObject(msgspec.Struct, kw_only=True):
    key: str
    """URL-encoded, as the storage sends it."""
    size: int = 0
    eTag: str | None = None
    versionId: str | None = None


class S3EventEntity(msgspec.Struct, kw_only=True):
    bucket: S3EventBucket
    object: S3EventObject


class S3EventRecord(msgspec.Struct, kw_only=True):
    eventName: str
    """Only ``ObjectCreated:*`` records start runs; others are skipped."""
    s3: S3EventEntity


class S3EventNotification(msgspec.Struct, kw_only=True):
    """An S3 event notification (the AWS / MinIO JSON shape)."""

    Records: list[S3EventRecord]


class HookRuns(msgspec.Struct, kw_only=True):
    runs: list[TriggerResult]
    """One per created object version; ``created`` is False for one already seen."""


# -- runs ---------------------------------------------------------------------------------


class RunsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow: Name | None = None
    status: RunStatus | None = None
    trigger: Name | None = None
    """Only runs started by this trigger kind (manual, http, schedule, kafka, ...)."""
    since: datetime | None = None
    """Only runs created at or after this time."""
    until: datetime | None = None
    """Only runs created before this time."""
    limit: Limit = 50
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """``next_cursor`` of the previous page."""


class ArchiveView(msgspec.Struct, kw_only=True):
    """Where an archived run's history is: its events (and task logs) left PostgreSQL
    for these files; it is read from them, and cannot change until restored."""

    uri: str
    """The events file: gzip JSON lines, as ``durable export`` writes them."""
    archived_at: datetime
    events: int
    logs_uri: str | None
    """Its task log lines (None: it had none)."""


class RunSummary(RunRow, frozen=True, kw_only=True):
    """A run as listed: the row of the ``runs`` read model."""

    archived: ArchiveView | None = None
    """Set when the run is archived (``durable restore RUN`` brings it back)."""


class RunPage(msgspec.Struct, kw_only=True):
    runs: list[RunSummary]
    next_cursor: str | None


class RunQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    at_seq: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    """The run as it was after this event (its state folded from events 1..at_seq)."""


class TriggerView(msgspec.Struct, kw_only=True):
    kind: str
    source: str | None
    key: str | None
    """The run's idempotency key."""
    logical_time: datetime | None
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    detail: dict[str, Any]
    """What else is known of the trigger: kafka topic, partition, offset; s3 bucket, key,
    version; schedule; backfill_id; asset and run_id; request_key (the caller's
    Idempotency-Key); traceparent."""


class ErrorView(msgspec.Struct, kw_only=True):
    type: str
    message: str
    retryable: bool


class TaskView(msgspec.Struct, kw_only=True):
    name: str
    status: TaskStatus
    upstream: list[str]
    generation: int
    attempt: int
    executions: int
    """How often the task body ran, over every attempt and generation."""
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    output: Any
    error: ErrorView | None
    reason: str | None
    retry_at: datetime | None
    parent: str | None
    mapped: int | None


class RunDetail(RunSummary, frozen=True, kw_only=True):
    generation: int
    reason: str | None
    reruns: list[str]
    tasks: list[TaskView]
    trigger: TriggerView


AttemptView = Attempt
"""One attempt of a task in one generation (attempt 0: the task ended without any)."""

AttemptList = AttemptsView
"""A run's attempts in the order they were scheduled, and the run's own span."""


class EventsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    after: Seq = 0
    """Events after this sequence number."""
    limit: Limit = 100


class EventPage(msgspec.Struct, kw_only=True):
    events: list[ExportedEvent]
    next_after: int
    """Pass as ``after`` for the next page."""
    more: bool


class LogsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task: Name | None = None
    attempt: AttemptNumber | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000
    after: LineId = 0
    """Lines with an id past this one (``next_after`` of the previous page)."""


class LogStreamQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task: Name | None = None
    """Only this task's lines; the stream ends when the task has ended."""
    attempt: AttemptNumber | None = None
    after: LineId = 0
    """Lines with an id past this one (``Last-Event-ID`` wins when it is further)."""


class LogLine(msgspec.Struct, kw_only=True):
    task: str
    generation: int
    attempt: int
    at: datetime
    stream: str
    """``stdout``, ``stderr`` (shell tasks), ``log``, ``warning``, ``error`` (ctx.log)."""
    message: str
    id: int
    """Grows in the order lines were written: pass the last one seen as ``after``."""


class LogPage(msgspec.Struct, kw_only=True):
    lines: list[LogLine]
    """In the order they were written (by id)."""
    next_after: int
    """Pass as ``after`` for the next page (or to look for new lines later)."""
    more: bool


class LogStreamEnd(msgspec.Struct, kw_only=True):
    """The data of the log stream's last event, ``end``."""

    status: RunStatus
    """The run's status."""
    task: str | None = None
    task_status: TaskStatus | None = None


class WaitQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    timeout: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30.0
    """Seconds to wait for the run to end; the run is returned either way."""


class CommandBody(_Body):
    reason: Text | None = None


class CommandResult(msgspec.Struct, kw_only=True):
    run_id: str
    status: RunStatus
    applied: bool
    """False when the run already was in the asked state (nothing appended)."""


class RerunBody(_Body):
    tasks: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=10_000)]
    downstream: bool = False
    """Also rerun every task that depends on the selected ones."""
    failed_only: bool = False
    """Only the selected tasks that did not succeed."""
    dry_run: bool = False
    """Return the plan without changing anything."""
    request_id: Name | None = None
    """The same id never reruns twice (the ``Idempotency-Key`` header is used if absent)."""
    queue: bool = False
    """If the run is still going, apply the rerun when it succeeds or fails (else: 409)."""


class RerunResult(msgspec.Struct, kw_only=True):
    run_id: str
    request_id: str
    generation: int
    rerun: list[str]
    """Tasks that run again, in DAG order."""
    reused: list[str]
    """Tasks whose outputs are kept: they do not run again."""
    applied: bool
    """False for a dry run, and for a request id that was already applied."""
    queued: bool = False
    """The run was still going: the rerun is applied when it ends (the plan may change
    by then with ``failed_only``)."""


# -- backfills and schedules --------------------------------------------------------------


class BackfillCreate(_Body):
    workflow: Name
    start: datetime
    end: datetime
    max_parallel: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    reprocess: Literal["none", "failed", "all"] = "none"
    dry_run: bool = False


class IntervalView(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime
    action: str


class BackfillView(msgspec.Struct, kw_only=True):
    backfill_id: str | None
    """None for a dry run."""
    workflow: str
    start: datetime
    end: datetime
    status: str
    intervals: int
    max_parallel: int | None
    reprocess: str
    runs: dict[str, int]
    """Runs of the backfill's intervals by status."""
    plan: list[IntervalView] | None = None


class BackfillList(msgspec.Struct, kw_only=True):
    backfills: list[BackfillView]


class ScheduleView(msgspec.Struct, kw_only=True):
    workflow: str
    cron: str | None
    every_seconds: float | None
    timezone: str
    catchup: str
    paused: bool
    last_logical_time: datetime | None
    next_fire: datetime


class ScheduleList(msgspec.Struct, kw_only=True):
    schedules: list[ScheduleView]


# -- assets and dead letters -------------------------------------------------------------


class AssetUpdateView(msgspec.Struct, kw_only=True):
    workflow: str
    run_id: str
    task: str
    generation: int
    updated_at: datetime


class AssetProducer(msgspec.Struct, kw_only=True):
    workflow: str
    task: str


class AssetView(msgspec.Struct, kw_only=True):
    asset: str
    last_update: AssetUpdateView | None
    producers: list[AssetProducer]
    """Tasks of the loaded workflows that declare they produce it."""
    consumers: list[str]
    """Loaded workflows that run when it is updated."""


class AssetList(msgspec.Struct, kw_only=True):
    assets: list[AssetView]


class DeadLettersQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    limit: Limit = 50


class DeadLetterView(msgspec.Struct, kw_only=True):
    id: int
    source: str
    topic: str
    partition: int
    offset: int
    workflow: str | None
    reason: str
    recorded_at: datetime
    key_preview: str | None
    """The message key's first 500 characters (UTF-8, undecodable bytes replaced)."""
    value_preview: str | None
    headers: dict[str, str]


class DeadLetterList(msgspec.Struct, kw_only=True):
    dead_letters: list[DeadLetterView]
    """Newest first."""


# -- tokens -------------------------------------------------------------------------------


class TokenCreate(_Body):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.@:-]{1,100}$")]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=4)]


class TokenView(msgspec.Struct, kw_only=True):
    token_id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None


class TokenCreated(TokenView, kw_only=True):
    token: str
    """The bearer token: shown this once, only its hash is stored."""


class TokenList(msgspec.Struct, kw_only=True):
    tokens: list[TokenView]
