"""Broken servers and killed processes: resume, retry, restart, clear errors (acceptance 6-9)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import hubcache
from hubcache.errors import FetchError, HTTPStatusError
from hubcache.handles import cache_key
from tests.conftest import (
    Model,
    cache_leftovers,
    run_cli,
    stall_halfway,
    start_cli,
    tree_bytes,
)
from tests.origin import Fault, Origin


def test_connection_dropped_halfway_resumes(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A cut at 50% resumes with Range + If-Range; at most 1.1x the tarball crosses the wire."""
    model = models["big"]
    url = origin.put("big", model.tarball)
    origin.inject("big", Fault(drop_at=0.5))
    path = hubcache.resolve(url)
    served = origin.served("big")
    assert [s.status for s in served] == [200, 206]
    assert served[1].range == f"bytes={served[0].sent}-"
    assert served[1].if_range == origin.artifacts["big"].etag
    assert origin.bytes_sent("big") <= 1.1 * len(model.tarball)
    assert tree_bytes(Path(path)) == tree_bytes(model.directory)


def test_503_three_times_then_200_succeeds(origin: Origin, models: dict[str, Model]) -> None:
    """Transient 503s (with Retry-After) are retried with backoff until the body comes."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    origin.inject("alpha", Fault(status=503, retry_after="0"), Fault(status=503), Fault(status=503))
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    assert [s.status for s in origin.served("alpha")] == [503, 503, 503, 200]
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(model.directory)


def test_etag_change_between_attempts_restarts_cleanly(
    origin: Origin, models: dict[str, Model]
) -> None:
    """The content changed under a resume: If-Range gets the new body, and the new model loads."""
    import tensorflow as tf

    old, new = models["alpha"], models["beta"]
    url = origin.put("m", old.tarball)
    origin.inject("m", Fault(drop_at=0.5, swap=new.tarball))
    loaded = hubcache.load(url)
    assert [float(v) for v in loaded(tf.constant([1.0, 2.0]))] == new.expected([1.0, 2.0])
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(new.directory)
    served = origin.served("m")
    assert [s.status for s in served] == [200, 200]
    assert served[1].range is not None  # it asked to resume, and was told the content changed


def test_404_names_the_handle_and_status(origin: Origin, cache_dir: Path) -> None:
    """A missing model fails at once: exit 1, one line, the handle and the status."""
    url = origin.url("nope")
    done = run_cli("prefetch", url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert url in done.stderr and "HTTP 404" in done.stderr
    assert cache_leftovers(cache_dir) == []
    with pytest.raises(HTTPStatusError) as caught:
        hubcache.resolve(url)
    assert caught.value.status == 404 and caught.value.handle == url


def test_html_answer_is_not_a_model_archive(origin: Origin, cache_dir: Path) -> None:
    """A 200 with an HTML page (a login wall, a model page) is refused by content, not trusted."""
    url = origin.put("page", b"<!DOCTYPE html><html><body>Sign in</body></html>" * 50,
                     content_type="text/html")  # fmt: skip
    done = run_cli("prefetch", url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert url in done.stderr and "not a model archive" in done.stderr
    assert cache_leftovers(cache_dir) == []
    assert not list((cache_dir / ".hubcache" / "partial").iterdir())


def test_retries_give_up_with_the_cause(origin: Origin, models: dict[str, Model]) -> None:
    """A server that keeps failing ends in a FetchError naming the handle and the last status."""
    url = origin.put("alpha", models["alpha"].tarball)
    origin.inject("alpha", *[Fault(status=502) for _ in range(10)])
    with pytest.raises(FetchError) as caught:
        hubcache.resolve(url)
    assert url in str(caught.value) and "502" in str(caught.value)
    assert len(origin.served("alpha")) == 6  # first try + retries = 5 from the test config


def test_sigkill_halfway_then_next_prefetch_resumes(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A prefetch killed at ~50% leaves a .part file; the next one resumes it (<= 1.6x in all)."""
    model = models["big"]
    stalled = stall_halfway(origin, model, cache_dir)
    url, part, half = stalled.url, stalled.part, stalled.half
    key = cache_key(url)
    victim = start_cli("prefetch", url)
    stalled.wait_half_on_disk()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert not (cache_dir / key).exists()
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    served = origin.served("big")
    assert served[-1].status == 206 and served[-1].range == f"bytes={half}-"
    assert origin.bytes_sent("big") <= 1.6 * len(model.tarball)
    assert tree_bytes(cache_dir / key) == tree_bytes(model.directory)
    assert sorted(cache_leftovers(cache_dir)) == [key, f"{key}.descriptor.txt"]
    assert not part.exists()


def test_skeleton_entry_is_refetched(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A temp cleaner deleted the files but left the directories: resolve downloads again."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    path = Path(hubcache.resolve(url))
    for parent, _dirs, files in os.walk(path):
        for name in files:
            os.unlink(os.path.join(parent, name))
    assert hubcache.resolve(url) == str(path)
    assert origin.bodies_sent("alpha") == 2
    assert tree_bytes(path) == tree_bytes(model.directory)


def test_one_deleted_variables_file_is_refetched(origin: Origin, models: dict[str, Model]) -> None:
    """Any file missing from the manifest (here the weights) makes the entry incomplete."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    path = Path(hubcache.resolve(url))
    shard = next((path / "variables").glob("variables.data-*"))
    shard.unlink()
    assert run_cli("resolve", url).returncode == 0
    assert origin.bodies_sent("alpha") == 2
    assert tree_bytes(path) == tree_bytes(model.directory)
