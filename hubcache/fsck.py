"""``hubcache verify``: compare the index with the directory, and repair on request.

:func:`check` lists problems; :func:`repair` removes what can only be removed, rebuilds the index
from the directory (descriptors give the handles) and returns the handles to fetch again.
Unknown files and non-empty unknown directories are reported, never deleted: they may be a user's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hubcache.dedup import free_unused_blobs
from hubcache.layout import STATE_DIR, is_key, lock_key, staging_owner
from hubcache.locks import try_kernel_lock
from hubcache.store import Store, file_sha256, handle_from_descriptor, read_text
from hubcache.verify import model_problems


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


def _check_models(store: Store, keys: set[str], deep: bool) -> list[Problem]:
    problems, rows = [], {e.key: e for e in store.index.all()}
    for key in sorted(keys):
        entry = rows.get(key)
        handle = (
            entry.handle
            if entry
            else handle_from_descriptor(read_text(store.layout.descriptor(key)))
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
    left = {name: (kind, detail) for kind, name, detail in store.leftovers()}
    problems = []
    for name in sorted(os.listdir(store.layout.root)):
        key = name.removesuffix(".descriptor.txt")
        if name == STATE_DIR or name in keys:
            continue
        if name in left:
            problems.append(Problem(left[name][0], name, left[name][1]))
        elif key != name and is_key(key):
            if key not in keys:
                problems.append(Problem("orphan_descriptor", name, "descriptor without a model"))
        elif staging_owner(name) is None and lock_key(name) is None:  # else a live download's
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


def _refetch_model(store: Store, problem: Problem, refetch: list[str]) -> bool:
    lock = try_kernel_lock(store.layout.kernel_lock(problem.target))
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
