"""Download one tarball into a :class:`~hubcache.partial.PartFile`, resuming and retrying.

One request at a time: resume with ``Range`` + ``If-Range`` from whatever the ``.part`` file holds;
a ``200`` to a ranged request means the content changed (or ranges are not offered) and the file
restarts from byte 0. Connection errors, stalls (no byte for ``stall_seconds``), 408/429/5xx are
retried with exponential backoff and jitter, honouring ``Retry-After``; other statuses are final.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import aiohttp

from hubcache.config import DownloadSettings
from hubcache.errors import FetchError, HTTPStatusError, IntegrityError
from hubcache.parallel import ContentChanged, ParallelDownload
from hubcache.partial import PartFile, PartState
from hubcache.ranges import continuation, from_lists, plan_chunks, should_parallelise
from hubcache.retry import compute_backoff, status_failure

log = logging.getLogger("hubcache.fetch")
CHUNK = 1 << 20
MAX_REDIRECTS = 10

Progress = Callable[[int, int | None], None]
Reserve = Callable[[int], None]  # raises when that many bytes cannot be made free


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    final_url: str
    etag: str | None
    size: int
    bytes_received: int  # by this process, all attempts; resumed bytes are not counted


class _Retry(Exception):
    def __init__(self, cause: str, retry_after: float | None = None, progressed: bool = False):
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after
        self.progressed = progressed


def open_session(settings: DownloadSettings) -> aiohttp.ClientSession:
    """A session for model downloads: raw bytes (no transparent gunzip), proxies from env."""
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(settings.ca_file)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=settings.stall_seconds)
    return aiohttp.ClientSession(
        timeout=timeout,
        auto_decompress=False,
        trust_env=True,
        connector=aiohttp.TCPConnector(ssl=context, limit=0),
    )


class Download:
    """The state of one tarball download across attempts."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        part: PartFile,
        settings: DownloadSettings,
        *,
        progress: Progress | None = None,
        reserve: Reserve | None = None,
    ) -> None:
        self.session = session
        self.url = url
        self.part = part
        self.settings = settings
        self.progress = progress
        self.reserve = reserve
        self.final_url = url
        self.received = 0
        self._reserved = False

    def _reserve(self, total: int | None) -> None:
        """Before the first byte lands: room for what is left to fetch plus the unpacked model
        (estimated as large as the tarball; float weights barely compress)."""
        if self.reserve is not None and total is not None and not self._reserved:
            self._reserved = True
            self.reserve(total - self.part.size + total)

    async def run(self) -> FetchResult:
        failures = 0
        while True:
            try:
                if self._resumable_chunks():
                    await self._parallel(None)
                else:
                    await self._attempt()
                break
            except ContentChanged as changed:
                failures += 1
                if failures > self.settings.retries:
                    raise FetchError(f"content keeps changing: {changed}") from None
                log.info("hubcache.fetch.restart", extra={"url": self.url, "cause": str(changed)})
                self.part.restart(PartState(self.url, None, None, None))
            except _Retry as retry:
                failures = 1 if retry.progressed else failures + 1
                if failures > self.settings.retries:
                    raise FetchError(f"{retry.cause} (gave up after {failures} attempts)") from None
                delay = compute_backoff(
                    failures,
                    self.settings.backoff_initial,
                    self.settings.backoff_max,
                    retry.retry_after,
                )
                log.info(
                    "hubcache.fetch.retry",
                    extra={"url": self.url, "cause": retry.cause, "delay": round(delay, 2)},
                )
                await asyncio.sleep(delay)
        self.part.finish()
        state = self.part.state
        return FetchResult(
            url=self.url,
            final_url=self.final_url,
            etag=state.etag if state else None,
            size=self.part.size,
            bytes_received=self.received,
        )

    def _resumable_chunks(self) -> bool:
        state = self.part.state
        return bool(state and state.chunks and state.url == self.url and state.validator)

    async def _parallel(self, first: aiohttp.ClientResponse | None) -> None:
        """Fetch the missing chunks with range workers; ``first`` is a live 200 body from byte 0."""
        state = self.part.state
        assert state is not None and state.chunks is not None
        chunks = from_lists(state.chunks)
        self._reserve(state.total)
        download = ParallelDownload(
            self.session,
            self.url,
            self.part,
            settings=self.settings,
            state=state,
            chunks=chunks,
            progress=self.progress,
        )
        try:
            await download.run(None if first is None else (first, chunks[0]))
        finally:
            self.received += download.received

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        state = self.part.state
        if self.part.size and state and state.url == self.url and state.validator:
            headers["Range"] = f"bytes={self.part.size}-"
            headers["If-Range"] = state.validator
        return headers

    async def _attempt(self) -> None:
        headers = self._request_headers()
        started, before = time.monotonic(), self.received
        try:
            async with self.session.get(
                self.url, headers=headers, max_redirects=MAX_REDIRECTS
            ) as response:
                self.final_url = str(response.url)
                self._check_status(response, ranged="Range" in headers)
                total = self._accept_body(response, ranged="Range" in headers)
                if response.status == 200 and should_parallelise(
                    total,
                    response.headers.get("Accept-Ranges", "").strip().lower() == "bytes",
                    self.settings.connections,
                    self.settings.min_chunk,
                ):
                    await self._go_parallel(response, total or 0)
                else:
                    await self._stream(response, total)
        except aiohttp.TooManyRedirects:
            raise FetchError(f"more than {MAX_REDIRECTS} redirects from {self.url}") from None
        except aiohttp.ClientConnectorCertificateError as error:
            raise FetchError(f"TLS certificate rejected for {error.host}") from None
        except aiohttp.InvalidURL as error:
            raise FetchError(f"invalid URL {error}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            cause = _describe(error, self.settings.stall_seconds)
            raise _Retry(cause, progressed=self.received > before) from None
        log.info(
            "hubcache.fetch.done",
            extra={"url": self.url, "bytes": self.part.size, "seconds": time.monotonic() - started},
        )

    async def _go_parallel(self, response: aiohttp.ClientResponse, total: int) -> None:
        chunks = plan_chunks(total, self.settings.connections, self.settings.min_chunk)
        state = self.part.state
        assert state is not None
        self.part.record(replace(state, chunks=[c.as_list() for c in chunks]))
        await self._parallel(response)

    def _check_status(self, response: aiohttp.ClientResponse, ranged: bool) -> None:
        status = response.status
        if ranged and status == 416:
            # Nothing more to send: either we hold it all, or our bytes no longer fit.
            self.part.restart(self._state_from(response, None))
            raise _Retry("range not satisfiable; restarting from byte 0")
        retry = status_failure(
            status, response.reason, response.url, response.headers.get("Retry-After")
        )
        if retry is not None:
            raise _Retry(*retry)
        if status not in (200, 206):
            raise HTTPStatusError(f"unexpected HTTP {status} from {response.url}", status=status)

    def _state_from(self, response: aiohttp.ClientResponse, total: int | None) -> PartState:
        return PartState(
            url=self.url,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            total=total,
        )

    def _accept_body(self, response: aiohttp.ClientResponse, ranged: bool) -> int | None:
        """Decide whether the body continues our bytes or replaces them; return the total."""
        state = self.part.state
        if response.status == 206 and ranged and state is not None:
            found = continuation(
                response.headers.get("Content-Range"),
                response.headers.get("ETag"),
                self.part.size,
                state.etag,
            )
            if found is None:
                self.part.restart(self._state_from(response, None))
                raise _Retry("resumed range does not continue the partial file; restarting")
            total = found[1] if found[1] is not None else state.total
            self._reserve(total)
            return total
        if response.status == 206:  # a range we did not ask for
            raise IntegrityError(f"origin sent a partial answer to a full request: {response.url}")
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if self.part.size:
            log.info("hubcache.fetch.restart", extra={"url": self.url, "had": self.part.size})
            self._reserved = False  # the old bytes go: find room for the new body again
        self.part.restart(self._state_from(response, total))
        self._reserve(total)
        return total

    async def _stream(self, response: aiohttp.ClientResponse, total: int | None) -> None:
        async for chunk in response.content.iter_chunked(CHUNK):
            self.part.append(chunk)
            self.received += len(chunk)
            if self.progress is not None:
                self.progress(self.part.size, total)
        if total is not None and self.part.size < total:
            raise _Retry(f"connection closed at {self.part.size} of {total} bytes", progressed=True)
        if total is not None and self.part.size > total:
            self.part.restart(self._state_from(response, None))
            raise IntegrityError(f"origin sent more than the {total} bytes it announced")


def _describe(error: BaseException, stall_seconds: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no data for {stall_seconds:g}s (stalled)"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "connection dropped mid-body"
    text = str(error) or type(error).__name__
    return f"connection failed: {text}"
