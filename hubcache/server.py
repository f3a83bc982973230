"""The daemon's HTTP/1.1 + JSON API (DESIGN §6), as an aiohttp application.

Every error answer is ``{"error": {"code", "message", "handle"}}`` with a fitting status. Request
bodies are capped at 1 MiB and validated (types, unknown fields). The daemon downloads remote
handles only: it never reads a local path on a client's behalf.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hubcache import __version__
from hubcache.config import Settings, parse_size
from hubcache.errors import (
    ConfigError,
    HandleError,
    HubcacheError,
    NotCachedError,
    RequestError,
    RouteNotFoundError,
)
from hubcache.evict import collect, set_pinned
from hubcache.handles import is_remote
from hubcache.jobs import Jobs
from hubcache.layout import is_key
from hubcache.metrics import Metrics
from hubcache.pipeline import Pipeline
from hubcache.store import Resolved
from hubcache.watch import CacheView

log = logging.getLogger("hubcache.server")
MAX_BODY = 1 << 20
MAX_HANDLES = 10_000
HEARTBEAT_SECONDS = 15.0

STATUS_OF = {
    "bad_request": 400, "invalid_handle": 400, "not_found": 404, "not_cached": 404,
    "http_status": 502, "fetch_failed": 502, "integrity": 502,
    "bad_archive": 422, "unsafe_archive": 422, "archive_limit": 422, "not_a_model": 422,
    "cache_full": 507, "lock_timeout": 503, "daemon_error": 503,
}  # fmt: skip
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


@dataclass
class State:
    settings: Settings
    pipeline: Pipeline
    jobs: Jobs
    view: CacheView
    metrics: Metrics
    stopping: asyncio.Event


STATE = web.AppKey("state", State)


def error_response(payload: dict[str, Any], status: int) -> web.Response:
    return web.json_response({"error": payload}, status=status)


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except HubcacheError as error:
        return error_response(error.to_payload(), STATUS_OF.get(error.code, 500))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "bad_request")
        return error_response({"code": code, "message": error.reason, "handle": None}, error.status)


async def read_object(
    request: web.Request, fields: dict[str, type | tuple[type, ...]], required: set[str]
) -> dict[str, Any]:
    """The request's JSON object, checked against ``fields``: no unknown keys, right types."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError:
        raise RequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    for name, value in body.items():
        if name not in fields:
            raise RequestError(f"unknown field {name!r}")
        if isinstance(value, bool) or not isinstance(value, fields[name]):
            raise RequestError(f"field {name!r} has the wrong type")
    for name in required - set(body):
        raise RequestError(f"field {name!r} is required")
    return body


def remote_handle(handle: str) -> str:
    if not is_remote(handle):
        raise HandleError(
            "the daemon downloads http(s) handles only; local paths are used by the client",
            handle,
        )
    return handle


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "cache_dir": str(state.settings.cache_dir),
            "jobs_in_flight": len(state.jobs.active),
        }
    )


async def resolve(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    handle = remote_handle((await read_object(request, {"handle": str}, {"handle"}))["handle"])
    entry = state.pipeline.store.lookup(handle)
    if entry is not None:
        path = state.pipeline.store.layout.model(entry.key)
        resolved = Resolved.of(handle, entry, path, "cache")
    else:
        resolved = await asyncio.shield(state.jobs.submit(handle).future)
    state.metrics.resolve_seconds.labels(source=resolved.source).observe(
        time.perf_counter() - started
    )
    return web.json_response(resolved.row())


async def prefetch(request: web.Request) -> web.Response:
    state = request.app[STATE]
    handles = (await read_object(request, {"handles": list}, {"handles"}))["handles"]
    if not handles or len(handles) > MAX_HANDLES or not all(isinstance(h, str) for h in handles):
        raise RequestError(f"'handles' must be a list of 1 to {MAX_HANDLES} strings")
    for handle in handles:
        remote_handle(handle)
    jobs = [state.jobs.submit(handle) for handle in handles]
    body = {"jobs": [{"id": j.id, "handle": j.handle, "key": j.key} for j in jobs]}
    return web.json_response(body, status=202)


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response({"jobs": [j.view() for j in request.app[STATE].jobs.by_id.values()]})


async def get_job(request: web.Request) -> web.Response:
    job = request.app[STATE].jobs.by_id.get(request.match_info["id"])
    if job is None:
        raise RouteNotFoundError(f"no job {request.match_info['id']!r}")
    return web.json_response(job.view())


async def events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    queue = state.jobs.subscribe()
    try:
        for job in list(state.jobs.active.values()):
            await response.write(_line({"event": "job", **job.view()}))
        while not state.stopping.is_set():
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                event = {"event": "heartbeat"}
            await response.write(_line(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.jobs.unsubscribe(queue)
    return response


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode("utf8") + b"\n"


async def models(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].view.rows)


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not is_key(key):
        raise RequestError(f"{key!r} is not a cache key (40 hex digits)")
    return key


async def delete_model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    key = _key(request)
    store = state.pipeline.store
    if key in state.jobs.active:
        raise RequestError(f"{key} is being downloaded", state.jobs.active[key].handle)
    if not store.remove(key):
        raise NotCachedError(f"no cached model with key {key}")
    state.view.refresh()
    return web.json_response({"removed": key})


async def set_pin(request: web.Request, pinned: bool) -> web.Response:
    state = request.app[STATE]
    key = _key(request)
    if not set_pinned(state.pipeline.store, key, pinned):
        raise NotCachedError(f"no cached model with key {key}")
    state.view.refresh()
    return web.json_response({"key": key, "pinned": pinned})


async def gc(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = (
        await read_object(request, {"max_bytes": (int, str)}, set())
        if request.can_read_body
        else {}
    )
    try:
        max_bytes = parse_size(body["max_bytes"]) if "max_bytes" in body else None
    except ConfigError as error:
        raise RequestError(f"max_bytes: {error.message}") from None
    result = collect(state.pipeline.store, state.settings, max_bytes)
    state.view.refresh()
    return web.json_response({"evicted": result.evicted, "freed_bytes": result.freed_bytes})


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = state.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def build_app(state: State) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[STATE] = state
    app.router.add_get("/v1/health", health)
    app.router.add_post("/v1/resolve", resolve)
    app.router.add_post("/v1/prefetch", prefetch)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{id}", get_job)
    app.router.add_get("/v1/events", events)
    app.router.add_get("/v1/models", models)
    app.router.add_delete("/v1/models/{key}", delete_model)
    app.router.add_post("/v1/models/{key}/pin", functools.partial(set_pin, pinned=True))
    app.router.add_post("/v1/models/{key}/unpin", functools.partial(set_pin, pinned=False))
    app.router.add_post("/v1/gc", gc)
    app.router.add_get("/metrics", metrics)
    return app
