"""The synchronous Python API: ``resolve``, ``prefetch``, ``load``.

Each call asks the daemon when one answers on the socket and falls back to the same pipeline in
this process when none does (``HUBCACHE_NO_DAEMON=1`` forces that). An error *from* the daemon is
raised as is, never retried in-process. A cache hit in-process is answered from the directory
alone (no event loop, no aiohttp); TensorFlow is imported by :func:`load` and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from hubcache.client import Client, DaemonUnavailable
from hubcache.config import Settings, load_settings
from hubcache.errors import HubcacheError
from hubcache.handles import HandleKind, cache_key, classify

T = TypeVar("T")
Row = dict[str, Any]
Outcome = Row | HubcacheError
KeyProgress = Callable[[str, int, int | None], None]  # (key, bytes done, bytes total)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion, also from code that already runs an event loop."""
    import asyncio  # noqa: PLC0415 - 90 ms a cache hit through the daemon never pays

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


def daemon_client(settings: Settings) -> Client | None:
    return None if settings.no_daemon else Client(settings.socket)


async def _in_process(
    settings: Settings, handles: Sequence[str], progress: KeyProgress | None
) -> list[Outcome]:
    import asyncio  # noqa: PLC0415

    from hubcache.pipeline import Pipeline  # noqa: PLC0415 - keeps aiohttp out of cache hits

    def reporter(handle: str) -> Callable[[int, int | None], None] | None:
        if progress is None:
            return None
        key = cache_key(handle)
        return lambda done, total: progress(key, done, total)

    pipeline = Pipeline(settings)
    try:
        results = await asyncio.gather(
            *(pipeline.resolve(h, reporter(h)) for h in handles), return_exceptions=True
        )
    finally:
        await pipeline.aclose()
        pipeline.store.close()
    outcomes: list[Outcome] = []
    for result in results:
        if isinstance(result, HubcacheError):
            outcomes.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            outcomes.append(result.row())
    return outcomes


def _through_daemon(client: Client, handles: Sequence[str]) -> list[Outcome]:
    """Start every job at once, then wait for each (a resolve joins the running job)."""
    if len(handles) > 1:
        client.prefetch(list(handles))
    outcomes: list[Outcome] = []
    for handle in handles:
        try:
            outcomes.append(client.resolve(handle))
        except HubcacheError as error:
            outcomes.append(error)
    return outcomes


def resolve_many(
    handles: Sequence[str],
    settings: Settings | None = None,
    progress: KeyProgress | None = None,
    own_process: bool = False,
) -> list[Outcome]:
    """Resolve each handle: a row (``handle, key, path, size_bytes, fingerprint, source``) or the
    :class:`HubcacheError` that stopped it. Local handles come back as ``source: local``.
    ``own_process``: the caller is a hubcache command, so memory tuning may apply."""
    settings = settings or load_settings()
    outcomes: list[Outcome | None] = [None] * len(handles)
    remote: list[int] = []
    for i, handle in enumerate(handles):
        try:
            if classify(handle) is HandleKind.LOCAL:
                outcomes[i] = {"handle": handle, "path": handle, "source": "local"}
            else:
                remote.append(i)
        except HubcacheError as error:
            outcomes[i] = error
    wanted = [handles[i] for i in remote]
    results: list[Outcome] | None = None
    client = daemon_client(settings)
    if wanted and client is not None:
        try:
            results = _through_daemon(client, wanted)
        except DaemonUnavailable:
            results = None
    if wanted and results is None:
        if own_process:
            from hubcache.memory import tune_process  # noqa: PLC0415

            tune_process()
        results = run_sync(_in_process(settings, wanted, progress))
    for i, outcome in zip(remote, results or [], strict=True):
        outcomes[i] = outcome
    return [o for o in outcomes if o is not None]


def _path(outcome: Outcome) -> str:
    if isinstance(outcome, HubcacheError):
        raise outcome
    return str(outcome["path"])


def resolve(handle: str, settings: Settings | None = None) -> str:
    """The local directory of ``handle``'s model, downloading it into the cache if needed."""
    if classify(handle) is HandleKind.LOCAL:
        return handle
    settings = settings or load_settings()
    client = daemon_client(settings)
    if client is not None:
        try:
            return str(client.resolve(handle)["path"])
        except DaemonUnavailable:
            pass
    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    try:
        if (entry := store.lookup(handle)) is not None:
            return str(store.layout.model(entry.key))
    finally:
        store.close()
    return _path(run_sync(_in_process(settings, [handle], None))[0])


def prefetch(handles: Sequence[str], settings: Settings | None = None) -> list[str]:
    """Download every handle concurrently; their paths, or the first error after all finish."""
    return [_path(outcome) for outcome in resolve_many(list(handles), settings)]


def load(handle: str, tags: Any = None, options: Any = None) -> Any:
    """``tf.saved_model.load`` of the resolved model (imports TensorFlow only here). A lease is
    held from before the resolve until the load returns: eviction never pulls the model away."""
    import tensorflow as tf  # noqa: PLC0415

    if classify(handle) is HandleKind.LOCAL:
        return tf.saved_model.load(handle, tags=tags, options=options)
    from hubcache.layout import Layout  # noqa: PLC0415
    from hubcache.leases import held  # noqa: PLC0415

    settings = load_settings()
    with held(Layout(settings.cache_dir), cache_key(handle)):
        return tf.saved_model.load(resolve(handle, settings), tags=tags, options=options)
