"""Planning parallel ranged downloads (pure functions over plain data, no I/O).

A body of ``total`` bytes is cut into chunks, taken front first so the contiguous watermark (what
the extractor may read) advances early. A chunk knows how much of it is written (``done``); its
``end`` may shrink when the scheduler re-splits it to let an idle or faster connection take the
rest. The chunk list is what a ``.part`` sidecar persists, so a crash re-fetches only what is
missing.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_CHUNK = 64 << 20


@dataclass(slots=True)
class Chunk:
    start: int
    end: int  # exclusive
    done: int = 0  # bytes written from start

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.position)

    @property
    def complete(self) -> bool:
        return self.position >= self.end

    def as_list(self) -> list[int]:
        return [self.start, self.end, self.done]


def should_parallelise(total: int | None, ranges: bool, connections: int, min_chunk: int) -> bool:
    """Several connections only pay off for a known, rangeable body of two chunks or more."""
    return bool(ranges and total is not None and connections > 1 and total >= 2 * min_chunk)


def chunk_size(total: int, connections: int, min_chunk: int) -> int:
    """About four chunks per connection (slack for stealing), within [min_chunk, 64 MiB]."""
    return max(min_chunk, min(MAX_CHUNK, -(-total // (connections * 4))))


def plan_chunks(total: int, connections: int, min_chunk: int, start: int = 0) -> list[Chunk]:
    """Cover ``[start, total)`` with chunks in order."""
    size = chunk_size(total, connections, min_chunk)
    return [Chunk(offset, min(total, offset + size)) for offset in range(start, total, size)]


def watermark(chunks: Iterable[Chunk]) -> int:
    """The end of the contiguous written prefix: readers may consume up to here."""
    mark = 0
    for chunk in sorted(chunks, key=lambda c: c.start):
        if chunk.start > mark:
            break
        mark = max(mark, chunk.position)
        if not chunk.complete:
            break
        mark = max(mark, chunk.end)
    return mark


def split(chunk: Chunk, min_chunk: int) -> Chunk | None:
    """Give away the back half of ``chunk``'s remaining bytes; None if too small to share."""
    if chunk.remaining < 2 * min_chunk:
        return None
    middle = chunk.position + chunk.remaining // 2
    tail = Chunk(middle, chunk.end)
    chunk.end = middle
    return tail


def laggards(speeds: Sequence[tuple[Chunk, float]], factor: float, min_chunk: int) -> list[Chunk]:
    """Active chunks to take away from their connection: silent ones, and those running below
    ``median / factor`` with enough left to be worth re-splitting.

    ``speeds`` pairs each active chunk with its recent bytes per second.
    """
    if len(speeds) < 3:
        return []
    median = statistics.median(speed for _, speed in speeds)
    if median <= 0:
        return []
    return [
        c
        for c, speed in speeds
        if speed == 0 or (speed < median / factor and c.remaining >= 2 * min_chunk)
    ]


def content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` → (START, TOTAL or None)."""
    try:
        unit, spec = (value or "").strip().split(" ", 1)
        span, total = spec.split("/", 1)
        start = int(span.split("-", 1)[0])
    except ValueError:
        return None
    if unit != "bytes":
        return None
    return start, (None if total == "*" else int(total))


def continuation(
    content_range_header: str | None, etag: str | None, position: int, known_etag: str | None
) -> tuple[int, int | None] | None:
    """The parsed Content-Range when a 206 continues exactly at ``position`` of the same content
    (ETags, when both sides have one, agree); None when it does not."""
    found = content_range(content_range_header)
    if found is None or found[0] != position or (etag and known_etag and etag != known_etag):
        return None
    return found


def from_lists(rows: Iterable[Sequence[int]]) -> list[Chunk]:
    return [Chunk(int(start), int(end), int(done)) for start, end, done in rows]
