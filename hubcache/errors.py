"""The one exception tree of hubcache.

Every error carries a stable ``code`` (sent by the daemon, re-raised by the client as the same
class) and, where there is one, the ``handle`` it concerns. ``str(error)`` is one line that names
the handle and the cause::

    HubcacheError
    ├── ConfigError            config_invalid
    ├── HandleError            invalid_handle
    ├── FetchError             fetch_failed      network trouble that outlived the retries
    │   ├── HTTPStatusError    http_status       the origin answered with an error status
    │   └── IntegrityError     integrity         length or ETag did not match
    ├── ArchiveError           bad_archive       not a model archive, corrupt or truncated
    │   ├── UnsafeArchiveError unsafe_archive    a member that could escape or is not a plain file
    │   └── ArchiveLimitError  archive_limit     unpacked size, ratio or member count over limits
    ├── NotAModelError         not_a_model       extracted fine, but no SavedModel inside
    ├── CacheError             cache_error       the cache directory itself
    │   ├── CacheFullError     cache_full        no space left
    │   ├── LockTimeoutError   lock_timeout      another downloader held the model too long
    │   └── NotCachedError     not_cached        asked to act on an entry that is not there
    ├── RequestError           bad_request       the daemon refused a malformed request
    │   └── RouteNotFoundError not_found         no such API route
    └── DaemonError            daemon_error      the daemon failed or is stopping
"""

from __future__ import annotations

from typing import Any, ClassVar


class HubcacheError(Exception):
    """Root of every error hubcache raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, handle: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.handle = handle

    def __str__(self) -> str:
        line = f"{self.handle}: {self.message}" if self.handle else self.message
        return " ".join(line.split())  # always one line

    def to_payload(self) -> dict[str, Any]:
        """The daemon's error body: ``{"code", "message", "handle"}``."""
        return {"code": self.code, "message": self.message, "handle": self.handle}

    @staticmethod
    def from_payload(payload: Any, status: int = 500) -> HubcacheError:
        """The client side of :meth:`to_payload`: the same class, message and handle."""
        body = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(body, dict):
            return DaemonError(f"daemon answered HTTP {status} without an error body")
        code, message = str(body.get("code", "")), str(body.get("message", "daemon error"))
        handle = body.get("handle") if isinstance(body.get("handle"), str) else None
        cls = error_class(code)
        if cls is HubcacheError:
            cls = RequestError if 400 <= status < 500 else DaemonError
        return cls(message, handle)

    def with_handle(self, handle: str) -> HubcacheError:
        """Return this error naming ``handle`` (set once, where the handle is known)."""
        if self.handle is None:
            self.handle = handle
        return self


class ConfigError(HubcacheError):
    code = "config_invalid"


class HandleError(HubcacheError):
    code = "invalid_handle"


class FetchError(HubcacheError):
    code = "fetch_failed"


class HTTPStatusError(FetchError):
    code = "http_status"

    def __init__(self, message: str, handle: str | None = None, status: int = 0) -> None:
        super().__init__(message, handle)
        self.status = status


class IntegrityError(FetchError):
    code = "integrity"


class ArchiveError(HubcacheError):
    code = "bad_archive"


class UnsafeArchiveError(ArchiveError):
    code = "unsafe_archive"


class ArchiveLimitError(ArchiveError):
    code = "archive_limit"


class NotAModelError(HubcacheError):
    code = "not_a_model"


class CacheError(HubcacheError):
    code = "cache_error"


class CacheFullError(CacheError):
    code = "cache_full"


class LockTimeoutError(CacheError):
    code = "lock_timeout"


class NotCachedError(CacheError):
    code = "not_cached"


class RequestError(HubcacheError):
    code = "bad_request"


class RouteNotFoundError(RequestError):
    code = "not_found"


class DaemonError(HubcacheError):
    code = "daemon_error"


def _all_subclasses(cls: type[HubcacheError]) -> list[type[HubcacheError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def error_class(code: str) -> type[HubcacheError]:
    """The class that owns ``code``; the root class for codes this version does not know."""
    for cls in _all_subclasses(HubcacheError):
        if cls.code == code:
            return cls
    return HubcacheError
