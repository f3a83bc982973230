"""The ``hubcache`` command line.

Exit 0 on success, 1 on failure with one line per failure naming the handle and the cause,
2 on usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from hubcache import __version__
from hubcache.api import resolve_many
from hubcache.config import Settings, load_settings
from hubcache.errors import HubcacheError, NotCachedError
from hubcache.handles import cache_key
from hubcache.layout import is_key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubcache", description="Shared, resumable TensorFlow Hub model cache."
    )
    parser.add_argument("--version", action="version", version=f"hubcache {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file")
    common.add_argument("--cache-dir", metavar="DIR", help="cache directory (TFHUB_CACHE_DIR)")
    common.add_argument("--socket", metavar="PATH", help="daemon socket (HUBCACHE_SOCKET)")
    common.add_argument("--no-daemon", action="store_true", help="work in this process")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prefetch = commands.add_parser("prefetch", parents=[common], help="download models")
    prefetch.add_argument("handles", nargs="+", metavar="HANDLE")
    prefetch.add_argument("--json", action="store_true", help="print results as JSON")

    resolve = commands.add_parser("resolve", parents=[common], help="print a model's path")
    resolve.add_argument("handle", metavar="HANDLE")

    ls = commands.add_parser("ls", parents=[common], help="list cached models")
    ls.add_argument("--json", action="store_true", help="print entries as JSON")

    rm = commands.add_parser("rm", parents=[common], help="remove cached models")
    rm.add_argument("targets", nargs="+", metavar="HANDLE|KEY")
    return parser


def _fail(message: object) -> None:
    print(f"hubcache: {message}", file=sys.stderr)


def _cmd_prefetch(args: argparse.Namespace, settings: Settings) -> int:
    outcomes = resolve_many(args.handles, settings)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for outcome in failed:
        if not isinstance(outcome, HubcacheError):
            raise outcome
        _fail(outcome)
    if args.json:
        rows = [_result_row(h, o) for h, o in zip(args.handles, outcomes, strict=True)]
        print(json.dumps(rows, indent=2))
    else:
        for handle, outcome in zip(args.handles, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                print(f"{handle}\t{_path(outcome)}")
    return 1 if failed else 0


def _path(outcome: Any) -> str:
    return outcome if isinstance(outcome, str) else str(outcome.path)


def _result_row(handle: str, outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, HubcacheError):
        return {"handle": handle, "error": {"code": outcome.code, "message": str(outcome)}}
    if isinstance(outcome, str):
        return {"handle": handle, "path": outcome, "source": "local"}
    return {
        "handle": handle,
        "key": outcome.key,
        "path": outcome.path,
        "size_bytes": outcome.size_bytes,
        "fingerprint": outcome.fingerprint,
        "source": outcome.source,
    }


def _cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    outcome = resolve_many([args.handle], settings)[0]
    if isinstance(outcome, BaseException):
        raise outcome
    print(os.path.abspath(_path(outcome)))
    return 0


def _cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    try:
        entries = store.entries()
    finally:
        store.close()
    rows = [
        {
            "handle": e.handle,
            "key": e.key,
            "path": str(store.layout.model(e.key)),
            "size_bytes": e.size_bytes,
            "last_access": e.last_access,
            "pinned": e.pinned,
            "fingerprint": e.fingerprint,
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_access))
        print(f"{e.key}  {_human(e.size_bytes):>9}  {when}  {e.handle or '?'}")
    return 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    import filelock  # noqa: PLC0415

    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    status = 0
    try:
        for target in args.targets:
            key = target if is_key(target) and store.layout.model(target).exists() else None
            key = key or cache_key(target)
            with filelock.FileLock(str(store.layout.kernel_lock(key)), thread_local=False):
                removed = store.remove(key)
            if not removed:
                _fail(NotCachedError("not in the cache", target))
                status = 1
    finally:
        store.close()
    return status


_COMMANDS = {"prefetch": _cmd_prefetch, "resolve": _cmd_resolve, "ls": _cmd_ls, "rm": _cmd_rm}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            config_file=args.config,
            cache_dir=args.cache_dir,
            socket=args.socket,
            no_daemon=args.no_daemon,
        )
        return _COMMANDS[args.command](args, settings)
    except HubcacheError as error:
        _fail(error)
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
