"""Hostile and broken archives: a one-line error, nothing published, nothing written outside
staging, staging removed (acceptance 8)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hubcache.handles import cache_key
from tests.conftest import Model, cache_leftovers, run_cli
from tests.origin import Origin


def _tar(add: Callable[[tarfile.TarFile], None], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        add(tar)
    return buffer.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"data") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _special(tar: tarfile.TarFile, name: str, kind: bytes, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    tar.addfile(info)


def _model_then(*extra: Callable[[tarfile.TarFile], None]) -> bytes:
    """A plausible model whose later members turn hostile."""

    def add(tar: tarfile.TarFile) -> None:
        _file(tar, "./saved_model.pb", b"\x08\x01")
        for step in extra:
            step(tar)

    return _tar(add)


def gzip_bomb() -> bytes:
    """2 GiB of zeros in about 2 MB: one tar header, then 32 gzip members of 64 MiB zeros."""
    info = tarfile.TarInfo("variables/variables.data-00000-of-00001")
    info.size = 2 << 30
    zeros = gzip.compress(bytes(64 << 20), 9)
    return gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)) + zeros * 32


def _truncated(model: Model) -> bytes:
    return model.tarball[: len(model.tarball) // 2]


CASES: dict[str, tuple[Callable[[Path, Model], bytes], str]] = {
    "traversal": (lambda out, m: _model_then(lambda t: _file(t, "../escaped.txt")), "escapes"),
    "absolute": (lambda out, m: _model_then(lambda t: _file(t, str(out / "abs.txt"))),
                 "absolute path"),
    "symlink": (lambda out, m: _model_then(lambda t: _special(t, "variables", tarfile.SYMTYPE,
                                                              str(out)),
                                           lambda t: _file(t, "variables/through.txt")),
                "symbolic link"),
    "hardlink": (lambda out, m: _model_then(lambda t: _special(t, "hl", tarfile.LNKTYPE,
                                                               "/etc/passwd")), "hard link"),
    "device": (lambda out, m: _model_then(lambda t: _special(t, "dev", tarfile.CHRTYPE)),
               "character device"),
    "fifo": (lambda out, m: _model_then(lambda t: _special(t, "fifo", tarfile.FIFOTYPE)), "FIFO"),
    "empty": (lambda out, m: _tar(lambda t: None), "archive is empty"),
    "gzip-bomb": (lambda out, m: gzip_bomb(), "gzip bomb"),
    "truncated": (lambda out, m: _truncated(m), "truncated archive"),
    "random-bytes": (lambda out, m: os.urandom(200_000), "not a model archive"),
    "not-a-savedmodel": (lambda out, m: _tar(lambda t: _file(t, "./README.md")),
                         "not a SavedModel"),
}  # fmt: skip


def _snapshot(root: Path, skip: Path) -> dict[str, int]:
    return {
        str(p): p.lstat().st_size for p in root.rglob("*") if skip not in p.parents and p != skip
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive_is_refused_cleanly(
    case: str, origin: Origin, models: dict[str, Model], tmp_path: Path, cache_dir: Path
) -> None:
    """Exit 1 with one line naming the handle and the cause; no model, no staging, no escape."""
    outside = tmp_path / "outside"
    outside.mkdir()
    build, reason = CASES[case]
    url = origin.put(case, build(outside, models["alpha"]))
    before = _snapshot(tmp_path, cache_dir)
    done = run_cli("prefetch", url)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert url in lines[0] and reason in lines[0]
    assert cache_leftovers(cache_dir) == []  # no <key>/, descriptor, lock or staging
    assert not list((cache_dir / ".hubcache" / "partial").iterdir())
    assert _snapshot(tmp_path, cache_dir) == before
    assert not list(outside.iterdir())
    assert not (cache_dir / cache_key(url)).exists()
