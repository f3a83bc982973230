"""The daemon: single flight, concurrency, hostile clients, fallback, crash and stop (issue 3)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import hubcache
from hubcache.errors import HandleError, HTTPStatusError, RequestError
from hubcache.handles import cache_key
from tests.conftest import (
    Daemon,
    Model,
    run_cli,
    stall_halfway,
    start_cli,
    tree_bytes,
    wait_for,
)
from tests.origin import Origin

CLIENT = """
import sys, time, hubcache
started = time.time()
path = hubcache.resolve(sys.argv[1])
print(started, time.time(), path)
"""


def test_32_clients_one_body_one_path_woken_together(
    daemon: Daemon, origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """32 processes resolve one uncached URL: one transfer, one path, all back within 0.5 s."""
    model = models["big"]
    url = origin.put("big", model.tarball, rate=1_000_000)  # ~6 s: every client is waiting
    clients = [
        subprocess.Popen([sys.executable, "-c", CLIENT, url], stdout=subprocess.PIPE, text=True)
        for _ in range(32)
    ]
    lines = [c.communicate(timeout=120)[0].split() for c in clients]
    assert [c.returncode for c in clients] == [0] * 32
    (job,) = [j for j in daemon.client().jobs() if j["key"] == cache_key(url)]
    published = job["finished"]
    assert {line[2] for line in lines} == {str(cache_dir / cache_key(url))}
    assert all(float(line[0]) < published for line in lines), "a client started too late"
    assert max(float(line[1]) for line in lines) - published <= 0.5
    assert origin.bodies_sent("big") == 1
    assert tree_bytes(cache_dir / cache_key(url)) == tree_bytes(model.directory)


def test_three_urls_download_concurrently(
    daemon: Daemon, origin: Origin, models: dict[str, Model]
) -> None:
    """Three handles prefetched together overlap in the origin's log."""
    urls = [origin.put(name, models[name].tarball, rate=200_000) for name in ("alpha", "beta")]
    urls.append(origin.put("big", models["big"].tarball, rate=4_000_000))
    done = run_cli("prefetch", *urls)
    assert done.returncode == 0, done.stderr
    bodies = [s for s in origin.log if s.sent]
    assert len(bodies) == 3, origin.log
    assert max(s.started for s in bodies) < min(s.ended or 0 for s in bodies)


def _connect(daemon: Daemon) -> http.client.HTTPConnection:
    """A plain HTTP connection to the daemon, for requests the client would never send."""
    connection = http.client.HTTPConnection("localhost")
    connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.sock.connect(str(daemon.socket))
    return connection


def _raw(daemon: Daemon, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
    connection = _connect(daemon)
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/resolve", b"{not json", 400, "bad_request"),
        ("POST", "/v1/resolve", b'["a list"]', 400, "bad_request"),
        ("POST", "/v1/resolve", b'{"handle": 42}', 400, "bad_request"),
        ("POST", "/v1/resolve", b'{"handle": "https://x/m", "extra": 1}', 400, "bad_request"),
        ("POST", "/v1/resolve", b"{}", 400, "bad_request"),
        ("POST", "/v1/resolve", b'{"handle": "/etc"}', 400, "invalid_handle"),
        ("POST", "/v1/resolve", b'{"handle": "file:///etc/passwd"}', 400, "invalid_handle"),
        ("POST", "/v1/prefetch", b'{"handles": ["/tmp"]}', 400, "invalid_handle"),
        ("POST", "/v1/prefetch", b'{"handles": []}', 400, "bad_request"),
        ("POST", "/v1/gc", b'{"max_bytes": "lots"}', 400, "bad_request"),
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("GET", "/v1/jobs/nope", None, 404, "not_found"),
        ("DELETE", "/v1/models/not-a-key", None, 400, "bad_request"),
        ("DELETE", "/v1/models/" + "0" * 40, None, 404, "not_cached"),
        ("PUT", "/v1/resolve", b"{}", 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_4xx_in_the_error_shape(
    daemon: Daemon, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    """Malformed, mistyped, unknown or refused requests: a 4xx with a stable code."""
    got, payload = _raw(daemon, method, path, body)
    assert (got, payload["error"]["code"]) == (status, code)
    assert set(payload["error"]) == {"code", "message", "handle"}
    assert daemon.client().health()["status"] == "ok"


def test_a_10_mb_body_is_refused(daemon: Daemon) -> None:
    """Bodies are capped at 1 MiB: 413, and the daemon keeps serving."""
    body = b'{"handle": "' + b"x" * (10 << 20) + b'"}'
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.socket))
    head = f"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode())
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(body)  # the daemon may answer and close before taking it all
    response = http.client.HTTPResponse(sock)
    response.begin()
    payload = json.loads(response.read())
    sock.close()
    assert response.status == 413
    assert payload["error"]["code"] == "payload_too_large"
    assert daemon.client().health()["status"] == "ok"


def test_a_thousand_idle_connections_do_not_starve_service(daemon: Daemon) -> None:
    """1,000 clients that connect and say nothing: a new client is still answered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    idle = []
    try:
        for _ in range(1000):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.socket))
            idle.append(sock)
        idle[0].sendall(b"GET /v1/health HTTP/1.1\r\n")  # a half request, too
        assert daemon.client().health()["status"] == "ok"
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_client_hanging_up_does_not_cancel_the_job(
    daemon: Daemon, origin: Origin, models: dict[str, Model]
) -> None:
    """A resolve whose client goes away keeps downloading for the others: one body in all."""
    url = origin.put("big", models["big"].tarball, rate=3_000_000)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.socket))
    body = json.dumps({"handle": url}).encode()
    sock.sendall(
        b"POST /v1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    wait_for(lambda: origin.bytes_sent("big") > 0, 30, "the download to start")
    sock.close()
    assert hubcache.resolve(url).endswith(cache_key(url))
    assert origin.bodies_sent("big") == 1
    assert daemon.client().health()["status"] == "ok"


def test_errors_from_the_daemon_are_the_same_classes(daemon: Daemon, origin: Origin) -> None:
    """A 404 is raised as HTTPStatusError naming the handle, and not retried in-process."""
    url = origin.url("missing")
    with pytest.raises(HTTPStatusError) as caught:
        hubcache.resolve(url)
    assert caught.value.handle == url and "404" in str(caught.value)
    assert len(origin.served("missing")) == 1
    with pytest.raises(RequestError):
        daemon.client().request("POST", "/v1/resolve", {"handle": 1})
    with pytest.raises(HandleError):
        daemon.client().resolve("/etc")
    done = run_cli("resolve", url)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and url in done.stderr


def test_fallback_in_process_when_the_daemon_is_stopped(
    daemon: Daemon, origin: Origin, models: dict[str, Model]
) -> None:
    """With the daemon gone, `hubcache resolve URL` prints the same path from this process."""
    url = origin.put("alpha", models["alpha"].tarball)
    through_daemon = run_cli("resolve", url)
    assert through_daemon.returncode == 0, through_daemon.stderr
    assert daemon.stop() == 0
    assert not daemon.socket.exists()
    in_process = run_cli("resolve", url)
    assert in_process.returncode == 0, in_process.stderr
    assert in_process.stdout == through_daemon.stdout
    other = origin.put("beta", models["beta"].tarball)
    assert run_cli("resolve", other).returncode == 0  # a download, in-process


def test_sigkill_mid_download_then_restart_resumes_the_job(
    daemon: Daemon, origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """The daemon dies at ~50%; restarted, it resumes the accepted job from the partial file."""
    model = models["big"]
    stalled = stall_halfway(origin, model, cache_dir)
    url = stalled.url
    daemon.client().prefetch([url])
    stalled.wait_half_on_disk()
    daemon.stop(signal.SIGKILL)
    daemon.start()
    wait_for((cache_dir / cache_key(url) / "saved_model.pb").exists, 60, "the resumed job")
    done = run_cli("prefetch", url)
    assert done.returncode == 0, done.stderr
    assert origin.served("big")[-1].range == f"bytes={stalled.half}-"
    assert origin.bytes_sent("big") <= 1.6 * len(model.tarball)
    assert tree_bytes(cache_dir / cache_key(url)) == tree_bytes(model.directory)


def test_sigterm_mid_download_exits_0_keeps_partial_releases_locks(
    daemon: Daemon, origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """SIGTERM while downloading: exit 0 within 10 s, no lock left, the partial file kept."""
    stalled = stall_halfway(origin, models["big"], cache_dir)
    key, part = cache_key(stalled.url), stalled.part
    waiter = start_cli("resolve", stalled.url)
    stalled.wait_half_on_disk()
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 10
    assert part.stat().st_size >= stalled.half
    assert not (cache_dir / f"{key}.lock").exists()
    assert not list(cache_dir.glob(f"{key}.*.tmp"))
    import filelock

    filelock.FileLock(str(cache_dir / ".hubcache" / "locks" / f"{key}.lock")).acquire(timeout=0)
    waiter.kill()
    waiter.wait()


def test_socket_is_0660_and_curl_reads_health(daemon: Daemon, cache_dir: Path) -> None:
    """The socket's mode is 0660 and plain curl can ask for /v1/health."""
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660
    done = subprocess.run(
        ["curl", "-sf", "--unix-socket", str(daemon.socket), "http://hubcache/v1/health"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    health = json.loads(done.stdout)
    assert health["status"] == "ok" and health["cache_dir"] == str(cache_dir)


def test_models_follow_the_directory_within_2s(
    daemon: Daemon, models: dict[str, Model], cache_dir: Path
) -> None:
    """A model another tool renames into place, or a user deletes, shows in /v1/models in 2 s."""
    handle = "https://tfhub.dev/example/published-by-hub/1"
    key = cache_key(handle)
    staging = cache_dir / f"{key}.{os.urandom(8).hex()}.tmp"  # tensorflow_hub's own steps
    subprocess.run(["cp", "-r", str(models["alpha"].directory), str(staging)], check=True)
    (cache_dir / f"{key}.descriptor.txt").write_text(f"Module: {handle}\nDownload Time: now")
    staging.rename(cache_dir / key)
    wait_for(lambda: [m["handle"] for m in daemon.client().models()] == [handle], 2, "adoption")
    subprocess.run(["rm", "-rf", str(cache_dir / key)], check=True)
    wait_for(lambda: daemon.client().models() == [], 2, "deletion to show")


def test_metrics_and_status(daemon: Daemon, origin: Origin, models: dict[str, Model]) -> None:
    """/metrics counts the download, its bytes and the cache; `status --json` sees the daemon."""
    url = origin.put("alpha", models["alpha"].tarball)
    hubcache.resolve(url)
    hubcache.resolve(url)
    body = _metrics(daemon)
    assert 'hubcache_downloads_total{result="success"} 1.0' in body
    assert f"hubcache_fetched_bytes_total {float(len(models['alpha'].tarball))}" in body
    assert 'hubcache_resolve_seconds_count{source="cache"} 1.0' in body
    assert "hubcache_jobs_in_flight 0.0" in body
    wait_for(lambda: "hubcache_cache_entries 1.0" in _metrics(daemon), 5, "the cache gauge")
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["daemon"]["status"] == "ok" and len(status["models"]) == 1


def _metrics(daemon: Daemon) -> str:
    connection = _connect(daemon)
    connection.request("GET", "/metrics")
    return connection.getresponse().read().decode()


def test_cli_commands_go_through_the_daemon(
    daemon: Daemon, origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """ls, pin, unpin, gc and rm act through the daemon's API."""
    a = origin.put("alpha", models["alpha"].tarball)
    b = origin.put("beta", models["beta"].tarball)
    assert run_cli("prefetch", a, b).returncode == 0
    assert run_cli("pin", a).returncode == 0
    pinned = {m["handle"]: m["pinned"] for m in json.loads(run_cli("ls", "--json").stdout)}
    assert pinned == {a: True, b: False}
    gc = run_cli("gc", "--max-size", "0")
    assert gc.returncode == 0 and "evicted 1 model" in gc.stdout
    assert [m["handle"] for m in daemon.client().models()] == [a]
    assert run_cli("unpin", a).returncode == 0
    assert run_cli("rm", a).returncode == 0
    assert daemon.client().models() == []
    assert [p.name for p in cache_dir.iterdir()] == [".hubcache"]
    assert run_cli("gc", "--max-size", "lots").returncode == 2
