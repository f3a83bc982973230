"""The daemon's live view of the cache directory, kept current by ``watchdog``.

tensorflow_hub publishes by renaming ``<key>.<uid>.tmp`` to ``<key>``, users delete with ``rm -rf``:
both are events on the cache root, which trigger a (debounced) rescan that adopts new entries,
forgets deleted ones and updates the size gauges. A slow periodic rescan covers filesystems
without inotify (NFS, Lustre).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from hubcache.layout import STATE_DIR
from hubcache.metrics import Metrics
from hubcache.store import Store, entry_row

DEBOUNCE_SECONDS = 0.2
RESCAN_SECONDS = 30.0


class _Poke(FileSystemEventHandler):
    def __init__(self, view: CacheView) -> None:
        self.view = view

    def on_any_event(self, event: FileSystemEvent) -> None:
        if STATE_DIR not in str(event.src_path):
            self.view.poke_threadsafe()


class CacheView:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.rows: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._observer: Any = None
        self._rescan: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        entries = self.store.entries()
        self.rows = [entry_row(e, self.store.layout) for e in entries]
        self.metrics.cache_entries.set(len(entries))
        self.metrics.cache_bytes.set(sum(e.size_bytes for e in entries))

    def poke_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._debounce)

    def _debounce(self) -> None:
        if self._pending is None and self._loop is not None:
            self._pending = self._loop.call_later(DEBOUNCE_SECONDS, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self.refresh()

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_SECONDS)
            self.refresh()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.refresh()
        observer = Observer()
        observer.schedule(_Poke(self), str(self.store.layout.root), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._rescan = asyncio.ensure_future(self._periodic())

    async def stop(self) -> None:
        if self._rescan is not None:
            self._rescan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rescan
        if self._pending is not None:
            self._pending.cancel()
        if self._observer is not None:
            self._observer.stop()
            await asyncio.get_running_loop().run_in_executor(None, self._observer.join, 5)
