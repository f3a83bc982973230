"""The ``.part`` file of one download: written by the fetcher, read behind it by the extractor.

The fetcher (event loop thread) writes bytes - appended by one stream, or at their offsets by
parallel range workers - and moves the watermark, the end of the contiguous prefix; the extractor
(a worker thread) reads up to the watermark and waits for more, so extraction overlaps the
download. When
the origin's content changes (new ETag), the fetcher restarts the file: readers of the old
generation get :class:`SourceReset` and start over. A JSON sidecar records what the bytes are
(URL, ETag, Last-Modified, total length, and for parallel downloads each chunk's progress) so a
later process can resume with ``If-Range``, fetching only what is missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubcache.ranges import from_lists, watermark

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class SourceReset(Exception):
    """The bytes being read were replaced by a new download from byte 0."""


class SourceAborted(Exception):
    """The download stopped for good; the fetcher reports why."""


@dataclass(frozen=True, slots=True)
class PartState:
    url: str
    etag: str | None
    last_modified: str | None
    total: int | None
    chunks: list[list[int]] | None = None  # [start, end, done] of a parallel download

    @property
    def validator(self) -> str | None:
        """What ``If-Range`` may carry: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class PartFile:
    def __init__(self, path: Path, state_path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.state_path = state_path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._cond = threading.Condition()
        self._generation = 0
        self._done = False
        self._error: BaseException | str | None = None
        length = os.fstat(self._fd).st_size
        self.state = self._load_state() if length else None
        if self.state is not None and self.state.chunks:
            self._size = watermark(from_lists(self.state.chunks))
        else:
            self._size = length

    @property
    def size(self) -> int:
        """The watermark: bytes ``[0, size)`` are all written and may be read."""
        return self._size

    def _load_state(self) -> PartState | None:
        try:
            return PartState(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    # -- writer side -------------------------------------------------------------------------

    def restart(self, state: PartState) -> None:
        """Drop every byte held and start a new body described by ``state``."""
        with self._cond:
            os.ftruncate(self._fd, 0)
            self._size = 0
            self._generation += 1
            self._cond.notify_all()
        self.record(state)

    def record(self, state: PartState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(self.state_path)
        self.state = state

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` (a parallel range); :meth:`advance` moves the watermark."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def advance(self, mark: int) -> None:
        if mark > self._size:
            with self._cond:
                self._size = mark
                self._cond.notify_all()

    def append(self, data: bytes | memoryview) -> None:
        """Write ``data`` at the watermark (a single stream) and move it."""
        self.write_at(self._size, data)
        self.advance(self._size + len(data))

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def fail(self, error: BaseException | str) -> None:
        """Wake every reader with ``error`` (the download failed or was cancelled)."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def discard(self) -> None:
        """Forget the partial download entirely (its bytes are of no use to anyone)."""
        for path in (self.path, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- reader side -------------------------------------------------------------------------

    def reader(self) -> PartReader:
        with self._cond:
            return PartReader(self, self._generation)

    def _wait(self, generation: int, want: int) -> int:
        """Block until ``want`` bytes exist (or the body is complete); return what exists."""
        with self._cond:
            while True:
                if generation != self._generation:
                    raise SourceReset
                if self._error is not None:
                    raise SourceAborted(str(self._error))
                if self._size >= want or self._done:
                    return self._size
                self._cond.wait()

    def _pread(self, count: int, offset: int) -> bytes:
        return os.pread(self._fd, count, offset)


class PartReader(io.RawIOBase):
    """A sequential, blocking file-like view of a :class:`PartFile`, for ``tarfile``/``gzip``."""

    def __init__(self, part: PartFile, generation: int) -> None:
        super().__init__()
        self._part = part
        self._generation = generation
        self.position = 0

    def peek(self, count: int) -> bytes:
        available = self._part._wait(self._generation, self.position + count)
        return self._part._pread(min(count, available - self.position), self.position)

    def read(self, count: int = -1) -> bytes:
        if count is None or count < 0:
            count = 1 << 30
        available = self._part._wait(self._generation, self.position + 1)
        data = self._part._pread(min(count, available - self.position), self.position)
        self.position += len(data)
        return data

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True
