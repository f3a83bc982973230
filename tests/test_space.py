"""Space: dedup, eviction with pins and leases, verify --repair (issue 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hubcache
from hubcache.handles import cache_key
from tests.conftest import (
    Model,
    cache_leftovers,
    hub_load_all,
    run_cli,
    tarball_of,
    tree_bytes,
)
from tests.origin import Origin


def du(path: Path) -> int:
    """Apparent bytes on disk, hard links counted once (as `du -sb`)."""
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])  # fmt: skip


def test_same_tarball_under_two_urls_is_stored_once(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """The second copy costs < 5% more disk; both load with tensorflow_hub; fingerprints match."""
    model = models["big"]
    first = origin.put("one", model.tarball)
    second = origin.put("two", model.tarball)
    assert run_cli("prefetch", first).returncode == 0
    before = du(cache_dir)
    assert run_cli("prefetch", second).returncode == 0
    assert du(cache_dir) - before < 0.05 * before
    assert origin.bodies_sent("one") == origin.bodies_sent("two") == 1  # two final URLs
    listed = {e["handle"]: e for e in json.loads(run_cli("ls", "--json").stdout)}
    prints = {listed[first]["fingerprint"], listed[second]["fingerprint"]}
    assert len(prints) == 1 and prints.pop().startswith("tf:")  # from fingerprint.pb
    assert hub_load_all(first, second) == [model.expected([1.0, 2.0])] * 2


def test_models_sharing_a_large_asset_store_it_once(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """Different models with one identical large file: one blob, one inode, both intact."""
    asset = os.urandom(1 << 20)
    a = origin.put("a", tarball_of(models["alpha"].directory, extra={"assets/vocab.bin": asset}))
    b = origin.put("b", tarball_of(models["beta"].directory, extra={"assets/vocab.bin": asset}))
    paths = [Path(p) for p in hubcache.prefetch([a, b])]
    inodes = {os.stat(p / "assets" / "vocab.bin").st_ino for p in paths}
    assert len(inodes) == 1
    blob = next(iter(inodes))
    blobs = list((cache_dir / ".hubcache" / "blobs" / "sha256").iterdir())
    assert sum(1 for p in blobs if p.stat().st_ino == blob) == 1
    assert [(p / "assets" / "vocab.bin").read_bytes() == asset for p in paths] == [True, True]
    assert tree_bytes(paths[0] / "variables") == tree_bytes(models["alpha"].directory / "variables")
    assert tree_bytes(paths[1] / "variables") == tree_bytes(models["beta"].directory / "variables")


def test_a_handle_ending_at_a_known_origin_is_linked_not_downloaded(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A second handle whose redirects end at the same final URL and ETag downloads nothing."""
    model = models["big"]
    tfhub = origin.put("big", model.tarball)
    kaggle = origin.alias("big")
    first, second = (Path(hubcache.resolve(h)) for h in (tfhub, kaggle))
    assert first != second and origin.bodies_sent("big") == 1
    assert tree_bytes(second) == tree_bytes(model.directory)
    shard = next((first / "variables").glob("variables.data-*")).name
    assert (first / "variables" / shard).stat().st_ino == (
        second / "variables" / shard
    ).stat().st_ino


def _distinct(models: dict[str, Model], count: int) -> list[bytes]:
    """``count`` different tarballs of about the same size (alpha plus a unique asset)."""
    return [
        tarball_of(models["alpha"].directory, extra={"assets/own.bin": os.urandom(200_000)})
        for _ in range(count)
    ]


def test_gc_keeps_the_pinned_and_the_most_recent(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """Four models, room for two and a half: pinned + most recently resolved stay; nothing is
    left of the others (no descriptor, staging, trash or blob)."""
    urls = [origin.put(f"m{i}", body) for i, body in enumerate(_distinct(models, 4))]
    for url in urls:
        assert run_cli("prefetch", url).returncode == 0
        time.sleep(0.05)  # distinct access times
    assert run_cli("pin", urls[0]).returncode == 0
    assert run_cli("resolve", urls[2]).returncode == 0
    sizes = {e["handle"]: e["size_bytes"] for e in json.loads(run_cli("ls", "--json").stdout)}
    budget = int(2.5 * max(sizes.values()))
    done = run_cli("gc", "--max-size", str(budget))
    assert done.returncode == 0 and "evicted 2 model" in done.stdout
    kept = [urls[0], urls[2]]
    assert sorted(e["handle"] for e in json.loads(run_cli("ls", "--json").stdout)) == sorted(kept)
    expected = sorted(
        [cache_key(u) for u in kept] + [f"{cache_key(u)}.descriptor.txt" for u in kept]
    )
    assert cache_leftovers(cache_dir) == expected
    assert not list((cache_dir / ".hubcache" / "trash").iterdir())
    blobs = list((cache_dir / ".hubcache" / "blobs" / "sha256").iterdir())
    assert all(p.stat().st_nlink >= 2 for p in blobs)  # no blob outlives its models
    assert len(blobs) == 3  # the shared weights + the two kept models' own assets


LOADER = """
import sys, hubcache, tensorflow as tf
for round in range(int(sys.argv[1])):
    for handle, w, b in zip(sys.argv[2::3], sys.argv[3::3], sys.argv[4::3]):
        got = [float(v) for v in hubcache.load(handle)(tf.constant([1.0, 2.0]))]
        assert got == [float(w) + float(b), 2 * float(w) + float(b)], (handle, got)
print("ok")
"""


def test_loads_never_fail_while_gc_empties_the_cache(
    origin: Origin, models: dict[str, Model]
) -> None:
    """Two processes load four models in a loop while `gc --max-size 0` runs again and again
    (lease_seconds = 0): not one load fails."""
    four = [models["alpha"], models["beta"], models["alpha"], models["beta"]]
    specs = [(origin.put(f"m{i}", model.tarball), model) for i, model in enumerate(four)]
    args = [str(a) for url, m in specs for a in (url, m.w, m.b)]
    loaders = [
        subprocess.Popen(
            [sys.executable, "-c", LOADER, "6", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    evictions = 0
    while any(loader.poll() is None for loader in loaders):
        done = run_cli("gc", "--max-size", "0")
        assert done.returncode == 0, done.stderr
        evictions += int(done.stdout.split()[1])
    for loader in loaders:
        out, err = loader.communicate()
        assert loader.returncode == 0 and out.strip() == "ok", err[-3000:]
    assert evictions > 0, "gc never evicted anything: the test proved nothing"


def test_verify_finds_and_repairs_a_deleted_file(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """verify exits 1 naming the entry; --repair re-fetches it; verify is then clean."""
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    path = Path(hubcache.resolve(url))
    (path / "variables" / "variables.index").unlink()
    found = run_cli("verify")
    assert found.returncode == 1
    assert cache_key(url) in found.stdout and url in found.stdout
    repaired = run_cli("verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert tree_bytes(path) == tree_bytes(model.directory)
    clean = run_cli("verify", "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["problems"] == []


def test_verify_repairs_leftovers_and_a_lost_index(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """Orphan staging, dead locks, trash, changed content and a deleted index are all found,
    and --repair leaves a consistent cache whose index is rebuilt from the descriptors."""
    a = origin.put("alpha", models["alpha"].tarball)
    b = origin.put("beta", models["beta"].tarball)
    paths = [Path(p) for p in hubcache.prefetch([a, b])]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    key = cache_key(a)
    (cache_dir / f"{key}.lock").write_text(f"{os.uname().nodename}.{dead}.feed")
    (cache_dir / f"{key}.feed.tmp" / "variables").mkdir(parents=True)
    (cache_dir / ".hubcache" / "trash" / "old").mkdir()
    saved = paths[1] / "saved_model.pb"
    data = bytearray(saved.read_bytes())
    data[-1] ^= 0xFF
    saved.write_bytes(bytes(data))  # same size, different content
    for index in (cache_dir / ".hubcache").glob("index.sqlite*"):
        index.unlink()
    report = json.loads(run_cli("verify", "--json").stdout)
    kinds = sorted(p["kind"] for p in report["problems"])
    assert kinds == ["orphan_staging", "stale_lock", "trash", "unindexed", "unindexed"]
    repaired = run_cli("verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout
    assert sorted(e["handle"] for e in json.loads(run_cli("ls", "--json").stdout)) == sorted([a, b])
    assert cache_leftovers(cache_dir) == sorted(
        [cache_key(a), cache_key(b), f"{cache_key(a)}.descriptor.txt",
         f"{cache_key(b)}.descriptor.txt"]
    )  # fmt: skip
    # The rebuilt index hashed what it adopted (the disk is the truth at that moment), so
    # content that changes afterwards is caught:
    data[-1] ^= 0xFF
    saved.write_bytes(bytes(data))
    found = json.loads(run_cli("verify", "--json").stdout)["problems"]
    assert [(p["kind"], p["target"]) for p in found] == [("changed", cache_key(b))]


def test_changed_content_is_refetched(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """A file whose bytes changed (same size) no longer matches its sha256: repair re-fetches."""
    model = models["beta"]
    url = origin.put("beta", model.tarball)
    path = Path(hubcache.resolve(url))
    saved = path / "saved_model.pb"
    data = bytearray(saved.read_bytes())
    data[10] ^= 0xFF
    saved.write_bytes(bytes(data))
    found = json.loads(run_cli("verify", "--json").stdout)["problems"]
    assert [(p["kind"], p["target"]) for p in found] == [("changed", cache_key(url))]
    assert run_cli("verify", "--repair").returncode == 0
    assert tree_bytes(path) == tree_bytes(model.directory)
    assert origin.bodies_sent("beta") == 2


IN_TMPFS = """
import json, os, subprocess, sys
steps = json.loads(sys.argv[1])
out = {}
for name, (mount, size, handles) in steps.items():
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount], check=True)
    env = dict(os.environ, TFHUB_CACHE_DIR=mount)
    runs = []
    for handle in handles:
        done = subprocess.run([sys.executable, "-m", "hubcache", "prefetch", handle], env=env,
                              capture_output=True, text=True)
        runs.append([done.returncode, done.stderr])
    listed = subprocess.run([sys.executable, "-m", "hubcache", "ls", "--json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    out[name] = {
        "runs": runs,
        "top": sorted(os.listdir(mount)),
        "partial": sorted(os.listdir(os.path.join(mount, ".hubcache", "partial"))),
        "models": [m["handle"] for m in json.loads(listed)],
    }
print(json.dumps(out))
"""


def test_a_model_larger_than_the_disk_fails_cleanly_in_a_small_tmpfs(
    origin: Origin, models: dict[str, Model], tmp_path: Path
) -> None:
    """On a 10 MiB tmpfs a 6 MB tarball (12 MB with its unpacked model) fails at once with
    "not enough space" and the sizes, leaves nothing, and a small model still downloads. On a
    16 MiB tmpfs the least recently used model is evicted to make room instead."""
    big = origin.put("big", models["big"].tarball)
    other = origin.put("other", tarball_of(models["big"].directory, extra={"x": b"other"}))
    small = origin.put("alpha", models["alpha"].tarball)
    mounts = {name: tmp_path / name for name in ("tiny", "roomy")}
    for mount in mounts.values():
        mount.mkdir()
    steps = {
        "tiny": [str(mounts["tiny"]), "10m", [big, small]],
        "roomy": [str(mounts["roomy"]), "16m", [big, other]],
    }
    isolate = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        isolate.append("--map-root-user")
    done = subprocess.run(
        [*isolate, sys.executable, "-c", IN_TMPFS, json.dumps(steps)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    tiny, roomy = result["tiny"], result["roomy"]
    (code, error), (small_code, _) = tiny["runs"]
    assert code == 1 and error.count("\n") == 1
    assert big in error and "not enough space" in error and "bytes needed" in error
    assert small_code == 0 and tiny["models"] == [small]
    assert tiny["top"] == sorted(
        [".hubcache", cache_key(small), f"{cache_key(small)}.descriptor.txt"]
    )
    assert tiny["partial"] == []
    assert [run[0] for run in roomy["runs"]] == [0, 0]
    assert roomy["models"] == [other]  # `big` was evicted to make room


def test_verify_repairs_a_model_deleted_behind_the_index(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """`rm -rf <key>/` by hand leaves an index row and a descriptor: both found, both removed."""
    url = origin.put("alpha", models["alpha"].tarball)
    key = cache_key(url)
    subprocess.run(["rm", "-rf", str(Path(hubcache.resolve(url)))], check=True)
    found = json.loads(run_cli("verify", "--json").stdout)["problems"]
    assert sorted((p["kind"], p["target"]) for p in found) == [
        ("dangling_row", key), ("orphan_descriptor", f"{key}.descriptor.txt")]  # fmt: skip
    assert run_cli("verify", "--repair").returncode == 0
    assert cache_leftovers(cache_dir) == []
