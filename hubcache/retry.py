"""Retry planning: which answers are worth retrying and how long to wait (pure, no sleeping)."""

from __future__ import annotations

import email.utils
import random
import time

from hubcache.errors import HTTPStatusError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 600.0


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 520 <= status <= 599


def status_failure(
    status: int, reason: str | None, url: object, retry_after: str | None
) -> tuple[str, float | None] | None:
    """None for a success status; (message, Retry-After seconds) for one worth retrying; raises
    :class:`HTTPStatusError` for a final one."""
    if status < 400:
        return None
    message = f"HTTP {status} {reason or ''} from {url}".strip()
    if is_retryable_status(status):
        return message, parse_retry_after(retry_after)
    raise HTTPStatusError(message, status=status)


def compute_backoff(
    attempt: int,
    initial: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    Exponential with jitter in [50%, 100%] of ``initial * 2**(attempt-1)``, capped at ``maximum``;
    a server's ``Retry-After`` wins when it asks for longer (up to ten minutes).
    """
    ceiling = min(maximum, initial * 2.0 ** max(attempt - 1, 0))
    jitter = rng.random() if rng is not None else random.random()  # noqa: S311 - not crypto
    delay = ceiling * (0.5 + 0.5 * jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
