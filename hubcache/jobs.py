"""Daemon jobs: one per key however many clients ask, with progress and an event feed.

A job wraps one :meth:`Pipeline.resolve`; waiters await its future, so they are woken the moment
the model is published (no polling), and a waiter that hangs up never cancels the job. Accepted
jobs are recorded in the index until they finish, so a restarted daemon resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from hubcache.errors import DaemonError, HubcacheError
from hubcache.handles import cache_key
from hubcache.metrics import Metrics
from hubcache.pipeline import Pipeline
from hubcache.store import Resolved

FINISHED_KEPT = 1000
PROGRESS_EVERY = 0.2  # seconds between progress events of one job
SUBSCRIBER_BACKLOG = 10_000

_ids = itertools.count(1)


@dataclass
class Job:
    handle: str
    key: str
    id: str = field(default_factory=lambda: f"j{next(_ids)}-{int(time.time())}")
    state: str = "queued"  # queued | downloading | done | failed | cancelled
    bytes_done: int = 0
    bytes_total: int | None = None
    error: dict[str, Any] | None = None
    result: Resolved | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    future: asyncio.Future[Resolved] = field(default_factory=asyncio.Future)
    _last_event: float = 0.0

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handle": self.handle,
            "key": self.key,
            "state": self.state,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "error": self.error,
            "path": self.result.path if self.result else None,
            "source": self.result.source if self.result else None,
            "created": self.created,
            "finished": self.finished,
        }


class Jobs:
    def __init__(self, pipeline: Pipeline, metrics: Metrics) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.by_id: OrderedDict[str, Job] = OrderedDict()
        self.active: dict[str, Job] = {}
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, handle: str) -> Job:
        """The job for ``handle``'s key: the running one, or a new one."""
        key = cache_key(handle)
        job = self.active.get(key)
        if job is not None:
            return job
        job = Job(handle=handle, key=key)
        self.by_id[job.id] = job
        self.active[key] = job
        self.pipeline.store.index.add_pending(key, handle, job.created)
        self.metrics.jobs_in_flight.set(len(self.active))
        task = asyncio.ensure_future(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._publish(job)
        return job

    async def _run(self, job: Job) -> None:
        def progress(done: int, total: int | None) -> None:
            job.state, job.bytes_done, job.bytes_total = "downloading", done, total
            now = time.monotonic()
            if now - job._last_event >= PROGRESS_EVERY:
                job._last_event = now
                self._publish(job)

        try:
            result = await self.pipeline.resolve(job.handle, progress)
        except HubcacheError as error:
            job.state, job.error = "failed", error.to_payload()
            job.future.set_exception(error)
            self.metrics.downloads.labels(result="failure").inc()
            self.pipeline.store.index.remove_pending(job.key)
        except asyncio.CancelledError:
            job.state = "cancelled"  # the daemon is stopping: stays pending, resumed at start
            stopping = DaemonError("daemon stopping; the download resumes at its next start")
            job.error = stopping.with_handle(job.handle).to_payload()
            job.future.set_exception(stopping)
            raise
        else:
            job.state, job.result = "done", result
            if job.bytes_total is not None:
                job.bytes_done = job.bytes_total
            job.future.set_result(result)
            if result.source == "download":
                self.metrics.downloads.labels(result="success").inc()
                self.metrics.fetched_bytes.inc(result.fetched_bytes)
            self.pipeline.store.index.remove_pending(job.key)
        finally:
            job.finished = time.time()
            self.active.pop(job.key, None)
            self.metrics.jobs_in_flight.set(len(self.active))
            self._publish(job)
            self._forget_old()
            if job.future.done() and not job.future.cancelled():
                job.future.exception()  # mark retrieved: waiters may all have hung up

    def _forget_old(self) -> None:
        while len(self.by_id) > FINISHED_KEPT + len(self.active):
            oldest_id, oldest = next(iter(self.by_id.items()))
            if oldest.finished is None:
                self.by_id.move_to_end(oldest_id)
                continue
            del self.by_id[oldest_id]

    # -- events ------------------------------------------------------------------------------

    def _publish(self, job: Job) -> None:
        self.broadcast({"event": "job", **job.view()})

    def broadcast(self, event: dict[str, Any]) -> None:
        for queue in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    # -- lifecycle ---------------------------------------------------------------------------

    def resume_pending(self) -> list[Job]:
        return [self.submit(handle) for handle in self.pipeline.store.index.pending()]

    async def cancel_all(self) -> None:
        """Stop every job; their partial files stay for the next start."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await self.pipeline.cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)
