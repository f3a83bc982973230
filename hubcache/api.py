"""The synchronous Python API: ``resolve``, ``prefetch``, ``load``.

A cached model is answered from the directory alone (no event loop, no aiohttp import); only a
download starts the asyncio pipeline. TensorFlow is imported by :func:`load` and nowhere else.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from hubcache.config import Settings, load_settings
from hubcache.handles import HandleKind, cache_key, classify

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion, also from code that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(coroutine))
        except BaseException as error:  # noqa: BLE001 - handed back to the calling thread
            failure.append(error)

    thread = threading.Thread(target=target, name="hubcache-resolve")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def _resolve_all(settings: Settings, handles: Sequence[str]) -> list[Any]:
    from hubcache.pipeline import Pipeline  # noqa: PLC0415 - keeps aiohttp out of cache hits

    pipeline = Pipeline(settings)
    try:
        return await asyncio.gather(*(pipeline.resolve(h) for h in handles), return_exceptions=True)
    finally:
        await pipeline.aclose()
        pipeline.store.close()


def resolve_many(handles: Sequence[str], settings: Settings | None = None) -> list[Any]:
    """Resolve each handle; the result holds a ``Resolved``, a local path or an exception each."""
    settings = settings or load_settings()
    results: list[Any] = [None] * len(handles)
    remote: list[int] = []
    for i, handle in enumerate(handles):
        try:
            results[i] = handle if classify(handle) is HandleKind.LOCAL else None
        except Exception as error:  # noqa: BLE001 - reported per handle
            results[i] = error
            continue
        if results[i] is None:
            remote.append(i)
    if remote:
        resolved = run_sync(_resolve_all(settings, [handles[i] for i in remote]))
        for i, outcome in zip(remote, resolved, strict=True):
            results[i] = outcome
    return results


def _path_of(outcome: Any) -> str:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome if isinstance(outcome, str) else str(outcome.path)


def resolve(handle: str, settings: Settings | None = None) -> str:
    """The local directory of ``handle``'s model, downloading it into the cache if needed."""
    if classify(handle) is HandleKind.LOCAL:
        return handle
    settings = settings or load_settings()
    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    try:
        if store.lookup(handle) is not None:
            return str(store.layout.model(cache_key(handle)))
    finally:
        store.close()
    return _path_of(resolve_many([handle], settings)[0])


def prefetch(handles: Sequence[str], settings: Settings | None = None) -> list[str]:
    """Download every handle concurrently; their paths, or the first error after all finish."""
    return [_path_of(outcome) for outcome in resolve_many(list(handles), settings)]


def load(handle: str, tags: Any = None, options: Any = None) -> Any:
    """``tf.saved_model.load`` of the resolved model (imports TensorFlow only here)."""
    path = resolve(handle)
    import tensorflow as tf  # noqa: PLC0415

    return tf.saved_model.load(path, tags=tags, options=options)
