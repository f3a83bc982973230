"""``hubcache daemon``: the lifecycle around the API.

Start: sweep what dead owners left, bind the Unix socket (or take systemd's), resume jobs that
were accepted but not finished, watch the directory, then ``READY=1``.
Stop (SIGTERM/SIGINT): ``STOPPING=1``, stop accepting, cancel downloads (their partial files stay
and their locks are released), close, exit 0 — well within systemd's 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
from pathlib import Path

from aiohttp import web

from hubcache import __version__
from hubcache.config import Settings
from hubcache.errors import DaemonError, HubcacheError
from hubcache.evict import collect
from hubcache.jobs import Jobs
from hubcache.metrics import Metrics
from hubcache.pipeline import Pipeline
from hubcache.server import State, build_app
from hubcache.store import Store
from hubcache.systemd import inherited_socket, notify
from hubcache.watch import CacheView

log = logging.getLogger("hubcache.daemon")
SHUTDOWN_GRACE = 3.0


def raise_fd_limit() -> None:
    """Idle clients cost a descriptor each: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log.debug("hubcache.daemon.nofile", extra={"soft": soft, "hard": hard})


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _bind(runner: web.AppRunner, settings: Settings) -> tuple[web.BaseSite, Path | None]:
    """Systemd's socket if we were given one, else our own Unix socket with ``socket_mode``."""
    inherited = inherited_socket()
    if inherited is not None:
        site: web.BaseSite = web.SockSite(runner, inherited)
        await site.start()
        return site, None
    path = settings.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if _answers(path):
            raise DaemonError(f"another daemon already serves {path}")
        path.unlink()  # stale: its daemon died
    old_umask = os.umask(0o777 & ~settings.socket_mode)
    try:
        site = web.UnixSite(runner, str(path))
        await site.start()
    finally:
        os.umask(old_umask)
    os.chmod(path, settings.socket_mode)
    return site, path


def _collect_in_thread(settings: Settings) -> list[str]:
    store = Store(settings)  # SQLite connections belong to one thread
    try:
        return collect(store, settings).evicted
    finally:
        store.close()


async def _evict_periodically(settings: Settings, view: CacheView) -> None:
    """Keep the cache within ``max_size`` and ``min_free`` between downloads."""
    loop = asyncio.get_running_loop()
    while settings.gc_interval_seconds > 0:
        await asyncio.sleep(settings.gc_interval_seconds)
        try:
            evicted = await loop.run_in_executor(None, _collect_in_thread, settings)
        except (OSError, HubcacheError) as error:
            log.warning("hubcache.gc.failed", extra={"error": str(error)})
            continue
        if evicted:
            log.info("hubcache.gc.evicted", extra={"keys": evicted})
            view.refresh()


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit status."""
    raise_fd_limit()
    store = Store(settings)
    swept = store.sweep()
    if swept:
        log.info("hubcache.daemon.swept", extra={"removed": swept})
    metrics = Metrics()
    pipeline = Pipeline(settings, store)
    jobs = Jobs(pipeline, metrics)
    view = CacheView(store, metrics)
    stopping = asyncio.Event()
    state = State(settings, pipeline, jobs, view, metrics, stopping)
    runner = web.AppRunner(
        build_app(state), handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    socket_path = None
    try:
        site, socket_path = await _bind(runner, settings)
        view.start()
        evictor = asyncio.ensure_future(_evict_periodically(settings, view))
        resumed = jobs.resume_pending()
        where = socket_path or "the socket systemd passed"
        log.info(
            "hubcache.daemon.ready",
            extra={
                "socket": str(where),
                "cache_dir": str(settings.cache_dir),
                "resumed": len(resumed),
            },
        )
        notify(f"READY=1\nSTATUS=serving {settings.cache_dir} on {where}\nMAINPID={os.getpid()}")
        if ready is not None:
            ready.set()
        await stopping.wait()
        notify("STOPPING=1\nSTATUS=stopping: downloads keep their partial files")
        log.info("hubcache.daemon.stopping", extra={"jobs": len(jobs.active)})
        jobs.broadcast({"event": "daemon", "state": "stopping"})  # ends every /v1/events stream
        await site.stop()
        evictor.cancel()
        await jobs.cancel_all()
        await view.stop()
    finally:
        await runner.cleanup()
        await pipeline.aclose()
        store.close()
        if socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("hubcache.daemon.stopped", extra={"version": __version__})
    return 0
