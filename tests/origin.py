"""A real HTTP origin on 127.0.0.1 that hosts models the way tfhub.dev / Kaggle do.

* ``GET /models/<name>?tf-hub-format=compressed`` redirects (302) to ``/storage/<name>.tar.gz``;
  without the query it answers the model's HTML page, as the real hosts do.
* ``GET /storage/<name>.tar.gz`` serves the tarball with ``ETag``, ``Last-Modified``,
  ``Accept-Ranges``, ``Range`` (206/416) and ``If-Range``.
* Faults are queued per model and consumed one per body request: an error status (with
  ``Retry-After``), a connection cut after a fraction of the body, or a stall after it.
* Every body request is logged with the bytes actually sent.

It runs its own event loop in a thread so that subprocesses, synchronous API calls and
tensorflow_hub (urllib) can all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Fault:
    status: int | None = None  # answer with this status and no body
    retry_after: str | None = None
    drop_at: float | None = None  # cut the connection after this fraction of the body
    stall_at: float | None = None  # stop sending after this fraction until the client leaves
    swap: bytes | None = None  # after this request, the model's content (and ETag) changes
    stall_after: int | None = None  # stop sending after this many bytes of this answer


@dataclass
class Artifact:
    body: bytes
    etag: str
    content_type: str = "application/x-tar"
    ranges: bool = True
    rate: float | None = None  # bytes per second, to make downloads last


@dataclass
class Served:
    name: str
    status: int
    range: str | None
    if_range: str | None
    sent: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


@dataclass
class Origin:
    host: str = "127.0.0.1"
    port: int = 0
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    log: list[Served] = field(default_factory=list)
    page_hits: list[str] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)
    chunk: int = CHUNK  # bytes per write (and per pacing step when rate-limited)

    # -- test-facing helpers -----------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, name: str) -> str:
        """The model handle tests use (a tfhub.dev-style model page URL)."""
        return f"{self.base}/models/{name}"

    def put(
        self,
        name: str,
        body: bytes,
        *,
        content_type: str = "application/x-tar",
        ranges: bool = True,
        rate: float | None = None,
    ) -> str:
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        self.artifacts[name] = Artifact(body, etag, content_type, ranges, rate)
        return self.url(name)

    def inject(self, name: str, *faults: Fault) -> None:
        self.faults.setdefault(name, []).extend(faults)

    def served(self, name: str) -> list[Served]:
        return [s for s in self.log if s.name == name]

    def bytes_sent(self, name: str) -> int:
        return sum(s.sent for s in self.served(name))

    def bodies_sent(self, name: str) -> int:
        return sum(1 for s in self.served(name) if s.sent > 0)

    # -- HTTP --------------------------------------------------------------------------------

    async def _model_page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if request.query.get("tf-hub-format") == "compressed":
            raise web.HTTPFound(f"/storage/{name}.tar.gz")
        self.page_hits.append(name)
        return web.Response(text=f"<!DOCTYPE html><html><body>{name}</body></html>",
                            content_type="text/html")  # fmt: skip

    def alias(self, name: str) -> str:
        """A second handle for the same stored tarball (a Kaggle URL of a tfhub.dev model)."""
        return f"{self.base}/alias/{name}"

    async def _alias(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"/storage/{request.match_info['name']}.tar.gz")

    async def _redirect_loop(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(str(request.rel_url))

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        artifact = self.artifacts.get(name)
        if request.method == "HEAD":
            self.heads.append(name)
            if artifact is None:
                raise web.HTTPNotFound
            return web.Response(headers={"ETag": artifact.etag, "Accept-Ranges": "bytes"})
        record = Served(name, 200, request.headers.get("Range"), request.headers.get("If-Range"))
        self.log.append(record)
        if artifact is None:
            record.status = 404
            raise web.HTTPNotFound(text="no such model")
        queued = self.faults.get(name)
        fault = queued.pop(0) if queued else Fault()
        if fault.swap is not None:
            self.put(name, fault.swap, content_type=artifact.content_type, rate=artifact.rate)
        if fault.status is not None:
            record.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.Response(status=fault.status, headers=headers, text="injected fault")
        return await self._send(request, artifact, fault, record)

    async def _send(
        self, request: web.Request, artifact: Artifact, fault: Fault, record: Served
    ) -> web.StreamResponse:
        size = len(artifact.body)
        start, end, status = 0, size, 200
        headers = {"ETag": artifact.etag, "Last-Modified": "Sat, 01 Nov 2026 00:00:00 GMT"}
        if artifact.ranges:
            headers["Accept-Ranges"] = "bytes"
            wanted = _RANGE.match(request.headers.get("Range", ""))
            if_range = request.headers.get("If-Range")
            if wanted and (if_range is None or if_range == artifact.etag):
                start = int(wanted.group(1))
                end = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
                if start >= size:
                    record.status = 416
                    return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        record.status = status
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = artifact.content_type
        response.content_length = end - start
        await response.prepare(request)
        cut = fault.drop_at if fault.drop_at is not None else fault.stall_at
        cut_at = int(size * cut) if cut is not None else None
        if fault.stall_after is not None:
            cut_at = start + fault.stall_after
        with contextlib.suppress(ConnectionError):  # the client hung up: normal for a download
            await self._stream(request, response, artifact, fault, record, (start, end, cut_at))
        record.ended = time.monotonic()
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        artifact: Artifact,
        fault: Fault,
        record: Served,
        span: tuple[int, int, int | None],
    ) -> None:
        position, end, cut_at = span
        while position < end:
            if cut_at is not None and position >= cut_at:
                await self._interrupt(request, fault)
                return
            stop = min(end, position + self.chunk)
            if cut_at is not None:
                stop = min(stop, cut_at)
            await response.write(artifact.body[position:stop])
            record.sent += stop - position
            if artifact.rate:
                await asyncio.sleep((stop - position) / artifact.rate)
            position = stop
        await response.write_eof()

    async def _interrupt(self, request: web.Request, fault: Fault) -> None:
        transport = request.transport
        if fault.drop_at is not None:
            if transport is not None:
                transport.close()  # flushes what was written, then closes
            return
        while transport is not None and not transport.is_closing():
            await asyncio.sleep(0.05)  # stall until the client goes away

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Origin:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application()
            app.router.add_get("/models/{name:.+}", self._model_page)
            app.router.add_get("/storage/{name:.+}.tar.gz", self._storage)
            app.router.add_get("/loop/{name:.+}", self._redirect_loop)
            app.router.add_get("/alias/{name:.+}", self._alias)
            self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="test-origin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if not getattr(self, "_thread", None) or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
