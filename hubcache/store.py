"""The cache directory: look up, publish, adopt, list and remove models (no network).

Crash-safe order everywhere: stage, verify, rename into place, then write the index row;
to remove, rename out to ``trash/`` first, then drop the row and the descriptor, delete last.
A crash therefore leaves orphans (swept later), never a half model under ``<key>/``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hubcache.config import Settings
from hubcache.dedup import free_unused_blobs, intern_files
from hubcache.errors import NotAModelError
from hubcache.fingerprint import fingerprint, fingerprint_pb
from hubcache.handles import cache_key
from hubcache.index import Entry, Index
from hubcache.layout import Layout, is_key, lock_key, staging_owner
from hubcache.locks import LockOwner
from hubcache.verify import model_problems, shape_problems, take_manifest


def read_text(path: Path) -> str:
    """A small text file's content; empty when it cannot be read."""
    try:
        return path.read_text(encoding="utf8", errors="replace")
    except OSError:
        return ""


def file_sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def descriptor_text(handle: str) -> str:
    """tensorflow_hub's descriptor, byte for byte in its format."""
    return "Module: %s\nDownload Time: %s\nDownloader Hostname: %s (PID:%d)" % (  # noqa: UP031
        handle,
        str(datetime.datetime.today()),
        socket.gethostname(),
        os.getpid(),
    )


def handle_from_descriptor(text: str) -> str | None:
    first = text.split("\n", 1)[0]
    if not first.startswith("Module: "):
        return None
    return first[len("Module: ") :].strip() or None


@dataclass(frozen=True, slots=True)
class Resolved:
    handle: str
    key: str
    path: str
    size_bytes: int
    fingerprint: str | None
    source: Literal["cache", "download"]
    fetched_bytes: int = 0  # received from the network for this answer

    @classmethod
    def of(
        cls,
        handle: str,
        entry: Entry,
        path: Path,
        source: Literal["cache", "download"],
        fetched_bytes: int = 0,
    ) -> Resolved:
        size, fingerprint = entry.size_bytes, entry.fingerprint
        return cls(handle, entry.key, str(path), size, fingerprint, source, fetched_bytes)

    def row(self) -> dict[str, object]:
        """The answer of ``POST /v1/resolve`` and of ``prefetch --json``."""
        return {
            "handle": self.handle,
            "key": self.key,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint,
            "source": self.source,
        }


def entry_row(entry: Entry, layout: Layout) -> dict[str, object]:
    """One entry as ``hubcache ls --json`` and ``GET /v1/models`` show it."""
    return {
        "handle": entry.handle,
        "key": entry.key,
        "path": str(layout.model(entry.key)),
        "size_bytes": entry.size_bytes,
        "last_access": entry.last_access,
        "pinned": entry.pinned,
        "fingerprint": entry.fingerprint,
    }


class Store:
    def __init__(self, settings: Settings) -> None:
        self.layout = Layout(settings.cache_dir)
        self.layout.create()
        self.index = Index(self.layout.index)

    def close(self) -> None:
        self.index.close()

    # -- reading -----------------------------------------------------------------------------

    def lookup(self, handle: str) -> Entry | None:
        """The complete cached model of ``handle`` (its access time updated), else None."""
        entry = self.check(cache_key(handle))
        if entry is not None:
            self.index.touch(entry.key, time.time())
        return entry

    def check(self, key: str) -> Entry | None:
        """The entry for ``key`` if its directory holds a complete model, adopting it if new."""
        path = self.layout.model(key)
        if not path.is_dir():
            return None
        entry = self.index.get(key)
        if entry is None:
            return self.adopt(key)
        return None if model_problems(path, entry.manifest) else entry

    def adopt(self, key: str, *, deep: bool = False) -> Entry | None:
        """Index a model some other tool (tensorflow_hub) put in place; None if it is broken.
        ``deep`` also hashes every file (slow for big models: `verify --repair` does it)."""
        path = self.layout.model(key)
        if model_problems(path):
            return None
        manifest = take_manifest(path)
        hashes = {relative: file_sha256(path / relative) for relative in manifest} if deep else {}
        model_print = fingerprint(path, hashes) if deep else fingerprint_pb(path)
        descriptor = self.layout.descriptor(key)
        try:
            handle = handle_from_descriptor(descriptor.read_text(encoding="utf8"))
            created = descriptor.stat().st_mtime
        except OSError:
            handle, created = None, path.stat().st_mtime
        if handle is not None and cache_key(handle) != key:
            handle = None  # a descriptor that does not belong to this directory
        return self._record(
            key,
            handle=handle,
            manifest=manifest,
            hashes=hashes,
            model_print=model_print,
            created=created,
        )

    def _record(
        self,
        key: str,
        *,
        handle: str | None,
        manifest: dict[str, int],
        hashes: dict[str, str],
        model_print: str | None,
        created: float,
        etag: str | None = None,
        final_url: str | None = None,
    ) -> Entry:
        """Write the index row of a model that is in place."""
        entry = Entry(
            key=key,
            handle=handle,
            size_bytes=sum(manifest.values()),
            created=created,
            last_access=created,
            fingerprint=model_print,
            etag=etag,
            final_url=final_url,
            manifest=manifest,
            hashes=hashes,
        )
        self.index.put(entry)
        return entry

    def entries(self) -> list[Entry]:
        """Every published model, adopting unknown ones and forgetting rows whose model is gone."""
        keys = {
            name
            for name in os.listdir(self.layout.root)
            if is_key(name) and (self.layout.root / name).is_dir()
        }
        listed = []
        for entry in self.index.all():
            if entry.key in keys:
                listed.append(entry)
                keys.discard(entry.key)
            else:
                self.index.delete(entry.key)
        listed += [adopted for key in sorted(keys) if (adopted := self.adopt(key)) is not None]
        return sorted(listed, key=lambda e: e.key)

    def leftovers(self) -> list[tuple[str, str, str]]:
        """(kind, name, detail) of what dead downloads left at the top level: ``stale_lock``, a
        tensorflow_hub lock of a dead process on this host; ``orphan_staging``, staging that no
        live lock owns. The daemon's start-up sweep removes them; ``verify`` reports them."""
        found = []
        root = self.layout.root
        for name in sorted(os.listdir(root)):
            staging = staging_owner(name)
            if staging is not None and (root / name).is_dir():
                owner = LockOwner.parse(read_text(self.layout.hub_lock(staging[0])))
                if owner is None or owner.uid != staging[1] or owner.is_dead_here():
                    found.append(("orphan_staging", name, "staging left by a dead download"))
            elif lock_key(name) is not None:
                owner = LockOwner.parse(read_text(root / name))
                if owner is not None and owner.is_dead_here():
                    found.append(("stale_lock", name, f"lock of dead process {owner.pid}"))
        return found

    def sweep(self) -> list[str]:
        """Remove what dead owners left behind: hub locks, staging directories, trash."""
        removed = []
        for kind, name, _detail in self.leftovers():
            path = self.layout.root / name
            if kind == "orphan_staging":
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(name)
        for child in sorted(os.listdir(self.layout.trash)):
            shutil.rmtree(self.layout.trash / child, ignore_errors=True)
            removed.append(f"{self.layout.trash.name}/{child}")
        return removed

    # -- writing (the caller holds the key's locks) -------------------------------------------

    def write_descriptor(self, key: str, handle: str) -> None:
        path = self.layout.descriptor(key)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(descriptor_text(handle), encoding="utf8")
        tmp.replace(path)

    def publish(
        self,
        key: str,
        handle: str,
        staging: Path,
        hashes: dict[str, str],
        *,
        etag: str | None = None,
        final_url: str | None = None,
    ) -> Entry:
        """Move a verified staging directory to ``<key>/`` and index it; large files become
        hard links into the blob store, so identical content is stored once."""
        problems = shape_problems(staging)
        if problems:
            raise NotAModelError(problems[0], handle)
        manifest = take_manifest(staging)
        model_print = fingerprint(staging, hashes)
        intern_files(self.layout, staging, hashes, manifest)
        self.write_descriptor(key, handle)
        target = self.layout.model(key)
        if target.exists():
            self.retire(key)  # a broken or empty leftover: never publish on top of it
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Someone (tensorflow_hub) published meanwhile; theirs wins if it is complete.
            shutil.rmtree(staging, ignore_errors=True)
            adopted = self.check(key)
            if adopted is None:
                raise
            return adopted
        return self._record(
            key,
            handle=handle,
            manifest=manifest,
            hashes=hashes,
            model_print=model_print,
            created=time.time(),
            etag=etag,
            final_url=final_url,
        )

    def retire(self, key: str) -> bool:
        """Rename ``<key>/`` out of sight into trash, then delete it. False if there was none."""
        slot = self.layout.trash_slot(key, uuid.uuid4().hex)
        try:
            os.rename(self.layout.model(key), slot)
        except FileNotFoundError:
            return False
        shutil.rmtree(slot, ignore_errors=True)
        return True

    def remove(self, key: str) -> bool:
        """Delete a model, its row and its descriptor. False if nothing was cached."""
        removed = self.retire(key)
        self.index.delete(key)
        with contextlib.suppress(FileNotFoundError):
            self.layout.descriptor(key).unlink()
        if removed:
            free_unused_blobs(self.layout)
        return removed
