"""File-level dedup: a large file is stored once, under ``.hubcache/blobs/sha256/<hex>``.

Before a model is published, each of its files of ``BLOB_MIN_BYTES`` or more is either linked
into the blob store (first copy) or replaced by a hard link to the blob already there (later
copies: no extra space). Blob and model file share one read-only inode, so tensorflow_hub still
sees an ordinary directory. A blob whose link count falls to 1 belongs to no model and is freed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hubcache.layout import Layout

BLOB_MIN_BYTES = 64 << 10
READ_ONLY = 0o444


@dataclass(frozen=True, slots=True)
class Interned:
    files: int  # files now backed by a blob
    saved_bytes: int  # bytes that an existing blob made free


def intern_files(
    layout: Layout, staging: Path, hashes: Mapping[str, str], sizes: Mapping[str, int]
) -> Interned:
    """Back every large file of ``staging`` by a blob; reuse blobs that already exist."""
    files = saved = 0
    for relative, digest in hashes.items():
        if sizes.get(relative, 0) < BLOB_MIN_BYTES:
            continue
        target = staging / relative
        blob = layout.blob(digest)
        if _link_existing(blob, target):
            saved += sizes[relative]
        else:
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(target, READ_ONLY)
            try:
                os.link(target, blob)
            except FileExistsError:  # another model interned the same content meanwhile
                if _link_existing(blob, target):
                    saved += sizes[relative]
        files += 1
    return Interned(files, saved)


def _link_existing(blob: Path, target: Path) -> bool:
    """Replace ``target`` by a hard link to ``blob``; False when there is no such blob."""
    try:
        if os.path.samefile(blob, target):
            return True  # already linked (a model linked from another one)
    except FileNotFoundError:
        return False
    temporary = target.with_name(f".{target.name}.blob")
    os.link(blob, temporary)
    os.replace(temporary, target)
    return True


def link_tree(source: Path, target: Path) -> None:
    """Recreate ``source`` (a published model) in the empty directory ``target``: large files as
    hard links to the same read-only blobs, small ones copied (they stay private and writable)."""
    for parent, dirs, files in os.walk(source):
        relative = Path(parent).relative_to(source)
        for name in dirs:
            (target / relative / name).mkdir()
        for name in files:
            origin, copy = Path(parent, name), target / relative / name
            if os.lstat(origin).st_size >= BLOB_MIN_BYTES:
                os.link(origin, copy)
            else:
                shutil.copyfile(origin, copy)


def free_unused_blobs(layout: Layout) -> int:
    """Delete blobs no model links to any more; the bytes freed."""
    freed = 0
    root = layout.blobs
    if not root.is_dir():
        return 0
    for entry in os.scandir(root):
        with contextlib.suppress(FileNotFoundError):
            stat = entry.stat(follow_symlinks=False)
            if stat.st_nlink <= 1:
                os.unlink(entry.path)
                freed += stat.st_size
    return freed
