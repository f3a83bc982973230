"""Handles in, published models out: the in-process download pipeline.

For one key: take the kernel lock, then tensorflow_hub's lock; stream the tarball into
``.hubcache/partial/<key>.part`` while a worker thread extracts it, behind the writer, into
``<key>.<uid>.tmp``; verify; publish by rename; index. One job per key in this process however
many callers ask (single flight), at most ``max_concurrent`` downloads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from hubcache.archive import FileStream, open_decompressed
from hubcache.config import Settings
from hubcache.dedup import link_tree
from hubcache.errors import (
    ArchiveError,
    CacheError,
    CacheFullError,
    FetchError,
    HTTPStatusError,
    HubcacheError,
    NotAModelError,
)
from hubcache.evict import collect, free_floor
from hubcache.extract import Extracted, extract_stream
from hubcache.fetch import MAX_REDIRECTS, Download, FetchResult, open_session
from hubcache.handles import cache_key, download_urls, is_remote
from hubcache.index import Entry
from hubcache.locks import HubLock, KernelLock
from hubcache.partial import PartFile, SourceAborted, SourceReset
from hubcache.store import Resolved, Store

log = logging.getLogger("hubcache.pipeline")
Progress = Callable[[int, int | None], None]


def as_hubcache_error(error: BaseException, handle: str, cache_dir: Path) -> BaseException:
    """Map a foreign exception to the most specific :class:`HubcacheError` naming ``handle``."""
    if isinstance(error, HubcacheError):
        return error.with_handle(handle)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheFullError(f"no space left on the device of {cache_dir}", handle)
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return CacheError(f"{error.strerror or error}{where}", handle)
    return error


class Pipeline:
    """Downloads and publishes models into one cache directory, in this process."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings)
        self._flights: dict[str, asyncio.Task[Resolved]] = {}
        self._slots = asyncio.Semaphore(settings.download.max_concurrent)
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def cancel_all(self) -> None:
        """Cancel every download in flight; locks are released and partial files kept."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    async def resolve(self, handle: str, progress: Progress | None = None) -> Resolved:
        """The published model for a remote ``handle``, downloading it if needed."""
        if not is_remote(handle):
            download_urls(handle)  # raises the HandleError that names the accepted forms
        key = cache_key(handle)
        entry = self.store.lookup(handle)
        if entry is not None:
            return Resolved.of(handle, entry, self.store.layout.model(key), "cache")
        if self.settings.offline:
            raise FetchError("not in the cache and HUBCACHE_OFFLINE is set", handle)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._job(handle, key, progress))
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(flight)  # a caller giving up never cancels the job

    async def import_tarball(self, handle: str, tarball: Path) -> Resolved:
        """Publish a local tarball as ``handle``'s model (air-gapped hosts); the same checks,
        locks and atomic publish as a download. A model already cached is left as it is."""
        if not is_remote(handle):
            download_urls(handle)  # the HandleError naming the accepted forms
        key = cache_key(handle)
        try:
            return await self._locked(handle, key, None, tarball)
        except BaseException as error:  # noqa: BLE001 - mapped and re-raised, never swallowed
            raise as_hubcache_error(error, handle, self.settings.cache_dir) from None

    async def _job(self, handle: str, key: str, progress: Progress | None) -> Resolved:
        try:
            async with self._slots:
                return await self._locked(handle, key, progress)
        except BaseException as error:  # noqa: BLE001 - mapped and re-raised, never swallowed
            raise as_hubcache_error(error, handle, self.settings.cache_dir) from None

    async def _locked(
        self, handle: str, key: str, progress: Progress | None, tarball: Path | None = None
    ) -> Resolved:
        layout = self.store.layout
        kernel = KernelLock(layout.kernel_lock(key))
        await kernel.acquire()
        try:
            while True:
                if (entry := self.store.check(key)) is not None:
                    self.store.index.touch(key, time.time())
                    return Resolved.of(handle, entry, layout.model(key), "cache")
                uid = uuid.uuid4().hex
                hub = HubLock(layout, key, uid, self.settings.lock_stale_seconds)
                if not await hub.acquire(lambda: self.store.check(key) is not None):
                    continue  # the tensorflow_hub download we waited for was published
                try:
                    if (entry := self.store.check(key)) is not None:
                        return Resolved.of(handle, entry, layout.model(key), "cache")
                    entry, fetched = await self._download(handle, key, uid, progress, tarball)
                    return Resolved.of(handle, entry, layout.model(key), "download", fetched)
                finally:
                    hub.release()
        finally:
            kernel.release()

    async def _download(
        self, handle: str, key: str, uid: str, progress: Progress | None, tarball: Path | None
    ) -> tuple[Entry, int]:
        """Fetch, extract and publish ``handle``; we hold both locks."""
        staging = self.store.layout.staging(key, uid)
        staging.mkdir()
        started = time.monotonic()
        try:
            if tarball is not None:
                loop = asyncio.get_running_loop()
                imported = await loop.run_in_executor(None, self._extract_file, tarball, staging)
                return self.store.publish(key, handle, staging, imported.hashes), 0
            linked = await self._link_same_origin(handle, key, staging)
            if linked is not None:
                return linked, 0
            result, extracted = await self._fetch_any(handle, key, staging, progress)
            entry = self.store.publish(
                key, handle, staging, extracted.hashes, etag=result.etag, final_url=result.final_url
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info(
            "hubcache.model.published",
            extra={"key": key, "bytes": entry.size_bytes, "seconds": time.monotonic() - started},
        )
        return entry, result.bytes_received

    def _session_for_downloads(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = open_session(self.settings.download)
        return self._session

    async def _link_same_origin(self, handle: str, key: str, staging: Path) -> Entry | None:
        """No download when the handle leads (after redirects) to the final URL and ETag that a
        cached model came from: its files are linked under the new key instead."""
        if not self.store.index.has_origins():
            return None
        url = download_urls(handle, self.settings.mirrors)[0]
        try:
            async with self._session_for_downloads().head(
                url, allow_redirects=True, max_redirects=MAX_REDIRECTS
            ) as response:
                final, etag = str(response.url), response.headers.get("ETag")
                if response.status != 200 or not etag:
                    return None
        except (aiohttp.ClientError, TimeoutError):
            return None  # the download itself will report what is wrong
        for source in self.store.index.by_origin(final, etag):
            if source.key == key or self.store.check(source.key) is None:
                continue
            try:
                link_tree(self.store.layout.model(source.key), staging)
            except OSError:  # the source went away meanwhile: download after all
                _empty(staging)
                return None
            log.info("hubcache.model.linked", extra={"key": key, "from": source.key})
            return self.store.publish(
                key, handle, staging, source.hashes, etag=etag, final_url=final
            )
        return None

    def _reserve(self, need: int) -> None:
        """Make ``need`` bytes free (evicting if allowed) or fail before downloading."""
        root = self.store.layout.root
        usage = shutil.disk_usage(root)
        floor = free_floor(self.settings.min_free, usage.total)
        if usage.free - floor >= need:
            return
        collect(self.store, self.settings, reserve=need)
        usage = shutil.disk_usage(root)
        available = max(0, usage.free - floor)
        if available < need:
            raise CacheFullError(
                f"not enough space: about {need} bytes needed (the tarball plus its unpacked "
                f"size), {available} bytes available in {root} after eviction"
            )

    async def _fetch_any(
        self, handle: str, key: str, staging: Path, progress: Progress | None
    ) -> tuple[FetchResult, Extracted]:
        """Try the mirrors, then the origin; keep the partial file only where resuming helps."""
        layout = self.store.layout
        urls = download_urls(handle, self.settings.mirrors)
        for number, url in enumerate(urls, start=1):
            part = PartFile(layout.partial(key), layout.partial_state(key))
            try:
                result = await self._fetch_one(url, part, staging, progress)
            except (ArchiveError, NotAModelError, HTTPStatusError):
                part.discard()  # these bytes will never become a model
                if number == len(urls):
                    raise
            except FetchError:
                if number == len(urls):
                    raise  # keep the partial file: the next attempt resumes it
            except CacheFullError:
                if part.size == 0:
                    part.discard()
                raise
            else:
                part.discard()
                return result
            finally:
                part.close()
            log.warning("hubcache.fetch.mirror_failed", extra={"url": url})
        raise AssertionError("unreachable: the origin is always the last URL")

    async def _fetch_one(
        self, url: str, part: PartFile, staging: Path, progress: Progress | None
    ) -> tuple[FetchResult, Extracted]:
        session = self._session_for_downloads()
        loop = asyncio.get_running_loop()
        extraction = loop.run_in_executor(None, self._extract, part, staging)
        download = asyncio.ensure_future(
            Download(
                session, url, part, self.settings.download, progress=progress, reserve=self._reserve
            ).run()
        )
        try:
            pending: set[asyncio.Future[Any]] = {extraction, download}
            await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            if extraction.done() and extraction.exception() is not None:
                await extraction  # raises the archive error; the download is cancelled below
            result = await download
            return result, await extraction
        except SourceAborted:
            await download  # the download failed first: raise its error, not the echo
            raise
        finally:
            download.cancel()
            part.fail("download stopped")
            await _join(extraction)
            with contextlib.suppress(BaseException):
                await download
            if not extraction.cancelled():
                extraction.exception()  # retrieved: its error, if any, was handled above

    def _extract_file(self, tarball: Path, staging: Path) -> Extracted:
        limits = self.settings.limits
        with tarball.open("rb") as file:
            stream = open_decompressed(FileStream(file), limits)
            try:
                return extract_stream(stream, staging, limits)
            finally:
                stream.close()

    def _extract(self, part: PartFile, staging: Path) -> Extracted:
        """Worker thread: extract behind the writer; start over when the bytes restart."""
        limits = self.settings.limits
        while True:
            _empty(staging)
            stream = None
            try:
                stream = open_decompressed(part.reader(), limits)
                return extract_stream(stream, staging, limits)
            except SourceReset:
                continue
            finally:
                if stream is not None:
                    stream.close()


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


async def _join(future: asyncio.Future[Extracted]) -> None:
    """Wait for a worker thread to stop, even through cancellation (it writes into staging)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
