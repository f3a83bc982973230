"""Safe streaming extraction of a model tarball into a staging directory.

:func:`plan_member` is the whole policy, a pure function over plain data: only regular files and
directories; no absolute paths, no ``..``, no links, devices or FIFOs; no duplicate or
conflicting names; limits on member count and unpacked bytes. :func:`extract_stream` only does what
the plan says, creating every file with ``O_EXCL | O_NOFOLLOW`` below the staging directory. Any
violation aborts the whole model.
"""

from __future__ import annotations

import enum
import hashlib
import lzma
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from hubcache.archive import Readable
from hubcache.config import Limits
from hubcache.errors import ArchiveError, ArchiveLimitError, UnsafeArchiveError

COPY_CHUNK = 1 << 20
READ_SIZE = 1 << 20  # tarfile's stream reads: the default 10 KiB costs a Python call per 10 KiB

try:
    from isal import isal_zlib

    _ZLIB_ERRORS: tuple[type[Exception], ...] = (cast(type[Exception], isal_zlib.error),)
except ImportError:  # pragma: no cover - isal is optional at run time
    _ZLIB_ERRORS = ()
_FORMAT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    tarfile.TarError,
    lzma.LZMAError,
    *_ZLIB_ERRORS,
)


class MemberKind(enum.Enum):
    FILE = "regular file"
    DIR = "directory"
    SYMLINK = "symbolic link"
    HARDLINK = "hard link"
    CHARDEV = "character device"
    BLOCKDEV = "block device"
    FIFO = "FIFO"
    SPARSE = "sparse file"
    OTHER = "special member"


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    kind: MemberKind
    size: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one member: make ``path`` (relative, normalised) as a file or dir."""

    path: str
    kind: MemberKind  # FILE or DIR
    size: int = 0


@dataclass(slots=True)
class PlanState:
    """What the plan has accepted so far (the accumulator of :func:`plan_member`)."""

    members: int = 0
    unpacked: int = 0
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)


def _normalise(name: str) -> str:
    if "\x00" in name:
        raise UnsafeArchiveError(f"archive member {name!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} escapes the model directory")
    return "/".join(parts)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def plan_member(member: Member, state: PlanState, limits: Limits) -> Step | None:
    """Decide one member; ``None`` means skip it (the archive's own root entry)."""
    state.members += 1
    if state.members > limits.max_members:
        raise ArchiveLimitError(f"archive has more than {limits.max_members} members")
    if member.kind not in (MemberKind.FILE, MemberKind.DIR):
        raise UnsafeArchiveError(
            f"archive member {member.name!r} is a {member.kind.value}; "
            "only regular files and directories are allowed"
        )
    path = _normalise(member.name)
    if not path:
        if member.kind is MemberKind.DIR:
            return None
        raise UnsafeArchiveError(f"archive member {member.name!r} is a file with no name")
    if path in state.files or (member.kind is MemberKind.FILE and path in state.dirs):
        raise UnsafeArchiveError(f"archive member {member.name!r} appears twice")
    for ancestor in _ancestors(path):
        if ancestor in state.files:
            raise UnsafeArchiveError(f"archive member {member.name!r} is inside file {ancestor!r}")
    state.dirs.update(_ancestors(path))
    if member.kind is MemberKind.DIR:
        state.dirs.add(path)
        return Step(path, MemberKind.DIR)
    state.unpacked += member.size
    if state.unpacked > limits.max_model_bytes:
        raise ArchiveLimitError(f"archive unpacks to more than {limits.max_model_bytes} bytes")
    state.files.add(path)
    return Step(path, MemberKind.FILE, member.size)


def plan_extraction(members: Iterable[Member], limits: Limits) -> list[Step]:
    """The plan for a whole member list (the same decisions :func:`extract_stream` makes)."""
    state = PlanState()
    return [step for m in members if (step := plan_member(m, state, limits)) is not None]


# Sparse first: tarfile reports GNU sparse files as regular files too.
_KINDS: tuple[tuple[Callable[[tarfile.TarInfo], bool], MemberKind], ...] = (
    (tarfile.TarInfo.issparse, MemberKind.SPARSE),
    (tarfile.TarInfo.isreg, MemberKind.FILE),
    (tarfile.TarInfo.isdir, MemberKind.DIR),
    (tarfile.TarInfo.issym, MemberKind.SYMLINK),
    (tarfile.TarInfo.islnk, MemberKind.HARDLINK),
    (tarfile.TarInfo.ischr, MemberKind.CHARDEV),
    (tarfile.TarInfo.isblk, MemberKind.BLOCKDEV),
    (tarfile.TarInfo.isfifo, MemberKind.FIFO),
)


def member_of(info: tarfile.TarInfo) -> Member:
    kind = next((kind for test, kind in _KINDS if test(info)), MemberKind.OTHER)
    return Member(name=info.name, kind=kind, size=info.size)


@dataclass(frozen=True, slots=True)
class Extracted:
    files: int
    bytes: int
    hashes: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 hex


Progress = Callable[[int], None]


def _write_file(source: Readable, target: Path, size: int, progress: Progress | None) -> str:
    """Copy one member to ``target``; its sha256 (for dedup and fingerprints)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o644)
    digest = hashlib.sha256()
    try:
        remaining = size
        while remaining:
            data = source.read(min(COPY_CHUNK, remaining))
            if not data:
                raise ArchiveError("truncated archive: a member ends early")
            digest.update(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            remaining -= len(data)
            if progress is not None:
                progress(len(data))
    finally:
        os.close(fd)
    return digest.hexdigest()


def _drain(stream: Readable) -> None:
    """Read to the end so truncation, bad checksums and bombs past the tar end are caught."""
    while stream.read(COPY_CHUNK):
        pass


def extract_stream(
    stream: Readable, staging: Path, limits: Limits, progress: Progress | None = None
) -> Extracted:
    """Extract the tar ``stream`` into the existing, empty directory ``staging``."""
    state = PlanState()
    hashes: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=READ_SIZE) as tar:  # type: ignore[call-overload]
            for info in tar:
                step = plan_member(member_of(info), state, limits)
                if step is None:
                    continue
                target = staging / step.path
                if step.kind is MemberKind.DIR:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(info)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise ArchiveError(f"archive member {info.name!r} has no data")
                hashes[step.path] = _write_file(source, target, step.size, progress)
        _drain(stream)
    except tarfile.ReadError as error:
        raise _read_error(str(error)) from None
    except EOFError:
        raise ArchiveError("truncated archive: the compressed stream ends early") from None
    except (zlib.error, OSError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # a real I/O error (e.g. ENOSPC), not a format problem
        raise ArchiveError(f"corrupt archive: {error}") from None
    except _FORMAT_ERRORS as error:
        raise ArchiveError(f"corrupt archive: {error}") from None
    if not state.files:
        raise ArchiveError("archive is empty: no files in it")
    return Extracted(files=len(state.files), bytes=state.unpacked, hashes=hashes)


def _read_error(text: str) -> ArchiveError:
    if "unexpected end" in text:
        return ArchiveError("truncated archive: the tar stream ends early")
    if text == "empty file":
        return ArchiveError("archive is empty")
    return ArchiveError(f"not a model archive: not a tar stream ({text})")
