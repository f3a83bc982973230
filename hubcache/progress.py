"""Progress bars for ``hubcache prefetch``: one per handle on a TTY, nothing otherwise.

Fed either by the in-process pipeline's callbacks or by the daemon's ``/v1/events`` feed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from hubcache.client import Client, DaemonUnavailable
from hubcache.errors import HubcacheError
from hubcache.handles import cache_key


class Board:
    def __init__(self, handles: Sequence[str], stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.labels = {cache_key(h): h for h in handles}
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, key: str, done: int, total: int | None) -> None:
        if not self.enabled or key not in self.labels:
            return
        from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                label = self.labels[key].rsplit("/", 3)[-3:]
                bar = tqdm(desc="/".join(label)[-40:], total=total, unit="B", unit_scale=True,
                           position=len(self._bars), leave=True, file=self.stream)  # fmt: skip
                self._bars[key] = bar
            if total is not None:
                bar.total = total
            bar.update(done - bar.n)

    def follow(self, client: Client) -> threading.Thread | None:
        """Feed the bars from the daemon's event stream, in a background thread."""
        if not self.enabled:
            return None

        def run() -> None:
            try:
                for event in client.events():
                    if event.get("event") == "job" and event.get("bytes_done") is not None:
                        self.update(str(event["key"]), event["bytes_done"], event["bytes_total"])
            except (DaemonUnavailable, HubcacheError, OSError, ValueError):
                return

        thread = threading.Thread(target=run, name="hubcache-progress", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
