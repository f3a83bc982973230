"""Where everything lives in a cache directory (pure path arithmetic, no I/O).

The top level is tensorflow_hub's layout; hubcache's own state hides under ``.hubcache/``::

    <root>/<key>/                 published model
    <root>/<key>.descriptor.txt   who downloaded it, in tensorflow_hub's format
    <root>/<key>.lock             tensorflow_hub's lock: "<host>.<pid>.<uid>"
    <root>/<key>.<uid>.tmp/       staging, same uid as the lock
    <root>/.hubcache/index.sqlite, partial/, locks/, blobs/, trash/
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

KEY_PATTERN = re.compile(r"^[0-9a-f]{40}$")
STAGING_PATTERN = re.compile(r"^([0-9a-f]{40})\.([^.]+)\.tmp$")
STATE_DIR = ".hubcache"


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def index(self) -> Path:
        return self.state / "index.sqlite"

    @property
    def trash(self) -> Path:
        return self.state / "trash"

    def model(self, key: str) -> Path:
        return self.root / key

    def descriptor(self, key: str) -> Path:
        return self.root / f"{key}.descriptor.txt"

    def hub_lock(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def staging(self, key: str, uid: str) -> Path:
        return self.root / f"{key}.{uid}.tmp"

    def kernel_lock(self, key: str) -> Path:
        return self.state / "locks" / f"{key}.lock"

    def partial(self, key: str) -> Path:
        return self.state / "partial" / f"{key}.part"

    def partial_state(self, key: str) -> Path:
        return self.state / "partial" / f"{key}.part.json"

    @property
    def blobs(self) -> Path:
        return self.state / "blobs" / "sha256"

    def blob(self, digest: str) -> Path:
        return self.blobs / digest

    def lease(self, key: str) -> Path:
        return self.state / "leases" / f"{key}.lease"

    def trash_slot(self, key: str, uid: str) -> Path:
        return self.trash / f"{key}.{uid}"

    def create(self) -> None:
        for directory in (self.root, self.state / "locks", self.state / "partial", self.trash):
            directory.mkdir(parents=True, exist_ok=True)


def is_key(name: str) -> bool:
    return bool(KEY_PATTERN.match(name))


def staging_owner(name: str) -> tuple[str, str] | None:
    """(key, uid) of a ``<key>.<uid>.tmp`` staging name, else None."""
    match = STAGING_PATTERN.match(name)
    return (match.group(1), match.group(2)) if match else None


def lock_key(name: str) -> str | None:
    """The key of a tensorflow_hub lock name ``<key>.lock``, else None."""
    key = name.removesuffix(".lock")
    return key if key != name and is_key(key) else None
