"""Parallel ranged downloads: the mechanics, byte-exact in every case (issue 4, acceptance 2)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import hubcache
from hubcache.handles import cache_key
from hubcache.ranges import from_lists
from tests.conftest import Model, run_cli, start_cli, tree_bytes, wait_for, write_config
from tests.origin import Fault, Origin


def _overlapping(origin: Origin, name: str) -> int:
    """The most requests of ``name`` that were in flight at one moment."""
    spans = [(s.started, s.ended or float("inf")) for s in origin.served(name)]
    return max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)


def test_several_ranges_in_flight_at_once(
    origin: Origin, models: dict[str, Model], config_file: Path
) -> None:
    """With ranges offered, four connections fetch chunks concurrently; the model is exact."""
    write_config(config_file, connections=4)
    model = models["big"]
    url = origin.put("big", model.tarball, rate=2_000_000)
    path = Path(hubcache.resolve(url))
    assert tree_bytes(path) == tree_bytes(model.directory)
    served = origin.served("big")
    assert served[0].status == 200 and all(s.status == 206 for s in served[1:])
    assert all(s.if_range == origin.artifacts["big"].etag for s in served[1:])
    assert _overlapping(origin, "big") >= 3
    assert origin.bytes_sent("big") <= 1.5 * len(model.tarball)


def test_origin_without_ranges_gets_one_stream(
    origin: Origin, models: dict[str, Model], config_file: Path
) -> None:
    """No Accept-Ranges: one request, the whole body, the same model."""
    write_config(config_file, connections=8)
    model = models["big"]
    url = origin.put("big", model.tarball, ranges=False)
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(model.directory)
    assert [(s.status, s.range) for s in origin.served("big")] == [(200, None)]


def test_a_stalled_chunk_is_refetched(
    origin: Origin, models: dict[str, Model], config_file: Path
) -> None:
    """One connection goes silent mid-chunk while the others stream: its range is taken away
    and fetched again. stall_seconds is 60 here, so only the below-median rule can act in time.
    """
    write_config(config_file, connections=4, stall_seconds=60)
    model = models["big"]
    url = origin.put("big", model.tarball, rate=300_000)
    origin.inject("big", Fault(), Fault(stall_after=100_000))
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(model.directory)
    served = origin.served("big")
    stalled = served[1]
    assert stalled.sent == 100_000 and stalled.range is not None
    first = int(stalled.range.split("=")[1].split("-")[0])
    resumed = [
        s for s in served[2:] if s.range and int(s.range[6:].split("-")[0]) == first + 100_000
    ]
    assert resumed, "no request picked up where the stalled one stopped"
    assert resumed[0].started - stalled.started < 30  # long before the 60 s stall timeout


def test_content_change_mid_parallel_restarts_cleanly(
    origin: Origin, models: dict[str, Model], config_file: Path
) -> None:
    """The body changes while chunks are in flight: If-Range gets 200s, and all restarts."""
    write_config(config_file, connections=4)
    old, new = models["big"], models["alpha"]
    url = origin.put("m", old.tarball, rate=3_000_000)
    origin.inject("m", Fault(swap=new.tarball))
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(new.directory)
    assert any(s.status == 200 and s.range for s in origin.served("m"))


def test_a_crash_refetches_only_missing_chunks(
    origin: Origin, models: dict[str, Model], config_file: Path, cache_dir: Path
) -> None:
    """SIGKILL mid-download: the next run asks only for ranges not recorded as written."""
    write_config(config_file, connections=4)
    model = models["big"]
    url = origin.put("big", model.tarball, rate=500_000)
    sidecar = cache_dir / ".hubcache" / "partial" / f"{cache_key(url)}.part.json"

    def chunks_written() -> int:
        try:
            rows = json.loads(sidecar.read_text())["chunks"] or []
        except (OSError, ValueError, KeyError):
            return 0
        return sum(c.done for c in from_lists(rows))

    victim = start_cli("prefetch", url)
    wait_for(lambda: chunks_written() >= len(model.tarball) // 3, 60, "a third recorded")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    recorded = from_lists(json.loads(sidecar.read_text())["chunks"])
    first_run = len(origin.log)
    origin.artifacts["big"].rate = None
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    second = origin.log[first_run:]
    assert all(s.status == 206 for s in second)
    for served in second:
        start = int((served.range or "")[6:].split("-")[0])
        assert not any(c.start <= start < c.position for c in recorded), served.range
    missing = sum(c.remaining for c in recorded)
    assert sum(s.sent for s in second) <= missing + 4 * 512 * 1024  # + what the last second wrote
    assert tree_bytes(cache_dir / cache_key(url)) == tree_bytes(model.directory)
