"""Leases: a model being loaded is never evicted.

``hubcache.load`` holds a shared ``flock`` on ``.hubcache/leases/<key>.lease`` from before it
resolves until ``tf.saved_model.load`` returns; eviction takes the same lock exclusively, without
waiting, and skips the model when it cannot. The kernel drops a lease when its holder dies.
Where the lease file cannot be created (a read-only cache shared by a daemon of another user),
loading goes on unleased: ``lease_seconds`` after the resolve still protects it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from hubcache.layout import Layout


def _open(layout: Layout, key: str) -> int:
    path = layout.lease(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


@contextlib.contextmanager
def held(layout: Layout, key: str) -> Iterator[None]:
    """Hold a shared lease on ``key`` for the duration of the block."""
    try:
        fd = _open(layout, key)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def exclusive(layout: Layout, key: str) -> Iterator[bool]:
    """Try to take ``key`` from every lease holder; yields False if anyone holds one."""
    fd = _open(layout, key)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
