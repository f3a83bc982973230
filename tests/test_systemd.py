"""systemd integration: unit files, socket activation, readiness notification (issue 3, #6)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubcache.client import Client
from hubcache.handles import cache_key
from tests.conftest import ROOT, Model, run_cli, wait_for
from tests.origin import Origin


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))  # AF_UNIX paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unit_files_verify_clean() -> None:
    """`systemd-analyze verify` accepts the service and socket units without a word."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "systemd/hubcache.service", "systemd/hubcache.socket"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""


def test_socket_activation_serves_on_the_inherited_socket(
    short_dir: Path,
    origin: Origin,
    models: dict[str, Model],
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under systemd-socket-activate the daemon answers on the socket it was handed."""
    sock = short_dir / "activated.sock"
    keep = ["TFHUB_CACHE_DIR", "HUBCACHE_CONFIG", "XDG_CONFIG_HOME", "PYTHONPATH", "PATH"]
    activator = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(sock), *[f"-E{name}" for name in keep],
         sys.executable, "-m", "hubcache", "daemon", "--socket", str(short_dir / "unused.sock")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(sock.exists, 10, "the activation socket")
        monkeypatch.setenv("HUBCACHE_SOCKET", str(sock))
        monkeypatch.delenv("HUBCACHE_NO_DAEMON")
        url = origin.put("alpha", models["alpha"].tarball)
        done = run_cli("resolve", url)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(cache_dir / cache_key(url))
        assert Client(sock).health()["cache_dir"] == str(cache_dir)
        assert not (short_dir / "unused.sock").exists()  # it never bound a socket of its own
    finally:
        activator.send_signal(signal.SIGTERM)
        output = activator.communicate(timeout=15)[0]
    assert activator.returncode == 0, output


def test_ready_and_stopping_are_sent_to_notify_socket(short_dir: Path) -> None:
    """With NOTIFY_SOCKET set the daemon says READY=1 when serving and STOPPING=1 on SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(short_dir / "notify.sock"))
    listener.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(short_dir / "notify.sock"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "hubcache", "daemon", "--socket", str(short_dir / "d.sock")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = listener.recv(4096).decode()
        assert "READY=1" in ready.split("\n")
        assert f"MAINPID={daemon.pid}" in ready
        assert Client(short_dir / "d.sock").health()["status"] == "ok"
        daemon.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in listener.recv(4096).decode().split("\n")
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()
