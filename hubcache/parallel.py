"""Parallel ranged download into a :class:`PartFile`.

``connections`` workers take chunks front first and write them at their offsets; the watermark
(the contiguous prefix the extractor reads) advances as the front fills. An idle worker steals the
back half of the largest chunk still in flight, so the last percent is not left to one slow
connection. Once a second a monitor measures each connection: a chunk far below the median speed
(or silent) is abandoned and re-split for fresh connections; chunk progress is persisted so a crash
re-fetches only what is missing. Every request carries ``If-Range``: a ``200`` or a new ETag means
the content changed, and the whole download restarts from byte 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from hubcache.config import DownloadSettings
from hubcache.errors import FetchError
from hubcache.partial import PartFile, PartState
from hubcache.ranges import Chunk, continuation, laggards, split, watermark
from hubcache.retry import compute_backoff, status_failure

READ_SIZE = 1 << 20
MONITOR_SECONDS = 1.0
SLOW_FACTOR = 4.0

Progress = Callable[[int, int | None], None]


class ContentChanged(Exception):
    """The origin's content changed under a ranged download."""


class _ChunkFailed(Exception):
    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


@dataclass(slots=True)
class _Flight:
    chunk: Chunk
    task: asyncio.Task[None]
    window_bytes: int = 0
    abandoned: bool = False


class ParallelDownload:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        part: PartFile,
        *,
        settings: DownloadSettings,
        state: PartState,
        chunks: list[Chunk],
        progress: Progress | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.part = part
        self.settings = settings
        self.state = state
        self.chunks = chunks
        self.pending = sorted((c for c in chunks if not c.complete), key=lambda c: c.start)
        self.flights: dict[int, _Flight] = {}
        self.progress = progress
        self.received = 0
        self.failures = 0
        self.last_cause = ""
        self._changed = asyncio.Event()  # a chunk was re-queued or a transfer ended

    async def run(self, first: tuple[aiohttp.ClientResponse, Chunk] | None = None) -> None:
        if first is not None:
            self.pending.remove(first[1])
        workers = [
            asyncio.ensure_future(self._worker(first if i == 0 else None))
            for i in range(self.settings.connections)
        ]
        monitor = asyncio.ensure_future(self._monitor())
        try:
            await asyncio.gather(*workers)
        finally:
            for task in (*workers, monitor):
                task.cancel()
            await asyncio.gather(*workers, monitor, return_exceptions=True)
            self._persist()
        if not all(c.complete for c in self.chunks):  # pragma: no cover - workers end only then
            raise FetchError("parallel download ended with missing ranges")

    # -- scheduling --------------------------------------------------------------------------

    def _next(self) -> Chunk | None:
        if self.pending:
            return self.pending.pop(0)
        busiest = max(
            (f.chunk for f in self.flights.values() if not f.abandoned),
            key=lambda c: c.remaining,
            default=None,
        )
        tail = split(busiest, self.settings.min_chunk) if busiest is not None else None
        if tail is not None:
            self.chunks.append(tail)
        return tail

    async def _take(self) -> Chunk | None:
        """The next chunk to fetch; waits while others are in flight (they may hand work back)."""
        while True:
            chunk = self._next()
            if chunk is not None or not self.flights:
                return chunk
            self._changed.clear()
            await self._changed.wait()

    def _requeue(self, chunk: Chunk) -> None:
        tail = split(chunk, self.settings.min_chunk)
        for piece in (chunk, tail):
            if piece is not None and not piece.complete:
                if piece is tail:
                    self.chunks.append(piece)
                self.pending.append(piece)
        self.pending.sort(key=lambda c: c.start)
        self._changed.set()

    async def _worker(self, first: tuple[aiohttp.ClientResponse, Chunk] | None) -> None:
        if first is not None:
            await self._guarded(first[1], self._consume(*first))
            first[0].close()  # its chunk is done: stop the origin pushing the rest
        while (chunk := await self._take()) is not None:
            await self._guarded(chunk, self._fetch(chunk))

    async def _guarded(self, chunk: Chunk, work: Coroutine[Any, Any, None]) -> None:
        """Run one chunk's transfer; on failure or abandonment put what is left back."""
        task = asyncio.ensure_future(work)
        flight = self.flights[id(chunk)] = _Flight(chunk, task)
        try:
            await task
        except _ChunkFailed as failure:
            self._requeue(chunk)
            await self._back_off(failure)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not flight.abandoned or (current is not None and current.cancelling()):
                raise
            self._requeue(chunk)  # a laggard: fresh connections take its halves
        finally:
            self.flights.pop(id(chunk), None)
            self._changed.set()

    async def _back_off(self, failure: _ChunkFailed) -> None:
        self.failures += 1
        self.last_cause = failure.cause
        if self.failures > self.settings.retries:
            raise FetchError(f"{failure.cause} (gave up after {self.failures} attempts)")
        await asyncio.sleep(
            compute_backoff(
                self.failures,
                self.settings.backoff_initial,
                self.settings.backoff_max,
                failure.retry_after,
            )
        )

    # -- transfer ----------------------------------------------------------------------------

    async def _fetch(self, chunk: Chunk) -> None:
        headers = {
            "Accept-Encoding": "identity",
            "Range": f"bytes={chunk.position}-{chunk.end - 1}",
        }
        if self.state.validator:
            headers["If-Range"] = self.state.validator
        try:
            async with self.session.get(self.url, headers=headers) as response:
                self._check(response, chunk)
                await self._consume(response, chunk)
        except (aiohttp.ClientError, TimeoutError) as error:
            cause = "stalled" if isinstance(error, TimeoutError) else str(error) or "dropped"
            raise _ChunkFailed(f"range {chunk.position}-{chunk.end - 1}: {cause}") from None

    def _check(self, response: aiohttp.ClientResponse, chunk: Chunk) -> None:
        status = response.status
        if status == 200:
            raise ContentChanged("origin answered a ranged request with the whole body")
        retry = status_failure(
            status, response.reason, response.url, response.headers.get("Retry-After")
        )
        if retry is not None:
            raise _ChunkFailed(*retry)
        headers = response.headers
        if status != 206 or not continuation(
            headers.get("Content-Range"), headers.get("ETag"), chunk.position, self.state.etag
        ):
            raise ContentChanged("a ranged answer does not match the download")

    async def _consume(self, response: aiohttp.ClientResponse, chunk: Chunk) -> None:
        flight = self.flights.get(id(chunk))
        async for data in response.content.iter_chunked(READ_SIZE):
            count = min(len(data), chunk.remaining)
            if count <= 0:
                break  # the chunk was re-split: the rest is someone else's
            self.part.write_at(chunk.position, memoryview(data)[:count])
            chunk.done += count
            self.received += count
            self.failures = 0
            if flight is not None:
                flight.window_bytes += count
            if chunk.start <= self.part.size:  # only then can the contiguous prefix grow
                self.part.advance(watermark(self.chunks))
            if self.progress is not None:
                self.progress(sum(c.done for c in self.chunks), self.state.total)
            if chunk.complete:
                return
        if not chunk.complete:
            raise _ChunkFailed(f"range {chunk.position}-{chunk.end - 1}: connection closed early")

    # -- monitoring --------------------------------------------------------------------------

    async def _monitor(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            now = time.monotonic()
            elapsed, last = now - last, now
            flights = [f for f in self.flights.values() if not f.abandoned]
            speeds = [(f.chunk, f.window_bytes / elapsed) for f in flights]
            for flight in flights:
                flight.window_bytes = 0
            slow = {id(c) for c in laggards(speeds, SLOW_FACTOR, self.settings.min_chunk)}
            for flight in flights:
                if id(flight.chunk) in slow:
                    flight.abandoned = True
                    flight.task.cancel()
            self._persist()

    def _persist(self) -> None:
        with contextlib.suppress(OSError):
            self.part.record(replace(self.state, chunks=[c.as_list() for c in self.chunks]))
