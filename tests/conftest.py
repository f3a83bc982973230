"""Shared fixtures: real SavedModels built with TensorFlow, a real origin, a private cache."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.origin import Origin

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Model:
    """A SavedModel computing ``x * w + b``, and its tarball."""

    name: str
    directory: Path
    tarball: bytes
    w: float
    b: float

    def expected(self, xs: list[float]) -> list[float]:
        return [x * self.w + self.b for x in xs]


def tarball_of(directory: Path, mode: str = "w:gz", extra: dict[str, bytes] | None = None) -> bytes:
    """A tfhub.dev-style tarball: members named ./saved_model.pb, ./variables/...; ``extra``
    files (e.g. a shared asset) are added under their relative names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        tar.add(str(directory), arcname=".")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _build_models(root: Path) -> dict[str, Model]:
    import numpy as np
    import tensorflow as tf

    class Affine(tf.Module):  # type: ignore[misc]
        def __init__(self, w: float, b: float, pad: int, seed: int) -> None:
            super().__init__()
            self.w = tf.Variable(w)
            self.b = tf.Variable(b)
            noise = np.random.default_rng(seed).random(pad // 4, dtype=np.float32)
            self.pad = tf.Variable(noise)  # incompressible bytes to make the tarball sizeable

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])  # type: ignore[untyped-decorator]
        def __call__(self, x: object) -> object:
            return x * self.w + self.b

    specs = {
        "alpha": (2.0, 1.0, 64 << 10),
        "beta": (3.0, -1.0, 64 << 10),
        "big": (5.0, 0.5, 6 << 20),
    }
    models = {}
    for seed, (name, (w, b, pad)) in enumerate(specs.items()):
        directory = root / name
        tf.saved_model.save(Affine(w, b, pad, seed), str(directory))
        models[name] = Model(name, directory, tarball_of(directory), w, b)
    return models


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    """Real SavedModels, built once per session with TensorFlow."""
    return _build_models(tmp_path_factory.mktemp("savedmodels"))


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """Fast retries and a short stale-lock timeout, so fault tests take seconds. One connection:
    the parallel tests opt in with :func:`write_config`."""
    path = tmp_path / "hubcache.toml"
    write_config(path)
    return path


def write_config(
    path: Path, top: dict[str, object] | None = None, extra: str = "", **download: object
) -> None:
    """The test config: top-level keys and ``[download]`` keys overridden, ``extra`` appended."""
    head: dict[str, object] = {"lock_stale_seconds": 2, "lease_seconds": 0, **(top or {})}
    settings: dict[str, object] = {
        "backoff_initial": 0.05, "backoff_max": 0.5, "stall_seconds": 5, "retries": 5,
        "connections": 1, "min_chunk": "512KiB", **download,
    }  # fmt: skip

    def lines(table: dict[str, object]) -> str:
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())

    path.write_text(lines(head) + "[download]\n" + lines(settings) + extra)


@pytest.fixture(autouse=True)
def hub_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache_dir: Path, config_file: Path
) -> dict[str, str]:
    """Point this process and every child at the private cache; never at a proxy or a daemon."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HUBCACHE_CONFIG", str(config_file))
    monkeypatch.setenv("HUBCACHE_NO_DAEMON", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return dict(os.environ)


CLI = [sys.executable, "-m", "hubcache"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


HUB_LOAD = """
import json, sys
import tensorflow as tf
import tensorflow_hub as hub
print("hub-ready", file=sys.stderr, flush=True)
for handle in sys.argv[1:]:
    model = hub.load(handle)
    print(json.dumps([float(v) for v in model(tf.constant([1.0, 2.0])).numpy()]))
"""


def start_hub_load(*handles: str) -> subprocess.Popen[str]:
    """The real tensorflow_hub, in its own process, on the same TFHUB_CACHE_DIR."""
    return subprocess.Popen(
        [sys.executable, "-c", HUB_LOAD, *handles],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_hub_ready(process: subprocess.Popen[str]) -> None:
    """Block until the tensorflow_hub process has imported TensorFlow and calls hub.load."""
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("hub-ready"):
            return
    raise AssertionError("tensorflow_hub process exited before loading")


def hub_load(handle: str) -> list[float]:
    return hub_load_all(handle)[0]


def hub_load_all(*handles: str) -> list[list[float]]:
    """What each model computes for [1, 2], loaded by tensorflow_hub in one process."""
    process = start_hub_load(*handles)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    return [list(json.loads(line)) for line in out.strip().splitlines()[-len(handles) :]]


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class Stalled:
    """A model whose first download stops sending at 50%, and where its bytes land."""

    url: str
    part: Path
    half: int

    def wait_half_on_disk(self) -> None:
        wait_for(
            lambda: self.part.exists() and self.part.stat().st_size >= self.half,
            60,
            "half the tarball on disk",
        )


def stall_halfway(origin: Origin, model: Model, cache_dir: Path) -> Stalled:
    from hubcache.handles import cache_key
    from tests.origin import Fault

    url = origin.put(model.name, model.tarball)
    origin.inject(model.name, Fault(stall_at=0.5))
    part = cache_dir / ".hubcache" / "partial" / f"{cache_key(url)}.part"
    return Stalled(url, part, len(model.tarball) // 2)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its content, for byte-exact comparisons."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def cache_leftovers(cache: Path) -> list[str]:
    """Top-level names in the cache other than hubcache's private state."""
    return (
        sorted(p.name for p in cache.iterdir() if p.name != ".hubcache") if cache.exists() else []
    )


@dataclass
class Daemon:
    """A real `hubcache daemon` process on a private socket."""

    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> Daemon:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*CLI, "daemon", *extra], stdout=log, stderr=log)
        wait_for(self.answers, 30, "the daemon to answer")
        return self

    def answers(self) -> bool:
        from hubcache.client import Client, DaemonUnavailable

        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daemon exited: {self.log.read_text()[-3000:]}")
        try:
            Client(self.socket).health()
        except (DaemonUnavailable, OSError):
            return False
        return True

    def client(self) -> Any:
        from hubcache.client import Client

        return Client(self.socket)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout)


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Daemon]:
    """A started daemon; clients in this test (and their children) use it."""
    runtime = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))  # AF_UNIX paths are short
    monkeypatch.setenv("HUBCACHE_SOCKET", str(runtime / "hubcache.sock"))
    monkeypatch.delenv("HUBCACHE_NO_DAEMON")
    server = Daemon(runtime / "hubcache.sock", tmp_path / "daemon.log")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait(10)
    shutil.rmtree(runtime, ignore_errors=True)
