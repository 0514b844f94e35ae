"""A job API on loopback for the external job tests, shaped like the serverless jobs APIs
(submit, status, cancel), that counts what it is asked.

- ``POST /jobs`` starts a job; its JSON body says how it goes: ``polls`` (it is done
  after that many status reads; absent: it runs until :meth:`JobServer.finish`),
  ``outcome`` (``SUCCEEDED`` or ``FAILED``), ``result``, ``log`` (lines). An
  ``Idempotency-Key`` seen before answers the job it started (200), not a new one (201).
  Answers ``{"job": {"id": ...}, "state": "PENDING"}``.
- ``GET /jobs/{id}`` answers ``{"id", "state", "result"?, "error"?, "run": {"phase",
  "outcome"?}}`` (``run.outcome`` only once it ended); 404 for no job.
- ``POST /jobs/{id}/cancel`` cancels it (state ``CANCELLED``).
- ``fail_next_polls`` answers the next status reads with 503 (passing trouble);
  ``hold_answers`` (an event), when given, keeps each submission's answer until it is
  set (the job is started and counted first: a submitter killed meanwhile never hears
  of it).

Runs on the test's own event loop; executors reach it over TCP.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web

__all__ = ["ENDED", "Job", "JobServer"]

ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class Job:
    def __init__(self, job_id: str, spec: dict[str, Any], key: str | None) -> None:
        self.id = job_id
        self.spec = spec
        self.key = key
        self.state = "PENDING"
        self.polls = 0
        self.cancels = 0
        self.headers: dict[str, str] = {}

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "state": self.state}
        # also the Databricks way: the outcome's key appears only once the run has ended
        doc["run"] = {"phase": "ENDED" if self.state in ENDED else self.state}
        if self.state in ENDED:
            doc["run"]["outcome"] = self.state
        if self.state == "SUCCEEDED":
            doc["result"] = self.spec.get("result")
        if self.state == "FAILED":
            doc["error"] = "\n".join(self.spec.get("log") or ["failed"])
        return doc


class JobServer:
    """The job API. ``submissions``: POSTs that started a job; ``requests``: every
    request as ``(method, path)``; ``polled``: set at each status read."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[str, Job] = {}
        self.submissions = 0
        self.requests: list[tuple[str, str]] = []
        self.fail_next_polls = 0
        self.hold_answers: asyncio.Event | None = None
        self.held = 0
        """Submissions whose answer is held."""
        self.polled = asyncio.Event()
        self.port = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def finish(self, job_id: str, outcome: str = "SUCCEEDED") -> None:
        self.jobs[job_id].state = outcome

    def job(self, number: int = 1) -> Job:
        return self.jobs[f"job-{number}"]

    def polls_of(self, job_id: str) -> int:
        return self.jobs[job_id].polls if job_id in self.jobs else 0

    async def start(self) -> JobServer:
        app = web.Application()
        app.router.add_post("/jobs", self._submit)
        app.router.add_get("/jobs/{id}", self._status)
        app.router.add_post("/jobs/{id}/cancel", self._cancel)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _submit(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path))
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.by_key:
            job = self.by_key[key]
            return web.json_response({"job": {"id": job.id}, "state": job.state}, status=200)
        spec = await request.json()
        job = Job(f"job-{next(self._ids)}", spec, key)
        job.headers = dict(request.headers)
        self.jobs[job.id] = job
        if key is not None:
            self.by_key[key] = job
        self.submissions += 1
        if self.hold_answers is not None:
            self.held += 1
            await self.hold_answers.wait()
        return web.json_response({"job": {"id": job.id}, "state": job.state}, status=201)

    async def _status(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path))
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"message": "no such job"}, status=404)
        if self.fail_next_polls:
            self.fail_next_polls -= 1
            return web.Response(status=503, text="busy")
        job.polls += 1
        if job.state in ("PENDING", "RUNNING"):
            job.state = "RUNNING"
            limit = job.spec.get("polls")
            if limit is not None and job.polls >= limit:
                job.state = job.spec.get("outcome", "SUCCEEDED")
        self.polled.set()
        return web.json_response(job.document())

    async def _cancel(self, request: web.Request) -> web.Response:
        self.requests.append(("POST", request.path))
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"message": "no such job"}, status=404)
        job.cancels += 1
        if job.state in ("PENDING", "RUNNING"):
            job.state = "CANCELLED"
        return web.json_response(job.document())
