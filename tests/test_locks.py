"""Many downloaders, one body; stale locks taken over (acceptance 4, 5)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hubcache.handles import cache_key
from tests.conftest import Model, cache_leftovers, run_cli, start_cli, tree_bytes
from tests.origin import Origin


def test_eight_prefetch_processes_one_body(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """Eight `hubcache prefetch URL` at once: all exit 0, the origin sends the body once."""
    model = models["big"]
    url = origin.put("big", model.tarball, rate=4_000_000)
    processes = [start_cli("prefetch", url) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 8, [err for _out, err in outputs]
    assert {out for out, _err in outputs} == {f"{url}\t{cache_dir / cache_key(url)}\n"}
    assert origin.bodies_sent("big") == 1
    assert tree_bytes(cache_dir / cache_key(url)) == tree_bytes(model.directory)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_dead_owners_hub_lock_is_taken_over_at_once(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A hub lock of a dead process on this host is stale at once (< 5 s); its staging is swept."""
    url = origin.put("alpha", models["alpha"].tarball)
    key = cache_key(url)
    cache_dir.mkdir(parents=True)
    uid = uuid.uuid4().hex
    (cache_dir / f"{key}.lock").write_text(f"{socket.gethostname()}.{_dead_pid()}.{uid}")
    (cache_dir / f"{key}.{uid}.tmp" / "variables").mkdir(parents=True)
    started = time.monotonic()
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 5
    assert sorted(cache_leftovers(cache_dir)) == [key, f"{key}.descriptor.txt"]


def test_live_lock_without_progress_is_taken_over_after_stale_seconds(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A live owner whose staging does not grow loses the lock after lock_stale_seconds (2 s)."""
    url = origin.put("alpha", models["alpha"].tarball)
    key = cache_key(url)
    cache_dir.mkdir(parents=True)
    lock = cache_dir / f"{key}.lock"
    lock.write_text(f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}")  # alive: us
    started = time.monotonic()
    done = run_cli("prefetch", url)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert 2 <= elapsed < 10
    assert not lock.exists()


def test_live_lock_with_progress_is_waited_for(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """While the foreign owner's staging grows, we wait; when it publishes, we use its model."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    key = cache_key(url)
    uid = uuid.uuid4().hex
    cache_dir.mkdir(parents=True)
    lock = cache_dir / f"{key}.lock"
    lock.write_text(f"{socket.gethostname()}.{os.getpid()}.{uid}")
    staging = cache_dir / f"{key}.{uid}.tmp"
    staging.mkdir()
    waiter = start_cli("prefetch", url)
    for i in range(8):  # 4 s of progress: twice lock_stale_seconds
        (staging / f"chunk{i}").write_bytes(b"x" * 1000)
        time.sleep(0.5)
        assert waiter.poll() is None
    (staging / "saved_model.pb").write_bytes((model.directory / "saved_model.pb").read_bytes())
    staging.rename(cache_dir / key)
    lock.unlink()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert origin.bodies_sent("alpha") == 0
    assert out == f"{url}\t{cache_dir / key}\n"
