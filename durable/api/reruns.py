"""``POST /api/v1/runs/{run_id}/rerun``: rerun tasks of a finished run as a new
generation (upstream outputs kept), or queue it until a running run ends; a dry run
answers with the plan. The same request id never reruns twice."""

from __future__ import annotations

from durable.api import schemas as s
from durable.api.routing import IDEMPOTENCY_KEY, V1, ApiError, Call, resource, route, valid_id
from durable.api.runs import load_state, run_id_of
from durable.application.commands import apply_command
from durable.application.ids import new_run_id
from durable.core.decide import Rerun, decide_command
from durable.core.errors import StreamNotFound
from durable.core.events import RerunQueued, RerunRequested, run_stream
from durable.core.fold import evolve
from durable.core.state import RunState, rerun_plan
from durable.store.base import EventStore

__all__ = ["ROUTES"]


@route(
    "POST",
    f"{V1}/runs/{{run_id}}/rerun",
    summary="Rerun tasks of a finished run as a new generation (dry_run: only the plan)",
    scope="operate",
    body=s.RerunBody,
    responses={200: s.RerunResult},
    errors=(400, 404, 409),
    headers=(IDEMPOTENCY_KEY,),
)
async def rerun_run(call: Call[s.RerunBody, None]) -> s.RerunResult:
    run_id, body, store = run_id_of(call), call.body, call.deps.store
    request_id = body.request_id or call.request.headers.get("Idempotency-Key")
    if request_id is not None and not valid_id(request_id):
        raise ApiError(400, "bad request_id", "use 1-200 letters, digits and _ . : @ -")
    command = Rerun(
        request_id=request_id or f"rerun-{new_run_id()}",
        tasks=tuple(body.tasks),
        downstream=body.downstream,
        failed_only=body.failed_only,
        by=call.by,
        queue=body.queue,
    )
    state = await load_state(store, run_id, archives=call.deps.archives)
    if body.dry_run:
        decide_command(state, command)  # refuses what the real rerun would refuse
        chosen, kept = rerun_plan(
            state, command.tasks, downstream=body.downstream, failed_only=body.failed_only
        )
        return s.RerunResult(
            run_id=run_id,
            request_id=command.request_id,
            generation=state.generation + 1,
            rerun=chosen,
            reused=kept,
            applied=False,
        )
    before, appended = await apply_command(store, run_id, command)
    if appended:
        chosen, kept = rerun_plan(
            before, command.tasks, downstream=body.downstream, failed_only=body.failed_only
        )
        return s.RerunResult(
            run_id=run_id,
            request_id=command.request_id,
            generation=before.generation + 1,
            rerun=chosen,
            reused=kept,
            applied=True,
            queued=isinstance(appended[-1].event, RerunQueued),
        )
    # already applied: answer with what that request did
    return await _earlier_rerun(store, run_id, command.request_id)


async def _earlier_rerun(store: EventStore, run_id: str, request_id: str) -> s.RerunResult:
    """What an already known rerun request did (or, if still queued, will do)."""
    state: RunState | None = None
    queued: RerunQueued | None = None
    for r in await store.read_stream(run_stream(run_id)):
        event = r.event
        if isinstance(event, RerunQueued) and event.request_id == request_id:
            queued = event
        if (
            isinstance(event, RerunRequested)
            and event.request_id == request_id
            and state is not None
        ):
            return _rerun_result(state, event, applied=False)
        state = evolve(state, r)
    if queued is not None and state is not None:
        return _rerun_result(state, queued, applied=False, queued=True)
    raise StreamNotFound(run_stream(run_id), what=f"rerun {request_id!r} of run {run_id}")


def _rerun_result(
    state: RunState,
    event: RerunRequested | RerunQueued,
    *,
    applied: bool,
    queued: bool = False,
) -> s.RerunResult:
    chosen, kept = rerun_plan(
        state, event.tasks, downstream=event.downstream, failed_only=event.failed_only
    )
    return s.RerunResult(
        run_id=state.run_id,
        request_id=event.request_id,
        generation=state.generation + 1,
        rerun=chosen,
        reused=kept,
        applied=applied,
        queued=queued,
    )


ROUTES = resource("runs", rerun_run)
