"""Retry planning: backoff with jitter, Retry-After honoured (pure functions)."""

from __future__ import annotations

import random

from hubcache.retry import compute_backoff, is_retryable_status, parse_retry_after


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    """Attempt n waits between 50% and 100% of initial*2^(n-1), never above the cap."""
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= compute_backoff(attempt, 0.5, 30.0, rng=rng) <= ceiling


def test_retry_after_wins_when_longer() -> None:
    """A server asking for more time gets it (capped at ten minutes)."""
    assert compute_backoff(1, 0.5, 30.0, retry_after=7) == 7
    assert compute_backoff(1, 0.5, 30.0, retry_after=10**6) == 600
    assert parse_retry_after("12") == 12
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_which_statuses_are_retried() -> None:
    """Transient statuses are retried; client errors are final."""
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (400, 401, 403, 404, 410))
