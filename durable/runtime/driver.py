"""Driving one claimed run: fold its log, ``step``, append fenced, run its attempts.

A :class:`RunDriver` is the only writer of its run's stream while its executor holds the
run's lease. Every append states the seq it expects, so a driver whose lease was lost can
never record a completion. What to append is decided by the pure
:func:`durable.core.step.step`; the driver only does the I/O around it: it reports
attempts' results and its free slots as inputs, and starts the attempts the returned
``TaskStarted`` events name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from durable.core.backfill import backfill_state
from durable.core.errors import (
    ConcurrencyConflict,
    StoreError,
    StoreUnavailable,
    TaskError,
)
from durable.core.events import (
    ErrorInfo,
    Event,
    Recorded,
    RunCancelled,
    TaskStarted,
    backfill_stream,
    run_stream,
)
from durable.core.fold import evolve, fold
from durable.core.spec import WorkflowSpec
from durable.core.state import RunState
from durable.core.step import (
    AttemptFailed,
    AttemptSkipped,
    AttemptsLost,
    AttemptSucceeded,
    AttemptWaiting,
    Input,
    SlotsAvailable,
    answer,
    next_wakeup,
    step,
)
from durable.core.tasks import SensorTask, SqlTask, TaskSpec
from durable.runtime.attempts import AttemptResult, run_attempt, task_context
from durable.runtime.logs import LiveLog
from durable.runtime.tasks import sql as sql_task
from durable.runtime.tasks import waiting
from durable.runtime.tasks.waiting import Done, Submitted, Waiter, waiter_for
from durable.telemetry import RunCounter
from durable.workflows.context import TaskContext, TaskLog
from durable.workflows.loader import LoadedWorkflow

if TYPE_CHECKING:
    from durable.runtime.executor import Executor

__all__ = ["RunDriver"]

log = logging.getLogger("durable.executor")


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
        self._slot_waiter: asyncio.Task[None] | None = None
        self._held = 0  # slots the waiter took for this run, not yet given to an attempt
        self._in_tx: set[str] = set()  # transactional SQL tasks between attempt and commit
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started_before_heartbeat = False
        self._stop: str | None = None  # "shutdown" | "lost"
        self._task: asyncio.Task[None] | None = None
        self.counter: RunCounter | None = None  # counts what it appends (None: no metrics)
        self._unwanted: set[str] = set()  # attempts stopped because the log ended them

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
        except StoreError as exc:  # the executor's outage line says it; claimed again later
            self.ex.database.failed(exc)
        except Exception:
            log.exception("run %s: driver failed; releasing it for another try", self.run_id)
        finally:
            if self._slot_waiter is not None:
                self._slot_waiter.cancel()  # Slots.take passes on a slot handed meanwhile
            self._give_held()
            # attempts the log ended are stopping their work (a job's cancel: <= 30 s):
            # let them, then stop whatever is left
            stopping = [a for n, a in self.attempts.items() if n in self._unwanted]
            if stopping:
                await asyncio.wait(stopping, timeout=35)
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
        self.counter = self.ex.telemetry.runs.counter(self.spec) if self.ex.telemetry else None
        if self.state.status == "pending" and not await self._may_start():
            return  # queued (slots taken, backfill paused): claimed again later
        claimed: list[Input] = [AttemptsLost()]  # whoever ran its attempts is gone
        while self._stop is None:
            await self._advance(claimed)
            if claimed:
                self._resume_waiting()  # attempts waiting on recorded work: poll it again
            claimed = []
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
            case ("slot",):
                await self._advance()  # the waiter's slot is held: start what waited
            case ("lost", orphans):
                await self._refresh()
                assert self.state is not None
                still = tuple(
                    name
                    for name, generation, attempt in orphans
                    if name not in self.attempts
                    and name not in self._in_tx
                    and (t := self.state.tasks[name]).status == "running"
                    and (t.generation, t.attempt) == (generation, attempt)
                )
                await self._advance([AttemptsLost(tasks=still)] if still else [])
            case ("waiting", AttemptWaiting() as waiting_input, recorded):
                await self._record_waiting(waiting_input, recorded)
            case ("tx", task, generation, attempt, ctx, live):
                await self._transactional(task, generation, attempt, ctx, live)
            case AttemptResult():
                await self._record_result(message)

    async def _advance(self, inputs: Sequence[Input] = ()) -> bool:
        """Step, append, start: ``inputs`` (a task's result) and everything they make
        possible go into one append — a completion, what it schedules, the starts.

        Returns False when the inputs' own events could not be appended (the log moved
        on: the state is refreshed, the caller may try again).
        """
        assert self.state is not None
        if self._stop is not None:
            return not inputs
        slots = SlotsAvailable(free=self._held + self.ex.slots.free, executor=self.ex.id)
        now = self.ex.clock()
        events = step(self.state, self.spec, [*inputs, slots], now, notify=self.ex.registry.notify)
        starts = [e for e in events if isinstance(e, TaskStarted)]
        self._take_slots(len(starts))
        appended = False
        try:
            appended = await self._append(events)
        finally:
            if not appended:  # a slot taken for a start goes back on every path
                for _ in starts:
                    self.ex.slots.give()
        if not appended:
            return not inputs
        for s in starts:
            self._spawn(s.task, s.generation, s.attempt)
        if len(starts) == slots.free and self._startable(now):
            self._wait_for_slot()  # out of slots: start the rest when one frees
        return True

    def _take_slots(self, count: int) -> None:
        """Take ``count`` slots for starts: the held ones first, then free ones (which are
        there: ``step`` was told how many, and nothing ran in between)."""
        from_held = min(count, self._held)
        self._held -= from_held
        for _ in range(count - from_held):
            if not self.ex.slots.try_take():  # pragma: no cover - single-threaded
                raise RuntimeError("a counted free slot was gone")
        self._give_held()  # a held slot no start needed goes back at once

    def _give_held(self) -> None:
        while self._held:
            self._held -= 1
            self.ex.slots.give()

    def _startable(self, now: Any) -> bool:
        assert self.state is not None
        return self.state.status == "running" and any(
            t.status == "scheduled"
            and t.name not in self.attempts
            and (t.not_before is None or t.not_before <= now)
            for t in self.state.tasks.values()
        )

    def _wait_for_slot(self) -> None:
        if self._slot_waiter is not None and not self._slot_waiter.done():
            return

        async def wait() -> None:
            await self.ex.slots.take()
            self._held += 1
            self.inbox.put_nowait(("slot",))

        self._slot_waiter = asyncio.create_task(wait())

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
            try:
                held = await self.ex.leases.renew([self.run_id])
            except StoreUnavailable as exc:
                await self._recover(exc)
                return False
            if self.run_id not in held:
                self.lease_lost()
            return False
        except StoreUnavailable as exc:
            await self._recover(exc)  # the append may have committed: the log will say
            return False
        self._evolve(recorded, appended=True)
        return True

    def _evolve(self, records: Sequence[Recorded], *, appended: bool) -> None:
        """Fold ``records`` in and count them (``appended`` by this driver, or read)."""
        assert self.state is not None
        count = self.counter and (self.counter.record if appended else self.counter.seen)
        for r in records:
            if count:
                count(self.state, r)
            self.state = evolve(self.state, r)
        self._after_change()

    async def _refresh(self) -> None:
        assert self.state is not None
        try:
            records = await self.ex.store.read_stream(self.stream, self.state.last_seq)
        except StoreUnavailable as exc:
            await self._recover(exc)
            return
        self._evolve(records, appended=False)

    async def _recover(self, exc: StoreUnavailable) -> None:
        """PostgreSQL went away mid-call: wait (with the executor's backoff, reporting to
        its one outage line) until it answers, then catch up with the log — an append
        whose answer was lost may have committed — and advance again from there. A slot
        taken meanwhile was given back by the caller; running attempts keep running and
        report when they end."""
        assert self.state is not None
        outage = self.ex.database
        outage.failed(exc)
        while self._stop is None:
            await outage.backoff()
            try:
                records = await self.ex.store.read_stream(self.stream, self.state.last_seq)
            except StoreUnavailable as again:
                outage.failed(again)
                continue
            outage.ok()
            # only "seen", not "appended": after a takeover they may be another executor's
            self._evolve(records, appended=False)
            # a start that committed without our hearing it: running in the log, run by
            # nobody here — a lost attempt, retried like one after a takeover
            orphans = tuple(
                (t.name, t.generation, t.attempt)
                for t in self.state.tasks.values()
                if t.status == "running"
                and t.mapped is None
                and t.job is None
                and t.name not in self.attempts
                and t.name not in self._in_tx
            )
            self._resume_waiting()  # a task_waiting that committed without our hearing it
            self.inbox.put_nowait(("lost", orphans) if orphans else ("poke",))
            return

    def _after_change(self) -> None:
        # Attempts the log no longer wants (the run was cancelled or failed) are stopped.
        assert self.state is not None
        for name, attempt in list(self.attempts.items()):
            if self.state.tasks[name].status not in ("running",):
                self._unwanted.add(name)  # a waiting attempt cancels its work, too
                attempt.cancel()

    # -- attempts -----------------------------------------------------------------------

    def _spawn(self, name: str, generation: int, attempt: int, *, slot: bool = True) -> None:
        self._unwanted.discard(name)
        self.attempts[name] = asyncio.create_task(
            self._attempt(name, generation, attempt, slot=slot),
            name=f"durable-{self.run_id}-{name}",
        )

    def _resume_waiting(self) -> None:
        """Poll again the recorded work of the attempts that wait on it here (after a
        takeover, or an append we did not hear committed): no slot, no new submission."""
        assert self.state is not None
        for t in self.state.tasks.values():
            if t.status == "running" and t.job is not None and t.name not in self.attempts:
                self._spawn(t.name, t.generation, t.attempt, slot=False)

    def _context(self, name: str, generation: int, attempt: int, task_log: TaskLog) -> TaskContext:
        assert self.state is not None
        return task_context(self.state, self.spec, name, generation, attempt, task_log)

    async def _attempt(self, name: str, generation: int, attempt: int, *, slot: bool) -> None:
        assert self.loaded is not None and self.state is not None
        spec = self.spec.task(name)
        live = self.ex.logs.open(self.run_id, name, generation, attempt)
        ctx = self._context(name, generation, attempt, live.log)
        result = AttemptResult(task=name, generation=generation, attempt=attempt, log=live)
        holds = [slot]  # whether this attempt still holds its slot
        if self.counter:
            self.counter.began()
        try:
            waiter = waiter_for(spec)
            if waiter is not None:
                if not slot and not getattr(waiter, "replays_log", False):
                    # resumed: its lines go on after those stored before (a waiter that
                    # replays its work's whole output numbers it from 1 again instead:
                    # the lines stored already are no-ops)
                    await self._continue_log(live, name, generation, attempt)
                live.start()
                try:
                    report = await self._wait(spec, waiter, ctx, result, holds)
                finally:
                    await live.close()
                if report:
                    self.inbox.put_nowait(result)
                return
            if isinstance(spec, SqlTask) and spec.transactional:
                self._in_tx.add(name)  # between here and its commit, no attempt runs it
                self.inbox.put_nowait(("tx", name, generation, attempt, ctx, live))
                return
            live.start()
            try:
                result.output, result.error = await run_attempt(
                    spec,
                    ctx,
                    resources=self.ex.resources,
                    callable_for=self.loaded.callable_for,
                    not_before=self.state.tasks[name].not_before,
                )
            finally:
                # its last lines are stored before its outcome is appended (a stopped
                # attempt's too)
                await live.close()
            self.inbox.put_nowait(result)
        finally:
            if self.counter:
                self.counter.ended()
            if holds[0]:
                self.ex.slots.give()
            if self.attempts.get(name) is asyncio.current_task():
                del self.attempts[name]

    async def _continue_log(self, live: LiveLog, name: str, generation: int, attempt: int) -> None:
        """Number a resumed attempt's lines after those its earlier executor stored (a
        line whose number is stored already would be dropped as a retried batch's)."""
        try:
            stored = await self.ex.logs.logs.read(self.run_id, name, attempt)
        except StoreError:
            return  # its lines may clash with stored ones (and are dropped): not its outcome
        # the lines were numbered 1..n as they were written (a LogLine has no number)
        last = sum(1 for line in stored if line.generation == generation)
        if last:
            live.log.give_back(last + 1, [])  # nothing taken back: only the numbering

    async def _submission_key(self, name: str, generation: int, attempt: int) -> str:
        """The idempotency key of this attempt's submission: its own, or an earlier
        attempt's that may have submitted without recording it
        (:func:`~durable.runtime.tasks.waiting.submission_attempt`)."""
        assert self.state is not None
        base = f"{self.run_id}/{name}/{generation}"
        previous = self.state.tasks[name].error  # the attempt before's, until this one ends
        if attempt == 1 or previous is None or previous.type not in waiting.REUSE_KEY:
            return f"{base}/{attempt}"
        records = await self.ex.store.read_stream(self.stream)
        return f"{base}/{waiting.submission_attempt(records, name, generation, attempt)}"

    async def _wait(
        self,
        spec: TaskSpec,
        waiter: Waiter,
        ctx: TaskContext,
        result: AttemptResult,
        holds: list[bool],
    ) -> bool:
        """Submit (unless the log has the job already), record, give the slot back, then
        poll until done, failed, or out of time (see :mod:`durable.runtime.tasks.waiting`).

        Returns whether ``result`` is the attempt's outcome to record (False: the executor
        is stopping, the work is left for the next one).
        """
        assert self.state is not None
        name = result.task
        resources = self.ex.resources
        job = self.state.tasks[name].job
        if job is None:
            try:
                key = await self._submission_key(name, result.generation, result.attempt)
            except StoreError as exc:
                # nothing submitted; the next attempt's key goes as far back as this one's
                result.error = ErrorInfo(
                    type=waiting.UNANSWERED,
                    message=f"nothing submitted: the key could not be chosen ({exc})",
                )
                return True
            waiting.use_submission_key(key)
            outcome = await _guarded(waiter.submit(spec, ctx, resources), spec)
            if isinstance(outcome, ErrorInfo):
                result.error = outcome
                return True
            job = outcome.job
            recorded: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
            waiting_input = AttemptWaiting(
                task=name,
                generation=result.generation,
                attempt=result.attempt,
                job=job,
                state=outcome.state,
            )
            self.inbox.put_nowait(("waiting", waiting_input, recorded))
            try:
                in_log = await recorded
            except asyncio.CancelledError:
                if name in self._unwanted:  # the run was cancelled meanwhile: stop the work
                    await asyncio.shield(_quietly(waiter.cancel(spec, job, ctx, resources), ctx))
                raise
            if in_log is None:
                return False  # the executor stops: whoever takes the run over finds the key
            if not in_log:  # the log moved on: nobody will poll this work
                await _quietly(waiter.cancel(spec, job, ctx, resources), ctx)
                result.error = ErrorInfo(type="Superseded", message="the attempt was ended")
                return True
            ctx.log.info(f"submitted; waiting ({outcome.state or 'submitted'}): {_show(job)}")
        else:
            ctx.log.info(f"resumed waiting on {_show(job)}")
        if holds[0]:
            holds[0] = False
            self.ex.slots.give()  # waiting holds no slot
        started = self.state.tasks[name].started_at
        deadline = (
            started + timedelta(seconds=spec.timeout)
            if spec.timeout is not None and started is not None
            else None
        )
        polls = 0
        last_state = ""
        try:
            while True:
                delay = waiter.interval(spec, polls)
                if deadline is not None:
                    left = (deadline - self.ex.clock()).total_seconds()
                    if left <= 0:
                        await _quietly(waiter.cancel(spec, job, ctx, resources), ctx)
                        message = f"timed out after {spec.timeout:g} s (from its recorded start)"
                        if isinstance(spec, SensorTask) and spec.soft_fail is True:
                            result.skipped = f"{message} (soft_fail)"
                        else:
                            # a sensor's timeout is its whole budget; other work's timeout
                            # is an attempt's, retried as the task's policy says
                            result.error = ErrorInfo(
                                type="TaskTimeout",
                                message=message,
                                retryable=not isinstance(spec, SensorTask),
                            )
                        return True
                    delay = min(delay, left)
                if delay > 0:
                    await asyncio.sleep(delay)
                if deadline is not None and self.ex.clock() >= deadline:
                    continue  # out of time: the top of the loop says so
                polls += 1
                try:
                    polled = await waiter.poll(spec, job, ctx, resources)
                except TaskError as exc:
                    result.error = ErrorInfo(
                        type=exc.type, message=exc.message, retryable=exc.retryable
                    )
                    return True
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a passing trouble: the next poll tries again
                    ctx.log.warning(f"poll {polls} failed: {type(exc).__name__}: {exc}")
                    continue
                if isinstance(polled, Done):
                    try:
                        msgspec.json.encode(polled.output)
                    except (TypeError, msgspec.EncodeError) as exc:
                        result.error = ErrorInfo(type=type(exc).__name__, message=str(exc))
                    else:
                        result.output = polled.output
                    return True
                if polled.state and polled.state != last_state:
                    ctx.log.info(f"state: {polled.state}")
                    last_state = polled.state
        except asyncio.CancelledError:
            if name in self._unwanted:  # the log ended it (a cancelled run): stop the work
                await asyncio.shield(_quietly(waiter.cancel(spec, job, ctx, resources), ctx))
            raise  # an executor that only stops leaves it running for the next one

    async def _record_waiting(
        self, waiting_input: AttemptWaiting, recorded: asyncio.Future[bool | None]
    ) -> None:
        """Append a submission's ``task_waiting``; tell its attempt whether it is in the
        log: True; False when the attempt is no longer current (its work is nobody's);
        None when this executor stops first (the work is left to whoever takes over)."""
        outcome: bool | None = None
        try:
            while self._stop is None:
                assert self.state is not None
                t = self.state.tasks[waiting_input.task]
                if t.status != "running" or (t.generation, t.attempt) != (
                    waiting_input.generation,
                    waiting_input.attempt,
                ):
                    outcome = False
                    break
                if t.job is not None:
                    outcome = True
                    break
                await self._advance([waiting_input])  # then the loop looks at the log again
        finally:
            if not recorded.done():
                recorded.set_result(outcome)

    async def _record_result(self, result: AttemptResult) -> None:
        while self._stop is None:
            assert self.state is not None
            t = self.state.tasks[result.task]
            if t.status != "running" or (t.generation, t.attempt) != (
                result.generation,
                result.attempt,
            ):
                return  # the log moved on (cancelled, or the attempt was given up)
            outcome: Input
            if result.skipped is not None:
                outcome = AttemptSkipped(
                    task=result.task,
                    generation=result.generation,
                    attempt=result.attempt,
                    reason=result.skipped,
                )
            elif result.error is None:
                outcome = AttemptSucceeded(
                    task=result.task,
                    generation=result.generation,
                    attempt=result.attempt,
                    output=result.output,
                )
            else:
                outcome = AttemptFailed(
                    task=result.task,
                    generation=result.generation,
                    attempt=result.attempt,
                    error=result.error,
                )
            if result.log is not None and result.log.unsent:
                await result.log.flush()  # lines its last flush could not store: try again
            if await self._advance([outcome]):
                return

    async def _transactional(
        self, name: str, generation: int, attempt: int, ctx: TaskContext, live: LiveLog
    ) -> None:
        """Run a SQL task's statement and record its completion in one transaction."""
        live.start()
        try:
            await self._transact(name, generation, attempt, ctx, live)
        finally:
            self._in_tx.discard(name)
            await live.close()

    async def _transact(
        self, name: str, generation: int, attempt: int, ctx: TaskContext, live: LiveLog
    ) -> None:
        spec = self.spec.task(name)
        assert isinstance(spec, SqlTask)
        result = AttemptResult(task=name, generation=generation, attempt=attempt, log=live)
        if spec.connection_name != "durable":
            result.error = ErrorInfo(
                type="ConfigurationError",
                retryable=False,
                message="a transactional SQL task must run on durable's own database",
            )
            await live.close()
            await self._record_result(result)
            return
        while self._stop is None:
            assert self.state is not None
            t = self.state.tasks[name]
            if t.status != "running" or (t.generation, t.attempt) != (generation, attempt):
                return

            async def body(conn: Any) -> list[Event]:
                assert self.state is not None
                async with asyncio.timeout(spec.timeout):
                    output = await sql_task.execute(conn, spec, ctx)
                await live.flush()  # its lines before its completion (best effort)
                # the completion alone commits with the rows; what follows is the next
                # advance's
                done = AttemptSucceeded(
                    task=name, generation=generation, attempt=attempt, output=output
                )
                return answer(self.state, self.spec, done, self.ex.clock())

            try:
                recorded = await self.ex.store.transact(self.stream, self.state.last_seq, body)
            except ConcurrencyConflict:
                await self._refresh()  # rolled back: the rows are not there either
                continue
            except StoreUnavailable as exc:
                # committed or rolled back, the log says which: the loop looks again
                await self._recover(exc)
                continue
            except TaskError as exc:
                result.error = ErrorInfo(
                    type=exc.type, message=exc.message, retryable=exc.retryable
                )
            except TimeoutError:
                result.error = ErrorInfo(
                    type="TaskTimeout", message=f"timed out after {spec.timeout:g} s"
                )
            except StoreError as exc:
                result.error = ErrorInfo(
                    type=type(exc).__name__, message=str(exc), retryable=exc.retryable
                )
            else:
                self._evolve(recorded, appended=True)
                return
            await live.close()
            await self._record_result(result)
            return


async def _guarded(call: Awaitable[Submitted], spec: TaskSpec) -> Submitted | ErrorInfo:
    """A submission's outcome, or its failure as an attempt's error."""
    try:
        async with asyncio.timeout(spec.timeout):
            return await call
    except TimeoutError:
        return ErrorInfo(type="TaskTimeout", message=f"timed out after {spec.timeout:g} s")
    except TaskError as exc:
        return ErrorInfo(type=exc.type, message=exc.message, retryable=exc.retryable)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ErrorInfo(
            type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)[-8:]),
        )


def _show(job: dict[str, Any]) -> str:
    """A recorded job, for the task log."""
    return msgspec.json.encode(job).decode()


async def _quietly(call: Awaitable[None], ctx: TaskContext) -> None:
    """Cancel a job, best effort: a failure is logged, never raised."""
    try:
        async with asyncio.timeout(30):
            await call
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        ctx.log.warning(f"could not cancel the job: {type(exc).__name__}: {exc}")
