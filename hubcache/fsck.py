"""``hubcache verify``: compare the index with the directory, and repair on request.

:func:`check` lists problems; :func:`repair` removes what can only be removed, rebuilds the index
from the directory (descriptors give the handles) and returns the handles to fetch again.
Unknown files and non-empty unknown directories are reported, never deleted: they may be a user's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import filelock

from hubcache.dedup import free_unused_blobs
from hubcache.layout import STATE_DIR, is_key
from hubcache.locks import LockOwner
from hubcache.store import Store, file_sha256, handle_from_descriptor
from hubcache.verify import model_problems

_STAGING = re.compile(r"^([0-9a-f]{40})\.([^.]+)\.tmp$")


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # incomplete changed unindexed dangling_row orphan_staging stale_lock orphan_partial
    #            orphan_descriptor trash unknown
    target: str  # a key, or a name relative to the cache root
    detail: str
    handle: str | None = None

    def line(self) -> str:
        named = f" ({self.handle})" if self.handle else ""
        return f"{self.kind}: {self.target}{named}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf8", errors="replace")
    except OSError:
        return ""


def _check_models(store: Store, keys: set[str], deep: bool) -> list[Problem]:
    problems, rows = [], {e.key: e for e in store.index.all()}
    for key in sorted(keys):
        entry = rows.get(key)
        handle = (
            entry.handle if entry else handle_from_descriptor(_read(store.layout.descriptor(key)))
        )
        found = model_problems(store.layout.model(key), entry.manifest if entry else None)
        if found:
            problems.append(Problem("incomplete", key, "; ".join(found[:3]), handle))
        elif entry is None:
            problems.append(Problem("unindexed", key, "model not in the index", handle))
        elif deep:
            for relative, digest in sorted(entry.hashes.items()):
                if file_sha256(store.layout.model(key) / relative) != digest:
                    problems.append(Problem("changed", key, f"{relative} changed content", handle))
                    break
    problems += [
        Problem("dangling_row", key, "index row without a model directory", rows[key].handle)
        for key in sorted(rows.keys() - keys)
    ]
    return problems


def _check_top_level(store: Store, keys: set[str]) -> list[Problem]:
    problems, root = [], store.layout.root
    for name in sorted(os.listdir(root)):
        if name == STATE_DIR or name in keys:
            continue
        staging, key = _STAGING.match(name), name[:40]
        if staging:
            owner = LockOwner.parse(_read(store.layout.hub_lock(staging.group(1))))
            if owner is None or owner.uid != staging.group(2) or owner.is_dead_here():
                problems.append(Problem("orphan_staging", name, "staging left by a dead download"))
        elif name == f"{key}.lock" and is_key(key):
            owner = LockOwner.parse(_read(root / name))
            if owner is not None and owner.is_dead_here():
                problems.append(Problem("stale_lock", name, f"lock of dead process {owner.pid}"))
        elif name == f"{key}.descriptor.txt" and is_key(key):
            if key not in keys:
                problems.append(Problem("orphan_descriptor", name, "descriptor without a model"))
        else:
            problems.append(Problem("unknown", name, "not part of the cache layout"))
    return problems


def _check_state(store: Store, keys: set[str]) -> list[Problem]:
    problems = []
    partial = store.layout.partial("0" * 40).parent
    for name in sorted(os.listdir(partial)) if partial.is_dir() else []:
        key = name[:40]
        if key in keys and store.check(key) is not None:
            problems.append(Problem("orphan_partial", f"{STATE_DIR}/partial/{name}",
                                    "partial download of a model already published"))  # fmt: skip
    trash = store.layout.trash
    problems += [
        Problem("trash", f"{STATE_DIR}/trash/{name}", "evicted model not yet deleted")
        for name in sorted(os.listdir(trash) if trash.is_dir() else [])
    ]
    return problems


def check(store: Store, *, deep: bool = True) -> list[Problem]:
    """Every difference between the index and the directory, and every leftover."""
    root = store.layout.root
    keys = {n for n in os.listdir(root) if is_key(n) and (root / n).is_dir()}
    problems = _check_models(store, keys, deep)
    return problems + _check_top_level(store, keys) + _check_state(store, keys)


def _busy(store: Store, key: str) -> filelock.FileLock | None:
    lock = filelock.FileLock(str(store.layout.kernel_lock(key)), thread_local=False)
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return None
    return lock


def _refetch_model(store: Store, problem: Problem, refetch: list[str]) -> bool:
    lock = _busy(store, problem.target)
    if lock is None:
        return False  # being downloaded: it will be complete when that ends
    try:
        store.retire(problem.target)
        store.index.delete(problem.target)
    finally:
        lock.release()
    if problem.handle:
        refetch.append(problem.handle)
    else:  # nothing says where it came from: it can only go
        with contextlib.suppress(FileNotFoundError):
            store.layout.descriptor(problem.target).unlink()
    return True


def _adopt(store: Store, problem: Problem, _: list[str]) -> bool:
    return store.adopt(problem.target, deep=True) is not None


def _forget_row(store: Store, problem: Problem, _: list[str]) -> bool:
    store.index.delete(problem.target)
    return True


def _remove_tree(store: Store, problem: Problem, _: list[str]) -> bool:
    shutil.rmtree(store.layout.root / problem.target, ignore_errors=True)
    return True


def _remove_file(store: Store, problem: Problem, _: list[str]) -> bool:
    target = store.layout.root / problem.target
    for path in (target, target.with_name(target.name + ".json")):  # a partial's sidecar too
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return True


def _remove_if_empty(store: Store, problem: Problem, _: list[str]) -> bool:
    target = store.layout.root / problem.target
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
        return True
    return False  # a user's files: reported, never deleted


Fix = Callable[[Store, Problem, list[str]], bool]
FIXES: dict[str, Fix] = {
    "incomplete": _refetch_model,
    "changed": _refetch_model,
    "unindexed": _adopt,
    "dangling_row": _forget_row,
    "orphan_staging": _remove_tree,
    "trash": _remove_tree,
    "stale_lock": _remove_file,
    "orphan_descriptor": _remove_file,
    "orphan_partial": _remove_file,
    "unknown": _remove_if_empty,
}


def repair(store: Store, problems: list[Problem]) -> tuple[list[str], list[str]]:
    """Fix what can be fixed here; (what was done, handles to fetch again)."""
    done: list[str] = []
    refetch: list[str] = []
    for problem in problems:
        if FIXES[problem.kind](store, problem, refetch):
            done.append(problem.line())
    free_unused_blobs(store.layout)
    return done, refetch
