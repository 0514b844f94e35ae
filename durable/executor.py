"""The durable executor: claims runs, replays their logs, runs their tasks, records it all.

One :class:`RunDriver` per claimed run is the only writer of that run's stream: it folds
the log into state, asks the pure :func:`~durable.decide.decide` what to do, appends the
decision, and starts task attempts. Every append is fenced by the run's seq, so an
executor that lost its lease can never record a completion; after a crash, the next
executor replays the log and retries the attempts whose outcome was not recorded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from durable.backfill import backfill_state
from durable.dag import WorkflowSpec, coerce_params
from durable.decide import attempt_failed, decide, lost_attempts, map_items, next_wakeup
from durable.errors import (
    ConcurrencyConflict,
    DuplicateRun,
    DurableError,
    StoreUnavailable,
    TaskError,
)
from durable.events import (
    ErrorInfo,
    Event,
    Recorded,
    RunCancelled,
    RunCreated,
    TaskStarted,
    TaskSucceeded,
    Trigger,
    backfill_stream,
    run_stream,
)
from durable.fold import evolve, fold
from durable.ids import new_run_id
from durable.state import RunState
from durable.store.leases import LeaseManager
from durable.store.postgres import CONTROL_CHANNEL, RUNS_CHANNEL, PostgresEventStore
from durable.tasks import Resources, run_task
from durable.tasks import sql as sql_task
from durable.workflows.context import TaskContext, TaskLog
from durable.workflows.loader import LoadedWorkflow, WorkflowRegistry

__all__ = ["Executor", "Slots", "register_versions", "start_run"]

log = logging.getLogger("durable.executor")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Slots:
    """Free task slots: a non-blocking take, and a fair blocking one."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_take(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as we were cancelled: pass it on
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the waiter
                return
        self._free += 1


async def register_versions(pool: asyncpg.Pool, registry: WorkflowRegistry) -> None:
    """Record every loaded workflow version (``durable versions`` lists them)."""
    rows = [
        (w.spec.name, w.spec.version, msgspec.json.encode(w.spec.to_dict()), w.spec.source)
        for w in registry
    ]
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO durable.workflow_versions (workflow, version, definition, source) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            rows,
        )


async def start_run(
    store: PostgresEventStore,
    spec: WorkflowSpec,
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    trigger: Trigger | None = None,
) -> tuple[str, bool]:
    """Create a run of ``spec``: durable once this returns. ``(run_id, created)``; with
    an idempotency key already used, the existing run's id and ``False``."""
    values = coerce_params(spec.params, params, where=f"workflow {spec.name!r}")
    run_id = run_id or new_run_id()
    created = RunCreated(
        run_id=run_id,
        workflow=spec.name,
        version=spec.version,
        tasks=spec.nodes(),
        params=values,
        trigger=trigger or Trigger(kind="manual"),
        idempotency_key=idempotency_key,
    )
    try:
        await store.append(run_stream(run_id), 0, [created])
    except DuplicateRun as exc:
        return exc.existing_run_id, False
    return run_id, True


class Executor:
    """Runs workflows: any number of executors share one database."""

    def __init__(
        self,
        store: PostgresEventStore,
        registry: WorkflowRegistry,
        *,
        executor_id: str | None = None,
        max_tasks: int = 64,
        max_runs: int = 10_000,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.registry = registry
        self.id = executor_id or f"{socket.gethostname()}:{os.getpid()}"
        self.leases = LeaseManager(store.pool, self.id, ttl=lease_seconds)
        self.slots = Slots(max_tasks)
        self.max_runs = max_runs
        self.poll_interval = poll_interval
        self.clock = clock
        self.resources = Resources(store.pool, threads=max_tasks)
        self.drivers: dict[str, RunDriver] = {}
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; then stop every run cleanly and let go of them."""
        await register_versions(self.store.pool, self.registry)
        await self._listen()
        heartbeat = asyncio.create_task(self._heartbeat(), name="durable-heartbeat")
        try:
            while not stop.is_set():
                try:
                    await self._claim()
                except (StoreUnavailable, OSError, asyncpg.PostgresError) as exc:
                    log.warning("claiming runs failed, will retry: %s", exc)
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            heartbeat.cancel()
            drivers = list(self.drivers.values())
            for driver in drivers:
                driver.shutdown()
            await asyncio.gather(*(d.done for d in drivers), return_exceptions=True)
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    await self._listener.close()
            await self.resources.close()

    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self.store.dsn, timeout=10)
            await conn.add_listener(RUNS_CHANNEL, lambda *_: self._wake.set())
            await conn.add_listener(CONTROL_CHANNEL, self._on_control)
            self._listener = conn
        except (OSError, asyncpg.PostgresError) as exc:  # polling still finds the work
            log.warning("LISTEN failed, falling back to polling: %s", exc)

    def _on_control(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        driver = self.drivers.get(payload)
        if driver is not None:
            driver.poke()
        else:
            self._wake.set()  # a resumed run needs an executor

    async def _claim(self) -> None:
        free = self.max_runs - len(self.drivers)
        keys = [f"{name}@{version}" for name, version in self.registry.versions()]
        for run_id in await self.leases.claim(keys, min(free, 200)):
            if run_id in self.drivers:
                # Its driver is letting go right now (it released the lease, it has not
                # left yet): give the claim back, the next poll takes the run properly.
                # Kept, the lease would have no driver to renew it, and stall the run.
                await self.leases.release(run_id)
                continue
            driver = RunDriver(self, run_id)
            self.drivers[run_id] = driver
            driver.start()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.leases.ttl / 3)
            try:
                held = await self.leases.renew(list(self.drivers))
            except (StoreUnavailable, OSError, asyncpg.PostgresError) as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for run_id, driver in list(self.drivers.items()):
                if run_id not in held and driver.started_before_heartbeat:
                    log.warning("lost the lease on run %s; stopping it here", run_id)
                    driver.lease_lost()
            for driver in self.drivers.values():
                driver.started_before_heartbeat = True

    def forget(self, run_id: str) -> None:
        self.drivers.pop(run_id, None)
        self._wake.set()  # room for another run


class _Result(msgspec.Struct):
    task: str
    generation: int
    attempt: int
    output: Any = None
    error: ErrorInfo | None = None
    log: TaskLog | None = None


class RunDriver:
    """Drives one run on behalf of an executor."""

    def __init__(self, executor: Executor, run_id: str) -> None:
        self.ex = executor
        self.run_id = run_id
        self.stream = run_stream(run_id)
        self.state: RunState | None = None
        self.loaded: LoadedWorkflow | None = None
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.attempts: dict[str, asyncio.Task[None]] = {}
        self.waiting: set[str] = set()
        self._slot_waiters: set[asyncio.Task[None]] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started_before_heartbeat = False
        self._stop: str | None = None  # "shutdown" | "lost"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"durable-run-{self.run_id}")

    def poke(self) -> None:
        self.inbox.put_nowait(("poke",))

    def shutdown(self) -> None:
        self._stop = self._stop or "shutdown"
        self.inbox.put_nowait(("stop",))

    def lease_lost(self) -> None:
        self._stop = "lost"
        self.inbox.put_nowait(("stop",))

    @property
    def spec(self) -> WorkflowSpec:
        assert self.loaded is not None
        return self.loaded.spec

    # -- the loop -----------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._drive()
        except asyncio.CancelledError:
            self._stop = self._stop or "shutdown"
        except Exception:
            log.exception("run %s: driver failed; releasing it for another try", self.run_id)
        finally:
            for waiter in self._slot_waiters:
                waiter.cancel()
            for attempt in self.attempts.values():
                attempt.cancel()
            if self.attempts:
                await asyncio.gather(*self.attempts.values(), return_exceptions=True)
            if self._stop != "lost":
                with contextlib.suppress(Exception):
                    await self.ex.leases.release(self.run_id)
            self.ex.forget(self.run_id)
            if not self.done.done():
                self.done.set_result(None)

    async def _drive(self) -> None:
        self.state = fold(await self.ex.store.read_stream(self.stream))
        if self.state is None:
            return
        self.loaded = self.ex.registry.version(self.state.workflow, self.state.version)
        if self.loaded is None:
            return  # claimed by mistake: another executor has this version
        if self.state.status == "pending" and not await self._may_start():
            return  # queued (slots taken, backfill paused): claimed again later
        await self._append(lost_attempts(self.state, self.spec, self.ex.clock()))
        while self._stop is None:
            await self._advance()
            state = self.state
            if state.is_terminal or (state.status == "paused" and not self.attempts):
                return
            message = await self._next_message()
            while message is not None and self._stop is None:
                await self._handle(message)
                message = self.inbox.get_nowait() if not self.inbox.empty() else None

    async def _may_start(self) -> bool:
        """Whether a pending run may start now: its workflow's max_active_runs and, for a
        backfill's run, the backfill's state and max_parallel."""
        assert self.state is not None
        limits: list[tuple[str, str, int]] = []
        if self.spec.max_active_runs:
            limits.append(("workflow", self.spec.name, self.spec.max_active_runs))
        trigger = self.state.trigger
        if trigger.kind == "backfill" and trigger.source:
            records = await self.ex.store.read_stream(backfill_stream(trigger.source))
            backfill = backfill_state(r.event for r in records)
            if backfill is not None:
                if backfill.status == "cancelled":
                    await self._append([RunCancelled(reason="backfill cancelled")])
                    return False
                if backfill.status == "paused":
                    return False
                if backfill.request.max_parallel:
                    limits.append(("trigger_source", trigger.source, backfill.request.max_parallel))
        return not limits or await self.ex.leases.take_slot(self.run_id, limits)

    async def _next_message(self) -> Any:
        assert self.state is not None
        wake = next_wakeup(self.state, self.spec)
        timeout = None
        if wake is not None:
            timeout = max(0.0, (wake - self.ex.clock()).total_seconds())
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    async def _handle(self, message: Any) -> None:
        match message:
            case ("poke",):
                await self._refresh()
            case ("stop",):
                return
            case ("slot", task):
                self.waiting.discard(task)
                await self._start_waiting(task)
            case ("tx", task, generation, attempt, ctx, task_log):
                await self._transactional(task, generation, attempt, ctx, task_log)
            case _Result():
                await self._record_result(message)

    async def _advance(self, first: list[Event] | None = None) -> bool:
        """Decide and append until nothing more is to be done now.

        ``first`` (a task's result) goes into the same append as the decisions it makes
        possible: one commit records a completion, schedules what follows and starts it.
        Returns False when ``first`` could not be appended (the log moved on).
        """
        assert self.state is not None
        pending = list(first or [])
        while self._stop is None:
            now = self.ex.clock()
            sim = self.state
            for e in pending:
                sim = evolve(sim, _simulated(sim, e, now))
            # Chain decisions in memory until there are none: a start schedules tasks, a
            # fan-out schedules its children, the last child finishes its map task... —
            # all of it goes into one append.
            events: list[Event] = []
            for _ in range(10_000):
                more = decide(sim, self.spec, now, executor=self.ex.id)
                if not more:
                    break
                for e in more:
                    sim = evolve(sim, _simulated(sim, e, now))
                events += more
            starts: list[TaskStarted] = []
            if sim.status == "running":
                for t in sim.tasks.values():
                    if (
                        t.status == "scheduled"
                        and t.name not in self.attempts
                        and t.name not in self.waiting
                        and (t.not_before is None or t.not_before <= now)
                    ):
                        if self.ex.slots.try_take():
                            starts.append(
                                TaskStarted(
                                    task=t.name,
                                    generation=t.generation,
                                    attempt=t.attempt,
                                    executor=self.ex.id,
                                )
                            )
                        else:
                            self._wait_for_slot(t.name)
            batch = [*pending, *events, *starts]
            if not batch:
                return True
            if not await self._append(batch):
                for _ in starts:
                    self.ex.slots.give()
                return not pending
            for s in starts:
                self._spawn(s.task, s.generation, s.attempt)
            return True
        return not pending

    def _wait_for_slot(self, task: str) -> None:
        self.waiting.add(task)

        async def wait() -> None:
            await self.ex.slots.take()
            self.inbox.put_nowait(("slot", task))

        waiter = asyncio.create_task(wait())
        self._slot_waiters.add(waiter)
        waiter.add_done_callback(self._slot_waiters.discard)

    async def _start_waiting(self, name: str) -> None:
        assert self.state is not None
        t = self.state.tasks.get(name)
        if (
            t is None
            or t.status != "scheduled"
            or self.state.status != "running"
            or name in self.attempts
        ):
            self.ex.slots.give()
            return
        start = TaskStarted(
            task=name, generation=t.generation, attempt=t.attempt, executor=self.ex.id
        )
        if await self._append([start]):
            self._spawn(name, t.generation, t.attempt)
        else:
            self.ex.slots.give()

    # -- appending ----------------------------------------------------------------------

    async def _append(self, events: list[Event]) -> bool:
        """Append at our seq; False (state refreshed) when someone else appended first."""
        assert self.state is not None
        if not events:
            return True
        try:
            recorded = await self.ex.store.append(self.stream, self.state.last_seq, events)
        except ConcurrencyConflict:
            await self._refresh()
            if self.run_id not in await self.ex.leases.renew([self.run_id]):
                self.lease_lost()
            return False
        for r in recorded:
            self.state = evolve(self.state, r)
        self._after_change()
        return True

    async def _refresh(self) -> None:
        assert self.state is not None
        for r in await self.ex.store.read_stream(self.stream, self.state.last_seq):
            self.state = evolve(self.state, r)
        self._after_change()

    def _after_change(self) -> None:
        # Attempts the log no longer wants (the run was cancelled or failed) are stopped.
        assert self.state is not None
        for name, attempt in list(self.attempts.items()):
            if self.state.tasks[name].status not in ("running",):
                attempt.cancel()

    # -- attempts -----------------------------------------------------------------------

    def _spawn(self, name: str, generation: int, attempt: int) -> None:
        self.attempts[name] = asyncio.create_task(
            self._attempt(name, generation, attempt), name=f"durable-{self.run_id}-{name}"
        )

    def _context(self, name: str, generation: int, attempt: int, task_log: TaskLog) -> TaskContext:
        assert self.state is not None
        spec = self.spec.task(name)
        trigger = self.state.trigger
        item: Any = None
        index: int | None = None
        parent = self.state.tasks[name].parent
        if parent is not None:
            index = int(name[name.rindex("[") + 1 : -1])
            items = map_items(self.state, self.spec, parent)
            item = items[index] if isinstance(items, list) else None
        return TaskContext(
            item=item,
            index=index,
            run_id=self.run_id,
            workflow=self.state.workflow,
            task=name,
            attempt=attempt,
            generation=generation,
            params=self.state.params,
            upstream={u: self.state.tasks[u].output for u in spec.upstream},
            logical_time=trigger.logical_time,
            data_interval_start=trigger.data_interval_start,
            data_interval_end=trigger.data_interval_end,
            log=task_log,
        )

    async def _attempt(self, name: str, generation: int, attempt: int) -> None:
        assert self.loaded is not None and self.state is not None
        spec = self.spec.task(name)
        task_log = TaskLog()
        ctx = self._context(name, generation, attempt, task_log)
        result = _Result(task=name, generation=generation, attempt=attempt, log=task_log)
        try:
            if spec.kind == "sql" and spec.config.get("transactional"):
                self.inbox.put_nowait(("tx", name, generation, attempt, ctx, task_log))
                return
            try:
                async with asyncio.timeout(spec.timeout):
                    output = await run_task(
                        spec,
                        ctx,
                        resources=self.ex.resources,
                        callable_for=self.loaded.callable_for,
                        not_before=self.state.tasks[name].not_before,
                    )
                msgspec.json.encode(output)  # an output must be JSON: fail the attempt now
                result.output = output
            except TimeoutError:
                result.error = ErrorInfo(
                    type="TaskTimeout", message=f"timed out after {spec.timeout:g} s"
                )
            except TaskError as exc:
                result.error = ErrorInfo(
                    type=exc.type, message=exc.message, retryable=exc.retryable
                )
            except DurableError as exc:  # e.g. a task's callable cannot be imported
                result.error = ErrorInfo(
                    type=type(exc).__name__, message=str(exc), retryable=exc.retryable
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result.error = ErrorInfo(
                    type=type(exc).__name__,
                    message=str(exc),
                    retryable=True,
                    traceback="".join(traceback.format_exception(exc)[-8:]),
                )
            self.inbox.put_nowait(result)
        finally:
            self.ex.slots.give()
            if self.attempts.get(name) is asyncio.current_task():
                del self.attempts[name]

    async def _record_result(self, result: _Result) -> None:
        if result.log is not None and result.log.lines:
            await _write_log(self.ex.store.pool, self.run_id, result)
        while self._stop is None:
            assert self.state is not None
            t = self.state.tasks[result.task]
            if t.status != "running" or (t.generation, t.attempt) != (
                result.generation,
                result.attempt,
            ):
                return  # the log moved on (cancelled, or the attempt was given up)
            event: Event
            if result.error is None:
                event = TaskSucceeded(
                    task=result.task,
                    generation=result.generation,
                    attempt=result.attempt,
                    output=result.output,
                    assets=self.spec.task(result.task).produces,
                )
            else:
                event = attempt_failed(
                    self.state, self.spec, result.task, result.error, self.ex.clock()
                )
            if await self._advance([event]):
                return

    async def _transactional(
        self, name: str, generation: int, attempt: int, ctx: TaskContext, task_log: TaskLog
    ) -> None:
        """Run a SQL task's statement and record its completion in one transaction."""
        spec = self.spec.task(name)
        result = _Result(task=name, generation=generation, attempt=attempt, log=task_log)
        if spec.config.get("connection", "durable") != "durable":
            result.error = ErrorInfo(
                type="ConfigurationError",
                retryable=False,
                message="a transactional SQL task must run on durable's own database",
            )
            await self._record_result(result)
            return
        while self._stop is None:
            assert self.state is not None
            t = self.state.tasks[name]
            if t.status != "running" or (t.generation, t.attempt) != (generation, attempt):
                return
            try:
                async with self.ex.store.pool.acquire() as conn, conn.transaction():
                    async with asyncio.timeout(spec.timeout):
                        output = await sql_task.execute(conn, spec, ctx)
                    recorded = await self.ex.store.append_on(
                        conn,
                        self.stream,
                        self.state.last_seq,
                        [
                            TaskSucceeded(
                                task=name,
                                generation=generation,
                                attempt=attempt,
                                output=output,
                                assets=spec.produces,
                            )
                        ],
                    )
            except ConcurrencyConflict:
                await self._refresh()  # rolled back: the rows are not there either
                continue
            except TaskError as exc:
                result.error = ErrorInfo(
                    type=exc.type, message=exc.message, retryable=exc.retryable
                )
            except TimeoutError:
                result.error = ErrorInfo(
                    type="TaskTimeout", message=f"timed out after {spec.timeout:g} s"
                )
            except (OSError, asyncpg.PostgresError) as exc:
                result.error = ErrorInfo(type=type(exc).__name__, message=str(exc))
            else:
                for r in recorded:
                    self.state = evolve(self.state, r)
                result.log = task_log
                await _write_log(self.ex.store.pool, self.run_id, result)
                return
            await self._record_result(result)
            return


def _simulated(state: RunState, event: Event, now: datetime) -> Recorded:
    return Recorded(
        stream_id=state.stream_id, seq=state.last_seq + 1, position=0, recorded_at=now, event=event
    )


async def _write_log(pool: asyncpg.Pool, run_id: str, result: _Result) -> None:
    lines = result.log.lines if result.log is not None else []
    if not lines:
        return
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO durable.task_logs "
                "(run_id, task, generation, attempt, line, at, stream, message) "
                "SELECT $1, $2, $3, $4, n, at, stream, message "
                "FROM unnest($5::timestamptz[], $6::text[], $7::text[]) WITH ORDINALITY "
                "AS l(at, stream, message, n) ON CONFLICT DO NOTHING",
                run_id,
                result.task,
                result.generation,
                result.attempt,
                [at for at, _, _ in lines],
                [s for _, s, _ in lines],
                [m.replace("\x00", "") for _, _, m in lines],
            )
