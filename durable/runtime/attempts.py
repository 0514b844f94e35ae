"""One attempt of a task, as the run driver runs it: its context, its body, its outcome.

Pure helpers around the I/O of an attempt: what a task sees (:func:`task_context`), how
its body's exceptions become an :class:`~durable.core.events.ErrorInfo` that says whether
a retry can help (:func:`run_attempt`: an unexpected exception is a retryable task
failure, never an executor crash). Its log goes to the store through a
:class:`~durable.runtime.logs.LiveLog`.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from durable.core.errors import DurableError, TaskError
from durable.core.events import ErrorInfo
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState
from durable.core.step import map_items
from durable.core.tasks import TaskSpec
from durable.core.trace import attempt_traceparent
from durable.runtime.logs import LiveLog
from durable.runtime.tasks import Resources, run_task
from durable.workflows.context import TaskContext, TaskLog

__all__ = ["AttemptResult", "run_attempt", "task_context"]


class AttemptResult(msgspec.Struct):
    """What an attempt came to: its output or its error, and its log."""

    task: str
    generation: int
    attempt: int
    output: Any = None
    error: ErrorInfo | None = None
    skipped: str | None = None
    """Why the attempt gave up softly (the task is skipped, not failed)."""
    log: LiveLog | None = None


def task_context(
    state: RunState,
    spec: WorkflowSpec,
    name: str,
    generation: int,
    attempt: int,
    task_log: TaskLog,
) -> TaskContext:
    """What the attempt ``name`` sees: params, upstream outputs, its map item, its span."""
    task = spec.task(name)
    trigger = state.trigger
    item: Any = None
    index: int | None = None
    parent = state.tasks[name].parent
    if parent is not None:
        index = int(name[name.rindex("[") + 1 : -1])
        items = map_items(state, spec, parent)
        item = items[index] if isinstance(items, list) else None
    return TaskContext(
        item=item,
        index=index,
        run_id=state.run_id,
        workflow=state.workflow,
        task=name,
        attempt=attempt,
        generation=generation,
        params=state.params,
        upstream={u: state.tasks[u].output for u in task.upstream},
        logical_time=trigger.logical_time,
        data_interval_start=trigger.data_interval_start,
        data_interval_end=trigger.data_interval_end,
        log=task_log,
        traceparent=attempt_traceparent(
            state.run_id, trigger.traceparent, name, generation, attempt
        ),
    )


async def run_attempt(
    spec: TaskSpec,
    ctx: TaskContext,
    *,
    resources: Resources,
    callable_for: Callable[[str], Callable[..., Any]],
    not_before: datetime | None,
) -> tuple[Any, ErrorInfo | None]:
    """Run the attempt's body: ``(output, None)``, or ``(None, error)``."""
    try:
        async with asyncio.timeout(spec.timeout):
            output = await run_task(
                spec,
                ctx,
                resources=resources,
                callable_for=callable_for,
                not_before=not_before,
            )
        msgspec.json.encode(output)  # an output must be JSON: fail the attempt now
        return output, None
    except TimeoutError:
        return None, ErrorInfo(type="TaskTimeout", message=f"timed out after {spec.timeout:g} s")
    except TaskError as exc:
        return None, ErrorInfo(type=exc.type, message=exc.message, retryable=exc.retryable)
    except DurableError as exc:  # e.g. a task's callable cannot be imported
        return None, ErrorInfo(type=type(exc).__name__, message=str(exc), retryable=exc.retryable)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return None, ErrorInfo(
            type=type(exc).__name__,
            message=str(exc),
            retryable=True,
            traceback="".join(traceback.format_exception(exc)[-8:]),
        )
