"""From raw tarball bytes to a decompressed stream: format sniffing and the gzip-bomb guard.

The format is sniffed by magic number (gzip, bzip2, xz, or a plain ustar tar), never trusted
from headers. gzip is inflated by ISA-L (``isal``) when installed, the stdlib otherwise, in a
thread of its own: inflate releases the GIL, so it keeps one core busy while the tar parser and
file writes run on the other (inflate is the floor of a cold fetch). The returned stream aborts
as soon as unpacked bytes exceed ``max_ratio`` times the compressed bytes read so far, so a bomb
is stopped after a bounded amount of work, not after filling the disk.
"""

from __future__ import annotations

import bz2
import enum
import lzma
import queue
import threading
import zlib
from collections.abc import Callable
from typing import Any, Protocol, cast

from hubcache.config import Limits
from hubcache.errors import ArchiveError, ArchiveLimitError

_Inflater = Callable[[], Any]
try:
    from isal import isal_zlib

    _inflater: _Inflater = lambda: isal_zlib.decompressobj(31)  # noqa: E731
except ImportError:  # pragma: no cover - isal is a declared dependency; stdlib is the fallback
    _inflater = lambda: zlib.decompressobj(31)  # noqa: E731

BLOCK = 1 << 20
QUEUE_BLOCKS = 8  # at most 8 MiB inflated ahead of the tar reader

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

    def close(self) -> None:
        closer = getattr(self._inner, "close", None)
        if closer is not None:
            closer()


class InflateThread:
    """gzip members (one or many, concatenated) inflated by a producer thread into a queue.

    Exceptions of the producer (truncation, bad data, the source restarting or aborting) are
    raised to the reader in order. :meth:`close` stops the producer.
    """

    def __init__(self, raw: RawStream, inflater: _Inflater) -> None:
        self._raw = raw
        self._inflater = inflater
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(QUEUE_BLOCKS)
        self._stopped = threading.Event()
        self._block = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(target=self._produce, name="hubcache-inflate", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            inflater, inside = self._inflater(), False
            while data := self._raw.read(BLOCK):
                inside = True
                while True:  # at most BLOCK out per call: a bomb never allocates more
                    out = inflater.decompress(data, BLOCK)
                    if out and not self._put(out):
                        return
                    if inflater.eof:  # member done; the next one may start in the same block
                        data = inflater.unused_data
                        inflater, inside = self._inflater(), bool(data)
                        if not data:
                            break
                        continue
                    data = inflater.unconsumed_tail
                    if not data and len(out) < BLOCK:
                        break
            if inside:
                raise EOFError("the compressed stream ends early")
            self._put(b"")
        except BaseException as error:  # noqa: BLE001 - handed to the reader thread
            self._put(error)

    def read(self, count: int = -1) -> bytes:
        while not self._block:
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            self._block = memoryview(item)
        size = len(self._block) if count is None or count < 0 else count
        data, self._block = self._block[:size], self._block[size:]
        whole = data.obj if isinstance(data.obj, bytes) and len(data) == len(data.obj) else None
        return whole if whole is not None else bytes(data)  # a whole block goes out uncopied

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)


class FileStream:
    """A local tarball as a :class:`RawStream` (``hubcache import``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.position = 0

    def read(self, count: int = -1) -> bytes:
        data: bytes = self._stream.read(count)
        self.position += len(data)
        return data

    def peek(self, count: int) -> bytes:
        here = self._stream.tell()
        data: bytes = self._stream.read(count)
        self._stream.seek(here)
        return data


def open_decompressed(raw: RawStream, limits: Limits) -> GuardedStream:
    """Sniff ``raw`` and return its decompressed, bomb-guarded stream."""
    head = raw.peek(512)
    kind = sniff(head)
    inner: Readable
    if kind is None:
        raise ArchiveError(describe_unknown(head))
    if kind is Compression.GZIP:
        inner = InflateThread(raw, _inflater)
    elif kind is Compression.BZIP2:
        inner = bz2.BZ2File(cast(Any, raw), mode="rb")
    elif kind is Compression.XZ:
        inner = lzma.LZMAFile(cast(Any, raw), mode="rb")  # noqa: SIM115 - likewise
    else:
        inner = raw
    return GuardedStream(inner, raw, limits.max_ratio)
