"""From raw tarball bytes to a decompressed stream: format sniffing and the gzip-bomb guard.

The format is sniffed by magic number (gzip, bzip2, xz, or a plain ustar tar), never trusted
from headers. gzip goes through ISA-L (``isal``) when installed, the stdlib otherwise. The
returned stream aborts as soon as unpacked bytes exceed ``max_ratio`` times the compressed bytes
read so far, so a bomb is stopped after a bounded amount of work, not after filling the disk.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import lzma
from collections.abc import Callable
from typing import Any, Protocol, cast

from hubcache.config import Limits
from hubcache.errors import ArchiveError, ArchiveLimitError

_GzipOpener = Callable[..., Any]
try:
    from isal import igzip

    _gzip_open: _GzipOpener = igzip.IGzipFile
except ImportError:  # pragma: no cover - isal is a declared dependency; stdlib is the fallback
    _gzip_open = gzip.GzipFile

# Below this many compressed bytes the ratio is not judged: tar headers alone compress ~100x.
RATIO_FLOOR_BYTES = 1 << 20


class RawStream(Protocol):
    position: int

    def read(self, count: int = -1, /) -> bytes: ...

    def peek(self, count: int, /) -> bytes: ...


class Readable(Protocol):
    def read(self, count: int = -1, /) -> bytes: ...


class Compression(enum.Enum):
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    NONE = "tar"


def sniff(head: bytes) -> Compression | None:
    """The container format of a tarball from its first 512 bytes, or None if not one."""
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    if head[257:262] == b"ustar":
        return Compression.NONE
    return None


def describe_unknown(head: bytes) -> str:
    """Why ``head`` is not a model archive, in words a user can act on."""
    if not head:
        return "not a model archive: the origin sent an empty body"
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return "not a model archive: the origin sent an HTML page"
    return "not a model archive: unrecognised format (not tar, gzip, bzip2 or xz)"


class GuardedStream:
    """Decompressed bytes that stop when the unpacked/compressed ratio passes ``max_ratio``."""

    def __init__(self, inner: Readable, raw: RawStream, max_ratio: float) -> None:
        self._inner = inner
        self._raw = raw
        self._max_ratio = max_ratio
        self.unpacked = 0

    def read(self, count: int = -1) -> bytes:
        data = self._inner.read(count)
        self.unpacked += len(data)
        compressed = max(self._raw.position, RATIO_FLOOR_BYTES)
        if self.unpacked > self._max_ratio * compressed:
            raise ArchiveLimitError(
                f"archive unpacks to over {self._max_ratio:g}x its compressed size "
                f"({self.unpacked} bytes from {self._raw.position}): refusing a likely gzip bomb"
            )
        return data


def open_decompressed(raw: RawStream, limits: Limits) -> GuardedStream:
    """Sniff ``raw`` and return its decompressed, bomb-guarded stream."""
    head = raw.peek(512)
    kind = sniff(head)
    inner: Readable
    if kind is None:
        raise ArchiveError(describe_unknown(head))
    if kind is Compression.GZIP:
        inner = cast(Readable, _gzip_open(fileobj=raw, mode="rb"))
    elif kind is Compression.BZIP2:
        inner = bz2.BZ2File(cast(Any, raw), mode="rb")
    elif kind is Compression.XZ:
        inner = lzma.LZMAFile(cast(Any, raw), mode="rb")  # noqa: SIM115 - likewise
    else:
        inner = raw
    return GuardedStream(inner, raw, limits.max_ratio)
