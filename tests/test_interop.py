"""tensorflow_hub and hubcache share one cache directory (issue 2, acceptance 2-4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hubcache.handles import cache_key
from tests.conftest import (
    Model,
    hub_load,
    run_cli,
    start_cli,
    start_hub_load,
    tree_bytes,
    wait_for,
    wait_hub_ready,
    write_config,
)
from tests.origin import Origin


def test_prefetch_publishes_what_tensorflow_hub_loads_offline(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """`prefetch URL` writes <sha1(URL)>/ + descriptor; hub.load uses it with the origin down."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    key = cache_key(url)
    assert (cache_dir / key / "saved_model.pb").is_file()
    assert tree_bytes(cache_dir / key) == tree_bytes(model.directory)
    descriptor = (cache_dir / f"{key}.descriptor.txt").read_text()
    lines = descriptor.split("\n")
    assert lines[0] == f"Module: {url}"
    assert lines[1].startswith("Download Time: ")
    assert lines[2].startswith("Downloader Hostname: ") and "(PID:" in lines[2]
    origin.stop()
    assert hub_load(url) == model.expected([1.0, 2.0])


def test_entries_tensorflow_hub_wrote_are_adopted(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """`ls --json` lists hub's entry with its handle; `resolve` returns it without a request."""
    model = models["beta"]
    url = origin.put("beta", model.tarball)
    assert hub_load(url) == model.expected([1.0, 2.0])
    requests_before = len(origin.log)
    listed = run_cli("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [(e["handle"], e["key"]) for e in entries] == [(url, cache_key(url))]
    assert entries[0]["size_bytes"] == sum(len(b) for b in tree_bytes(model.directory).values())
    assert set(entries[0]) == {"handle", "key", "path", "size_bytes", "last_access", "pinned",
                               "fingerprint"}  # fmt: skip
    resolved = run_cli("resolve", url)
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout == f"{cache_dir / cache_key(url)}\n"
    assert len(origin.log) == requests_before


def test_resolve_prints_only_the_absolute_path(origin: Origin, models: dict[str, Model]) -> None:
    """The one line on stdout is the model directory, usable as $(hubcache resolve URL)."""
    url = origin.put("alpha", models["alpha"].tarball)
    first = run_cli("resolve", url)
    second = run_cli("resolve", url)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    path = Path(first.stdout.rstrip("\n"))
    assert first.stdout.count("\n") == 1 and path.is_absolute()
    assert (path / "saved_model.pb").is_file()
    assert origin.bodies_sent("alpha") == 1


def test_load_returns_a_working_model(origin: Origin, models: dict[str, Model]) -> None:
    """hubcache.load(URL) downloads, then tf.saved_model.load gives a model that computes."""
    import tensorflow as tf

    import hubcache

    model = models["alpha"]
    loaded = hubcache.load(origin.put("alpha", model.tarball))
    assert [float(v) for v in loaded(tf.constant([1.0, 2.0])).numpy()] == model.expected([1.0, 2.0])


def test_tensorflow_hub_first_then_hubcache_at_once(
    origin: Origin, models: dict[str, Model], cache_dir: Path, config_file: Path
) -> None:
    """hubcache waits on hub's live lock while its staging grows, then uses hub's model."""
    write_config(config_file, {"lock_stale_seconds": 60})  # hub's staging grows in 10 MB steps
    model = models["big"]
    url = origin.put("big", model.tarball, rate=2_000_000)
    hub = start_hub_load(url)
    wait_for((cache_dir / f"{cache_key(url)}.lock").exists, 120, "hub's lock")
    ours = run_cli("prefetch", url)
    out, err = hub.communicate(timeout=240)
    assert hub.returncode == 0, err[-2000:]
    assert ours.returncode == 0, ours.stderr
    assert json.loads(out.strip().splitlines()[-1]) == model.expected([1.0, 2.0])
    assert origin.bodies_sent("big") == 1
    assert tree_bytes(cache_dir / cache_key(url)) == tree_bytes(model.directory)
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [".hubcache", cache_key(url), f"{cache_key(url)}.descriptor.txt"]
    )


def test_hubcache_first_then_tensorflow_hub_at_once(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """tensorflow_hub waits on hubcache's hub-format lock and loads what hubcache published."""
    model = models["big"]
    url = origin.put("big", model.tarball, rate=100_000)  # slow until hub is ready to wait
    ours = start_cli("prefetch", url)
    wait_for((cache_dir / f"{cache_key(url)}.lock").exists, 30, "our hub-format lock")
    hub = start_hub_load(url)
    wait_hub_ready(hub)
    time.sleep(1)  # hub.load is now waiting on our lock
    assert ours.poll() is None, "the download should still be running"
    origin.artifacts["big"].rate = None
    assert ours.wait(120) == 0, ours.stderr.read() if ours.stderr else ""
    out, err = hub.communicate(timeout=240)
    assert hub.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == model.expected([1.0, 2.0])
    assert origin.bodies_sent("big") == 1
    assert not (cache_dir / f"{cache_key(url)}.lock").exists()
