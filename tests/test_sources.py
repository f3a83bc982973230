"""Where bytes come from and what they may be: formats, redirects, mirrors, offline, full disks."""

from __future__ import annotations

import errno
import os
import zlib
from pathlib import Path

import pytest

import hubcache
import hubcache.archive
from hubcache.errors import CacheFullError, FetchError
from hubcache.handles import cache_key
from tests.conftest import Model, cache_leftovers, run_cli, tarball_of, tree_bytes, write_config
from tests.origin import Origin


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz", "w:gz"])
def test_tar_formats_are_sniffed_by_magic(
    mode: str, origin: Origin, models: dict[str, Model]
) -> None:
    """Plain, bzip2, xz and gzip tarballs all extract byte-exact, whatever the URL says."""
    model = models["alpha"]
    url = origin.put("alpha", tarball_of(model.directory, mode))
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(model.directory)


def test_stdlib_gzip_when_isal_is_missing(
    origin: Origin, models: dict[str, Model], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ISA-L the stdlib gzip reader gives the same model."""
    monkeypatch.setattr(hubcache.archive, "_inflater", lambda: zlib.decompressobj(31))
    model = models["alpha"]
    url = origin.put("alpha", model.tarball)
    assert tree_bytes(Path(hubcache.resolve(url))) == tree_bytes(model.directory)


def test_redirect_loop_fails_after_ten(origin: Origin, cache_dir: Path) -> None:
    """More than 10 redirects is a clear error naming the handle, not a hang."""
    url = f"{origin.base}/loop/forever"
    done = run_cli("prefetch", url)
    assert done.returncode == 1
    assert url in done.stderr and "redirects" in done.stderr
    assert cache_leftovers(cache_dir) == []


def test_mirror_is_tried_first_and_origin_is_the_fallback(
    origin: Origin, models: dict[str, Model], config_file: Path
) -> None:
    """A [[mirrors]] entry serves the handle; when it lacks the model, the origin still does."""
    mirror = Origin().start()
    try:
        alpha, beta = models["alpha"], models["beta"]
        mirror.put("alpha", alpha.tarball)
        handle_a = origin.put("alpha", beta.tarball)  # a different body: proves who served it
        handle_b = origin.put("beta", beta.tarball)
        write_config(
            config_file,
            extra=f'[[mirrors]]\nprefix = "{origin.base}/models/"\nurl = "{mirror.base}/models/"\n',
        )
        assert tree_bytes(Path(hubcache.resolve(handle_a))) == tree_bytes(alpha.directory)
        assert origin.served("alpha") == []
        assert tree_bytes(Path(hubcache.resolve(handle_b))) == tree_bytes(beta.directory)
        assert [(s.name, s.status) for s in mirror.log] == [("alpha", 200), ("beta", 404)]
        assert origin.bodies_sent("beta") == 1
    finally:
        mirror.stop()


def test_offline_serves_the_cache_and_refuses_downloads(
    origin: Origin, models: dict[str, Model], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HUBCACHE_OFFLINE=1: cached handles resolve, others fail without a request."""
    cached = origin.put("alpha", models["alpha"].tarball)
    hubcache.resolve(cached)
    monkeypatch.setenv("HUBCACHE_OFFLINE", "1")
    assert hubcache.resolve(cached).endswith(cache_key(cached))
    missing = origin.put("beta", models["beta"].tarball)
    with pytest.raises(FetchError, match="OFFLINE"):
        hubcache.resolve(missing)
    assert origin.served("beta") == []


def test_disk_full_is_a_cache_full_error_and_leaves_nothing(
    origin: Origin, models: dict[str, Model], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while extracting: CacheFullError naming the handle; no model, no staging."""
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if len(data) > 10_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    url = origin.put("big", models["big"].tarball)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(CacheFullError) as caught:
        hubcache.resolve(url)
    monkeypatch.undo()
    assert caught.value.handle == url and "no space left" in str(caught.value)
    assert cache_leftovers(cache_dir) == []
