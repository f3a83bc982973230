"""Eviction: which models go when the cache is over budget (pure), and the act of removing them.

Least recently used first; never a pinned model (index flag or config ``pins``), never one
resolved within ``lease_seconds``, never one being loaded (a lease is held) or downloaded (its
kernel lock is held). Removal renames the model into trash first, so readers see all or nothing;
blobs no model links to any more are freed last.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from hubcache.config import MinFree, Settings
from hubcache.index import Entry
from hubcache.leases import exclusive
from hubcache.locks import try_kernel_lock
from hubcache.store import Store


def plan_eviction(
    entries: Sequence[Entry],
    must_free: int,
    pins: Collection[str],
    lease_seconds: float,
    now: float,
) -> list[Entry]:
    """The least recently used evictable entries whose sizes add up to ``must_free`` or more
    (all evictable ones if that is not enough)."""
    if must_free <= 0:
        return []
    evictable = sorted(
        (
            e
            for e in entries
            if not e.pinned and e.handle not in pins and now - e.last_access >= lease_seconds
        ),
        key=lambda e: (e.last_access, e.key),
    )
    chosen, freed = [], 0
    for entry in evictable:
        if freed >= must_free:
            break
        chosen.append(entry)
        freed += entry.size_bytes
    return chosen


def free_floor(min_free: MinFree, fs_total: int) -> int:
    return max(min_free.bytes, int(min_free.fraction * fs_total))


def bytes_to_free(
    total: int, max_size: int, min_free: MinFree, fs_total: int, fs_free: int, *, reserve: int = 0
) -> int:
    """How much must go to respect the size budget and the free-space floor, with ``reserve``
    bytes more kept free (for a download about to start)."""
    floor = free_floor(min_free, fs_total)
    return max(total - max_size, floor + reserve - fs_free, 0)


@dataclass(frozen=True, slots=True)
class GcResult:
    evicted: list[str]
    freed_bytes: int


def collect(
    store: Store, settings: Settings, max_bytes: int | None = None, reserve: int = 0
) -> GcResult:
    """Evict down to ``max_bytes`` (default ``max_size``) and the ``min_free`` floor, keeping
    ``reserve`` more bytes free."""
    entries = store.entries()
    usage = shutil.disk_usage(store.layout.root)
    budget = settings.max_size if max_bytes is None else max_bytes
    total = sum(e.size_bytes for e in entries)
    must_free = bytes_to_free(
        total, budget, settings.min_free, usage.total, usage.free, reserve=reserve
    )
    pins, now = set(settings.pins), time.time()
    plan = plan_eviction(entries, must_free, pins, settings.lease_seconds, now)
    evicted, freed = [], 0
    for entry in plan:
        if _remove_unless_busy(store, entry.key):
            evicted.append(entry.key)
            freed += entry.size_bytes
    return GcResult(evicted, freed)


def _remove_unless_busy(store: Store, key: str) -> bool:
    lock = try_kernel_lock(store.layout.kernel_lock(key))
    if lock is None:
        return False  # being downloaded or healed right now
    try:
        with exclusive(store.layout, key) as unleased:
            return unleased and store.remove(key)
    finally:
        lock.release()


def set_pinned(store: Store, key: str, pinned: bool) -> bool:
    """Pin or unpin a cached model; False if it is not cached."""
    entry = store.check(key)
    if entry is None:
        return False
    store.index.set_pinned(key, pinned)
    return True
