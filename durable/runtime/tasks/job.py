"""External jobs behind an HTTP API (kind ``job``): submit, record, poll, cancel.

One generic flavour covers the serverless jobs and functions APIs (Scaleway Serverless
Jobs, Databricks Jobs, Livy batches…) without code: a ``submit_url`` and body start the
job, ``job_id`` is where the submit response holds its id, ``status_url`` (which may use
``${job.id}``) is polled until the value at ``state`` is one of ``succeeded`` or
``failed``. Paths are dotted, with list indexes (``run.id``, ``items.0.state``).

- **Submit** sends an ``Idempotency-Key`` (:func:`~.waiting.submission_key`), resent as
  it is when a try gets no answer, so a server that honours it starts one job however
  often it is asked. 429 and 5xx answers are retryable failures of the attempt; other 4xx
  answers, a response that is not JSON, or one without the id are not (the definition or
  the request is wrong: trying again would start jobs nobody can follow).
- **Poll**: a job in a ``succeeded`` state gives the attempt its output (the value at
  ``result``, or the whole status document). A job in a ``failed`` state fails the
  attempt with that state and the job's message (its last lines, from a text or a list
  of lines; all of it goes to the task log). That failure is **retryable**: the job ran
  and failed — a flaky cluster, a lost spot instance — and a retry submits a new job, as
  the task's retry policy allows (``retries=0``, the Python default, fails the task at
  once). A connection error, a timeout, 429 or 5xx on a poll is passing trouble: the
  next poll tries again. 404 or 410 (no such job), any other 4xx, or a status that is
  not JSON fails the attempt, not retryable: the status URL is wrong, or the job is
  gone. A status whose state object lacks only its last key is not done yet (Databricks'
  ``state.result_state`` appears when the run ends); any other missing path fails the
  attempt, not retryable, naming the path and the keys that are there.
- **Cancel** (a cancelled run, a timeout) sends ``cancel_method`` (POST) to
  ``cancel_url``, when given.

Polls back off from ``poll_interval`` (5 s) to ``max_poll_interval`` (60 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
from msgspec import UNSET

from durable.core.errors import TaskError
from durable.core.tasks import JobTask
from durable.core.templates import Place, TemplateError
from durable.core.templates import render as render_template
from durable.runtime.tasks import Resources, waiting
from durable.runtime.tasks.waiting import Done, Pending, Submitted
from durable.workflows.context import TaskContext

__all__ = ["HttpJobs", "PathError", "lookup"]

POLL_INTERVAL = 5.0
MAX_POLL_INTERVAL = 60.0
BACKOFF = 1.5
CALL_TIMEOUT = 30.0
"""Seconds one HTTP call (a submission's try, a poll, a cancel) may take."""
SUBMIT_TRIES = 3
"""Tries of a submission that gets no answer, with the same key, before the attempt
fails (retryably: the next attempt submits with the same key again)."""
LAST_LINES = 20
"""Lines of a failed job's message kept in the task's error (all go to the task log)."""
_MAX_BODY = 4_000_000


class PathError(TaskError):
    """A path names nothing in a response: the definition does not match the API."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, type="JobPathError")


def lookup(document: Any, path: str, what: str) -> Any:
    """The value at the dotted ``path`` (``run.id``, ``items.0.state``; a leading ``$.``
    is allowed) in ``document``. Raises :class:`PathError` naming the path, the part that
    was missing and what was there instead."""
    value = document
    walked: list[str] = []
    parts = path.removeprefix("$").removeprefix(".").split(".") if path not in ("", "$") else []
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            where = f"at {'.'.join(walked)!r}" if walked else "at the top"
            raise PathError(f"{what} has no {path!r}: no {part!r} {where}, {_shape(value)}")
        walked.append(part)
    return value


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:20]) or "none"
        return f"which has the keys: {keys}"
    if isinstance(value, list):
        return f"which is a list of {len(value)}"
    return f"which is {msgspec.json.encode(value).decode()[:80]}"


def _render(value: Any, ctx: TaskContext, job: dict[str, Any] | None, place: Place) -> Any:
    """Templates in ``value`` (a string, list or dict), with ``${job.id}`` when ``job``."""
    values = ctx.template_values()
    if job is not None:
        values["job"] = job
    if isinstance(value, str):
        try:
            return render_template(value, values, place)
        except TemplateError as exc:
            raise TaskError(
                f"{exc.message} (params: {', '.join(ctx.params) or '-'}"
                f"{'; job: id' if job is not None else ''})",
                retryable=False,
                type="TemplateError",
            ) from None
    if isinstance(value, list):
        return [_render(v, ctx, job, place) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, ctx, job, place) for k, v in value.items()}
    return value


def _headers(spec: JobTask, ctx: TaskContext, extra: dict[str, str]) -> dict[str, str]:
    custom: dict[str, str] = _render(spec.headers or {}, ctx, None, "header")
    given = {k.lower() for k in custom}
    headers = {k: v for k, v in extra.items() if k.lower() not in given}
    if ctx.traceparent and "traceparent" not in given:
        headers["traceparent"] = ctx.traceparent  # the job's spans join the run's trace
    headers.update(custom)
    return headers


class _Answer(msgspec.Struct):
    status: int
    text: str
    document: Any
    is_json: bool


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    json: Any = None,
    data: Any = None,
) -> _Answer:
    """One HTTP call; raises ``aiohttp.ClientError`` or ``TimeoutError`` with no answer."""
    async with session.request(
        method,
        url,
        headers=headers,
        json=json,
        data=data,
        timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
    ) as response:
        raw = await response.content.read(_MAX_BODY)
        status = response.status
    text = raw.decode(errors="replace")
    try:
        return _Answer(status, text, msgspec.json.decode(raw), True)
    except msgspec.DecodeError:
        return _Answer(status, text, None, False)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HttpJobs:
    """The :class:`~durable.runtime.tasks.waiting.Waiter` of kind ``job``."""

    async def submit(self, spec: JobTask, ctx: TaskContext, resources: Resources) -> Submitted:
        # the status and cancel URLs' templates are checked before a job exists
        _render(spec.status_url, ctx, {"id": ""}, "url")
        if spec.cancel_url is not UNSET:
            _render(spec.cancel_url, ctx, {"id": ""}, "url")
        url: str = _render(spec.submit_url, ctx, None, "url")
        method = "POST" if spec.method is UNSET else str(_render(spec.method, ctx, None, "header"))
        key = waiting.submission_key(ctx)
        headers = _headers(spec, ctx, {"Idempotency-Key": key})
        json = None if spec.json is UNSET else _render(spec.json, ctx, None, "text")
        data = None if spec.body is UNSET else _render(spec.body, ctx, None, "text")
        session = await resources.http()
        answer: _Answer | None = None
        for attempt in range(1, SUBMIT_TRIES + 1):
            try:
                answer = await _call(session, method, url, headers, json=json, data=data)
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                # it may have arrived: the same key again, so it starts one job at most
                ctx.log.warning(f"{method} {url}: no answer ({type(exc).__name__}: {exc})")
                if attempt == SUBMIT_TRIES:
                    raise TaskError(
                        f"{method} {url} got no answer in {SUBMIT_TRIES} tries "
                        f"({type(exc).__name__}: {exc}); the next attempt resends key {key}",
                        type=waiting.UNANSWERED,
                    ) from None
                await _pause(attempt)
        assert answer is not None
        ctx.log.info(f"{method} {url} -> {answer.status} (Idempotency-Key {key})")
        if not 200 <= answer.status < 300:
            raise TaskError(
                f"{method} {url} answered {answer.status}: {_excerpt(answer.text)}",
                retryable=answer.status >= 500 or answer.status == 429,
                type="HTTPStatusError",
            )
        if not answer.is_json:
            raise TaskError(
                f"{method} {url} answered {answer.status} with no JSON: {_excerpt(answer.text)}",
                retryable=False,
                type="JobSubmitError",
            )
        job_id = lookup(answer.document, spec.job_id, f"the submit response of {url}")
        if not isinstance(job_id, str | int) or isinstance(job_id, bool) or job_id == "":
            raise PathError(
                f"the submit response of {url} has {job_id!r} at {spec.job_id!r}, not a job id"
            )
        job: dict[str, Any] = {"id": job_id}
        job["status_url"] = _render(spec.status_url, ctx, job, "url")
        state = _state_of(answer.document, spec)
        return Submitted(job=job, state=state)

    async def poll(
        self, spec: JobTask, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> Pending | Done:
        url = job.get("status_url") or _render(spec.status_url, ctx, job, "url")
        session = await resources.http()
        answer = await _call(session, "GET", url, _headers(spec, ctx, {}))
        if answer.status == 429 or answer.status >= 500:
            raise RuntimeError(f"GET {url} answered {answer.status}: {_excerpt(answer.text)}")
        if answer.status in (404, 410):
            raise TaskError(
                f"GET {url} answered {answer.status}: no job {job.get('id')!r} there "
                f"({_excerpt(answer.text, 120)}); is status_url right?",
                retryable=False,
                type="JobNotFound",
            )
        if not 200 <= answer.status < 300:
            raise TaskError(
                f"GET {url} answered {answer.status}: {_excerpt(answer.text)}",
                retryable=False,
                type="HTTPStatusError",
            )
        if not answer.is_json:
            raise TaskError(
                f"GET {url} answered {answer.status} with no JSON: {_excerpt(answer.text)}",
                retryable=False,
                type="JobStatusError",
            )
        document = answer.document
        what = f"the status of job {job.get('id')!r}"
        try:
            state = _text(lookup(document, spec.state, what))
        except PathError:
            parent, _, leaf = spec.state.rpartition(".")
            if not parent or not isinstance(lookup(document, parent, what), dict):
                raise
            # the state's object is there without its last key: not set yet (Databricks'
            # state.result_state appears when the run ends)
            return Pending(state=f"(no {leaf} yet)")
        if state in spec.succeeded:
            output = (
                document
                if spec.result is UNSET
                else lookup(document, spec.result, f"the status of job {job.get('id')!r}")
            )
            ctx.log.info(f"job {job.get('id')} {state}")
            return Done(output=output)
        if state in spec.failed:
            raise TaskError(_failure(spec, job, state, document, ctx), type="JobFailed")
        return Pending(state=state)

    async def cancel(
        self, spec: JobTask, job: dict[str, Any], ctx: TaskContext, resources: Resources
    ) -> None:
        if spec.cancel_url is UNSET:
            ctx.log.info(f"job {job.get('id')} is left running: the task has no cancel_url")
            return
        url: str = _render(spec.cancel_url, ctx, job, "url")
        method = "POST" if spec.cancel_method is UNSET else str(spec.cancel_method)
        session = await resources.http()
        answer = await _call(session, method, url, _headers(spec, ctx, {}))
        ctx.log.info(f"cancel: {method} {url} -> {answer.status}")
        if answer.status not in (404, 409, 410) and not 200 <= answer.status < 300:
            # 404/409/410: gone or finished already; anything else did not cancel it
            raise RuntimeError(f"{method} {url} answered {answer.status}: {_excerpt(answer.text)}")

    def interval(self, spec: JobTask, polls: int) -> float:
        first = POLL_INTERVAL if spec.poll_interval is UNSET else float(spec.poll_interval)
        cap = MAX_POLL_INTERVAL if spec.max_poll_interval is UNSET else spec.max_poll_interval
        return waiting.backoff(first, BACKOFF, max(first, float(cap)), polls)


def _state_of(document: Any, spec: JobTask) -> str:
    """The state in a submit response, when it has one (for people)."""
    try:
        return _text(lookup(document, spec.state, "the submit response"))
    except PathError:
        return ""


def _text(value: Any) -> str:
    """A state as text: a string as it is, anything else as JSON (``3``, ``null``)."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _failure(
    spec: JobTask, job: dict[str, Any], state: str, document: Any, ctx: TaskContext
) -> str:
    """A failed job's error: its state, and the last lines of its message (the whole
    message goes to the task log)."""
    head = f"job {job.get('id')} ended {state}"
    if spec.message is UNSET:
        return f"{head}: {_excerpt(msgspec.json.encode(document).decode(), 400)}"
    try:
        message = lookup(document, spec.message, f"the status of job {job.get('id')!r}")
    except PathError as exc:
        return f"{head} ({exc.message})"
    if isinstance(message, list) and all(isinstance(m, str) for m in message):
        lines = [str(m) for m in message] or [""]  # a log as a list of lines (Livy's)
    else:
        lines = _text(message).rstrip("\n").splitlines() or [""]
    for line in lines:
        ctx.log.error(line)
    if len(lines) == 1:
        return f"{head}: {lines[0]}"
    kept = lines[-LAST_LINES:]
    cut = f" (last {len(kept)} of {len(lines)} lines)" if len(kept) < len(lines) else ""
    return f"{head}{cut}:\n" + "\n".join(kept)


async def _pause(tries: int) -> None:
    await asyncio.sleep(min(5.0, 0.5 * 2 ** (tries - 1)))


waiting.register("job", HttpJobs())
