"""import / export, and tensorflow_hub going through hubcache (DESIGN §7, §9)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from hubcache.handles import cache_key
from tests.conftest import Model, cache_leftovers, run_cli, tree_bytes
from tests.origin import Origin


def test_export_then_import_on_another_cache_round_trips(
    origin: Origin, models: dict[str, Model], tmp_path: Path
) -> None:
    """export writes a tfhub-style tarball of plain members; import publishes it offline."""
    model = models["big"]
    url = origin.put("big", model.tarball)
    out = tmp_path / "model.tar.gz"
    done = run_cli("export", url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    assert all(m.isfile() or m.isdir() for m in members)
    assert {m.name for m in members if m.isfile()} >= {"./saved_model.pb"}
    origin.stop()
    other = tmp_path / "other-cache"
    imported = run_cli("import", str(out), "--handle", url, "--cache-dir", str(other))
    assert imported.returncode == 0, imported.stderr
    assert tree_bytes(other / cache_key(url)) == tree_bytes(model.directory)
    listed = json.loads(run_cli("ls", "--json", "--cache-dir", str(other)).stdout)
    assert [e["handle"] for e in listed] == [url]
    again = run_cli("import", str(out), "--handle", url, "--cache-dir", str(other))
    assert again.returncode == 0 and "already cached" in again.stdout


def test_import_refuses_hostile_tarballs_and_bad_handles(tmp_path: Path, cache_dir: Path) -> None:
    """The import path applies the same safety plan: one line, nothing published."""
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 0
        tar.addfile(info)
    handle = "https://tfhub.dev/evil/model/1"
    done = run_cli("import", str(evil), "--handle", handle)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert handle in done.stderr and "escapes" in done.stderr
    assert cache_leftovers(cache_dir) == []
    assert run_cli("import", str(evil), "--handle", "/not/a/url").returncode == 1
    assert run_cli("import", str(tmp_path / "missing.tgz"), "--handle", handle).returncode == 1


HUB_THROUGH_HUBCACHE = """
import sys, tensorflow as tf, tensorflow_hub as hub, hubcache
hubcache.install()
model = hub.load(sys.argv[1])
layer = hubcache.KerasLayer(sys.argv[1])
got = [float(v) for v in model(tf.constant([1.0, 2.0]))]
print(got, [float(v) for v in layer(tf.constant([3.0]))])
"""


def test_install_routes_tensorflow_hub_through_hubcache(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """After hubcache.install(), hub.load downloads with hubcache (an indexed entry with its
    ETag, which tensorflow_hub never records), and hubcache.KerasLayer works on the result."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    done = subprocess.run([sys.executable, "-c", HUB_THROUGH_HUBCACHE, url],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    values = done.stdout.strip().splitlines()[-1]
    assert values == f"{model.expected([1.0, 2.0])} {model.expected([3.0])}"
    from hubcache.config import load_settings
    from hubcache.store import Store

    store = Store(load_settings())
    try:
        entry = store.index.get(cache_key(url))
    finally:
        store.close()
    assert entry is not None and entry.etag == origin.artifacts["alpha"].etag
    assert origin.bodies_sent("alpha") == 1
