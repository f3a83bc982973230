"""``hubcache export``: a cached model as a tfhub.dev-style tarball (``./saved_model.pb`` …).

Every member is a plain file or directory, even where the cache hard-links files to shared blobs
(``tarfile.add`` would write those as hard-link members, which no safe importer accepts). The
file appears atomically: written under a temporary name, renamed when complete.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tarfile
import uuid
from pathlib import Path
from typing import Any, cast

try:
    from isal import igzip

    _open_gzip: Any = igzip.IGzipFile  # ISA-L deflate: several times faster than zlib's
except ImportError:  # pragma: no cover - isal is a declared dependency
    _open_gzip = gzip.GzipFile


def _info(name: str, stat: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = int(stat.st_mtime)
    info.size = stat.st_size if kind == tarfile.REGTYPE else 0
    return info


def pack(model: Path, output: Path) -> int:
    """Write ``model`` to ``output`` as .tar.gz; the bytes written."""
    temporary = output.with_name(f".{output.name}.{uuid.uuid4().hex}.tmp")
    try:
        with (
            temporary.open("wb") as raw,
            cast(gzip.GzipFile, _open_gzip(fileobj=raw, mode="wb")) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(_info("./", model.stat(), tarfile.DIRTYPE))
            for parent, dirs, files in os.walk(model):
                dirs.sort()
                relative = Path(parent).relative_to(model)
                for name in dirs:
                    path = Path(parent, name)
                    tar.addfile(_info(f"./{relative / name}", path.stat(), tarfile.DIRTYPE))
                for name in sorted(files):
                    path = Path(parent, name)
                    with path.open("rb") as data:
                        info = _info(f"./{relative / name}", path.stat(), tarfile.REGTYPE)
                        tar.addfile(info, data)
        os.replace(temporary, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return output.stat().st_size
