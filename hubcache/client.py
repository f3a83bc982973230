"""A small synchronous client for the daemon's Unix socket.

Requests are one HTTP/1.1 exchange written by hand: the daemon is ours and always answers with a
``Content-Length``, and skipping ``http.client`` (and the ``email`` package it imports) takes ~40 ms
off every ``hubcache resolve``. Only the streaming ``/v1/events`` feed uses ``http.client``.

:class:`DaemonUnavailable` means "no daemon answers here": the socket is missing, refuses, or the
daemon went away mid-request. Callers fall back to the in-process pipeline on it. An error the
daemon *answered* is raised as the same :class:`HubcacheError` subclass and is final.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubcache.errors import DaemonError, HubcacheError

CONNECT_TIMEOUT = 2.0


class DaemonUnavailable(Exception):
    """No daemon answers on the socket."""


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as error:
        sock.close()
        raise DaemonUnavailable(f"no daemon at {path}: {error}") from None
    except PermissionError as error:
        sock.close()
        raise DaemonError(f"cannot reach the daemon at {path}: {error}") from None
    except OSError:
        sock.close()
        raise
    sock.settimeout(timeout)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one answer that carries a Content-Length."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise DaemonUnavailable("daemon closed the connection before answering")
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(
        (int(line.split(":", 1)[1]) for line in lines[1:]
         if line.lower().startswith("content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        data = sock.recv(max(65536, length - len(body)))
        if not data:
            raise DaemonUnavailable("daemon went away mid-answer")
        body += data
    return status, body[:length]


class Client:
    def __init__(self, socket_path: Path, timeout: float | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode("utf8")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: hubcache\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock = _connect(self.socket_path, self.timeout)
        try:
            sock.sendall(head.encode("latin-1") + payload)
            status, data = _read_answer(sock)
        except (ConnectionResetError, BrokenPipeError) as error:
            raise DaemonUnavailable(f"daemon at {self.socket_path} went away: {error}") from None
        finally:
            sock.close()
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            raise DaemonError(f"daemon sent a non-JSON answer (HTTP {status})") from None
        if status >= 400:
            raise HubcacheError.from_payload(decoded, status)
        return decoded

    def events(self) -> Iterator[dict[str, Any]]:
        """The NDJSON feed of ``/v1/events``, one dict per line, until the daemon closes it."""
        import http.client  # noqa: PLC0415 - chunked streaming; only progress bars need it

        connection = http.client.HTTPConnection("hubcache")
        connection.sock = _connect(self.socket_path, self.timeout)
        try:
            connection.request("GET", "/v1/events")
            for line in connection.getresponse():
                if line.strip():
                    yield json.loads(line)
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    # -- the API, one method a route ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/health"))

    def resolve(self, handle: str) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/resolve", {"handle": handle}))

    def prefetch(self, handles: list[str]) -> list[dict[str, Any]]:
        return list(self.request("POST", "/v1/prefetch", {"handles": handles})["jobs"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/jobs/{job_id}"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/jobs")["jobs"])

    def models(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/models"))

    def remove(self, key: str) -> None:
        self.request("DELETE", f"/v1/models/{key}")

    def pin(self, key: str, pinned: bool) -> None:
        self.request("POST", f"/v1/models/{key}/{'pin' if pinned else 'unpin'}")

    def gc(self, max_bytes: int | None = None) -> dict[str, Any]:
        return dict(
            self.request("POST", "/v1/gc", {} if max_bytes is None else {"max_bytes": max_bytes})
        )
