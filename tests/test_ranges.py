"""Range planning for parallel downloads (pure functions)."""

from __future__ import annotations

import itertools

from hubcache.ranges import (
    Chunk,
    chunk_size,
    content_range,
    laggards,
    plan_chunks,
    should_parallelise,
    split,
    watermark,
)

MIB = 1 << 20


def test_chunks_cover_the_body_exactly_in_order() -> None:
    """No gap, no overlap, front first, about four chunks a connection within the bounds."""
    for total in (2 * MIB, 10 * MIB + 7, 800 * MIB, 5 * 2**30):
        chunks = plan_chunks(total, 8, MIB)
        assert chunks[0].start == 0 and chunks[-1].end == total
        assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
        assert all(MIB <= c.end - c.start <= 64 * MIB for c in chunks[:-1])
    assert chunk_size(800 * MIB, 8, MIB) == 25 * MIB


def test_one_stream_for_small_or_unrangeable_bodies() -> None:
    """Parallel only pays for a known, rangeable body of at least two chunks."""
    assert should_parallelise(8 * MIB, True, 8, 4 * MIB)
    assert not should_parallelise(8 * MIB - 1, True, 8, 4 * MIB)
    assert not should_parallelise(100 * MIB, False, 8, 4 * MIB)
    assert not should_parallelise(None, True, 8, 4 * MIB)
    assert not should_parallelise(100 * MIB, True, 1, 4 * MIB)


def test_watermark_is_the_contiguous_written_prefix() -> None:
    """The extractor may read only up to the first byte not yet written."""
    chunks = [Chunk(0, 10, 10), Chunk(10, 20, 4), Chunk(20, 30, 10)]
    assert watermark(chunks) == 14
    chunks[1].done = 10
    assert watermark(chunks) == 30
    assert watermark([Chunk(10, 20, 10)]) == 0


def test_split_gives_away_the_back_half_of_what_is_left() -> None:
    """Stealing halves the remaining bytes; tiny remainders are not worth a connection."""
    chunk = Chunk(0, 100, 20)
    tail = split(chunk, 10)
    assert (chunk.end, tail) == (60, Chunk(60, 100))
    assert split(Chunk(0, 100, 85), 10) is None


def test_laggards_are_silent_or_far_below_the_median() -> None:
    """A silent connection or one under median/4 with enough left is taken away."""
    fast = [Chunk(i * 100, i * 100 + 100) for i in range(3)]
    slow, silent, short = Chunk(400, 500), Chunk(500, 600), Chunk(600, 610)
    speeds = [(c, 100.0) for c in fast] + [(slow, 10.0), (silent, 0.0), (short, 1.0)]
    assert laggards(speeds, 4, 10) == [slow, silent]
    assert laggards(speeds[:2], 4, 10) == []


def test_content_range_parsing() -> None:
    """Content-Range values as origins and proxies send them."""
    assert content_range("bytes 100-199/1000") == (100, 1000)
    assert content_range("bytes 0-9/*") == (0, None)
    assert content_range("items 0-9/10") is None
    assert content_range(None) is None
