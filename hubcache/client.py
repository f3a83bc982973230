"""A small synchronous client for the daemon's Unix socket (stdlib ``http.client`` only).

:class:`DaemonUnavailable` means "no daemon answers here": the socket is missing, refuses, or the
daemon went away mid-request. Callers fall back to the in-process pipeline on it. An error the
daemon *answered* is raised as the same :class:`HubcacheError` subclass and is final.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubcache.errors import DaemonError, HubcacheError

CONNECT_TIMEOUT = 2.0


class DaemonUnavailable(Exception):
    """No daemon answers on the socket."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        sock.settimeout(self.timeout)
        self.sock = sock


class Client:
    def __init__(self, socket_path: Path, timeout: float | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _open(self, method: str, path: str, body: Any = None) -> tuple[_UnixConnection, Any]:
        connection = _UnixConnection(self.socket_path, self.timeout)
        payload = None if body is None else json.dumps(body).encode("utf8")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            connection.request(method, path, body=payload, headers=headers)
            return connection, connection.getresponse()
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as error:
            connection.close()
            raise DaemonUnavailable(f"no daemon at {self.socket_path}: {error}") from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            connection.close()
            raise DaemonUnavailable(f"daemon at {self.socket_path} went away: {error}") from None
        except PermissionError as error:
            connection.close()
            raise DaemonError(f"cannot reach the daemon at {self.socket_path}: {error}") from None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        connection, response = self._open(method, path, body)
        try:
            data = response.read()
        except (ConnectionResetError, http.client.IncompleteRead) as error:
            raise DaemonUnavailable(f"daemon went away mid-answer: {error}") from None
        finally:
            connection.close()
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            raise DaemonError(f"daemon sent a non-JSON answer (HTTP {response.status})") from None
        if response.status >= 400:
            raise HubcacheError.from_payload(decoded, response.status)
        return decoded

    def events(self) -> Iterator[dict[str, Any]]:
        """The NDJSON feed of ``/v1/events``, one dict per line, until the daemon closes it."""
        connection, response = self._open("GET", "/v1/events")
        try:
            for line in response:
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
