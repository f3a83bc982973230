"""Locks around one model download.

Two locks, taken in this order:

* :class:`KernelLock` - a ``filelock`` on ``.hubcache/locks/<key>.lock``, between hubcache
  processes. The kernel frees it when its holder dies, so it can never go stale.
* :class:`HubLock` - tensorflow_hub's own ``<key>.lock`` file (``<host>.<pid>.<uid>``), so that a
  concurrent ``hub.load`` waits for us and we wait for it. A lock whose owner is a dead process on
  this host is stale at once; any other is waited on while its staging directory grows and taken
  over after ``stale_seconds`` without growth, as tensorflow_hub itself does (but not after 10 min).

Correctness never depends on either lock: staging names are unique and publishing is a rename, so
the worst a broken lock can cause is a duplicate download.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import filelock

from hubcache.layout import Layout

log = logging.getLogger("hubcache.locks")
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class LockOwner:
    host: str
    pid: int
    uid: str

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        """Read ``<host>.<pid>.<uid>``; host names may contain dots."""
        parts = text.strip().rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
            return None
        return cls(host=parts[0], pid=int(parts[1]), uid=parts[2])

    def render(self) -> str:
        return f"{self.host}.{self.pid}.{self.uid}"

    def is_dead_here(self) -> bool:
        """True only when we can be sure: same host and no such process."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def tree_size(path: Path) -> int:
    total = 0
    for parent, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf8", errors="replace")
    except FileNotFoundError:
        return None


def try_kernel_lock(path: Path) -> filelock.FileLock | None:
    """The kernel lock at ``path`` if nobody holds it (release it when done), else None."""
    lock = filelock.FileLock(str(path), thread_local=False)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return None
    return lock


class KernelLock:
    """An exclusive ``filelock`` between hubcache processes, acquired without blocking the loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = filelock.FileLock(str(path), thread_local=False)

    async def acquire(self) -> None:
        delay = 0.02
        while True:
            try:
                self._lock.acquire(blocking=False)
                return
            except filelock.Timeout:
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_SECONDS)

    def release(self) -> None:
        self._lock.release()


class HubLock:
    """tensorflow_hub's ``<key>.lock``, held while we stage into ``<key>.<uid>.tmp``."""

    def __init__(self, layout: Layout, key: str, uid: str, stale_seconds: float) -> None:
        self.layout = layout
        self.key = key
        self.path = layout.hub_lock(key)
        self.owner = LockOwner(host=socket.gethostname(), pid=os.getpid(), uid=uid)
        self.stale_seconds = stale_seconds

    def try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.owner.render().encode("utf8"))
        finally:
            os.close(fd)
        return True

    async def acquire(self, published: Callable[[], bool]) -> bool:
        """Take the lock. False means the holder we waited for published the model meanwhile."""
        watched: tuple[str, int] | None = None
        since = time.monotonic()
        while not self.try_create():
            text = _read(self.path)
            if text is None:  # released while we looked
                if published():
                    return False
                continue
            owner = LockOwner.parse(text)
            if owner is not None and owner.is_dead_here():
                self._steal(text, owner, reason="owner process is gone")
                continue
            progress = (text, tree_size(self.layout.staging(self.key, owner.uid)) if owner else 0)
            if progress != watched:
                watched, since = progress, time.monotonic()
            elif time.monotonic() - since > self.stale_seconds:
                self._steal(text, None, reason=f"no progress for {self.stale_seconds:g}s")
                continue
            await asyncio.sleep(POLL_SECONDS)
        return True

    def _steal(self, text: str, dead: LockOwner | None, reason: str) -> None:
        if _read(self.path) != text:
            return  # it changed hands meanwhile: look again
        log.warning(
            "hubcache.lock.takeover", extra={"key": self.key, "lock": text, "reason": reason}
        )
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if dead is not None:  # a dead owner's staging can never be finished
            shutil.rmtree(self.layout.staging(self.key, dead.uid), ignore_errors=True)

    def release(self) -> None:
        """Remove the lock only if it still holds our content."""
        if _read(self.path) == self.owner.render():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
