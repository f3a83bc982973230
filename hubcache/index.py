"""The index: one SQLite row per published model (WAL, safe across processes).

The index is derived data. The directory is the truth: a row is written only after its model
was renamed into place, and an entry without a row (tensorflow_hub wrote it, or the index was
lost) is adopted from its descriptor.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from hubcache.verify import Manifest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    handle TEXT,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT,
    etag TEXT,
    final_url TEXT,
    manifest TEXT,
    hashes TEXT
);
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_COLUMNS = (
    "key, handle, size_bytes, created, last_access, pinned, fingerprint, etag, final_url, manifest,"
    " hashes"
)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    handle: str | None
    size_bytes: int
    created: float
    last_access: float
    pinned: bool = False
    fingerprint: str | None = None
    etag: str | None = None
    final_url: str | None = None
    manifest: Manifest = field(default_factory=dict, compare=False, repr=False)
    hashes: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


def _entry(row: tuple[object, ...]) -> Entry:
    key, handle, size, created, access, pinned, fingerprint, etag, final_url, manifest, hashes = row
    return Entry(
        key=str(key),
        handle=None if handle is None else str(handle),
        size_bytes=int(size),  # type: ignore[call-overload]
        created=float(created),  # type: ignore[arg-type]
        last_access=float(access),  # type: ignore[arg-type]
        pinned=bool(pinned),
        fingerprint=None if fingerprint is None else str(fingerprint),
        etag=None if etag is None else str(etag),
        final_url=None if final_url is None else str(final_url),
        manifest=json.loads(str(manifest)) if manifest else {},
        hashes=json.loads(str(hashes)) if hashes else {},
    )


class Index:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, entry: Entry) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            (
                entry.key, entry.handle, entry.size_bytes, entry.created, entry.last_access,
                int(entry.pinned), entry.fingerprint, entry.etag, entry.final_url,
                json.dumps(entry.manifest) if entry.manifest else None,
                json.dumps(entry.hashes) if entry.hashes else None,
            ),
        )  # fmt: skip

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE key = ?",  # noqa: S608
            (key,),
        ).fetchone()
        return None if row is None else _entry(row)

    def by_origin(self, final_url: str, etag: str) -> list[Entry]:
        """Entries downloaded from this final URL with this ETag (download dedup)."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM entries WHERE final_url = ? AND etag = ?",  # noqa: S608
            (final_url, etag),
        )
        return [_entry(row) for row in rows]

    def has_origins(self) -> bool:
        query = "SELECT 1 FROM entries WHERE etag IS NOT NULL AND final_url IS NOT NULL LIMIT 1"
        return self._db.execute(query).fetchone() is not None

    def all(self) -> list[Entry]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY key")  # noqa: S608
        return [_entry(row) for row in rows]

    def touch(self, key: str, now: float) -> None:
        self._db.execute("UPDATE entries SET last_access = ? WHERE key = ?", (now, key))

    def set_pinned(self, key: str, pinned: bool) -> None:
        self._db.execute("UPDATE entries SET pinned = ? WHERE key = ?", (int(pinned), key))

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM entries WHERE key = ?", (key,))

    # -- jobs the daemon accepted and has not finished (resumed after a restart) -------------

    def add_pending(self, key: str, handle: str, now: float) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO pending (key, handle, created) VALUES (?,?,?)",
            (key, handle, now),
        )

    def remove_pending(self, key: str) -> None:
        self._db.execute("DELETE FROM pending WHERE key = ?", (key,))

    def pending(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT handle FROM pending ORDER BY created")]
