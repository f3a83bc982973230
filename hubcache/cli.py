"""The ``hubcache`` command line.

Every command that needs the daemon uses it when it answers and works in-process when none does
(``--no-daemon`` forces that). Exit 0 on success, 1 on failure with one line per failure naming
the handle and the cause, 2 on usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from hubcache import __version__
from hubcache.api import daemon_client, resolve_many
from hubcache.client import Client, DaemonUnavailable
from hubcache.config import Settings, load_settings, parse_size
from hubcache.errors import ConfigError, HubcacheError, NotCachedError
from hubcache.handles import cache_key
from hubcache.layout import is_key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubcache", description="Shared, resumable TensorFlow Hub model cache."
    )
    parser.add_argument("--version", action="version", version=f"hubcache {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file (HUBCACHE_CONFIG)")
    common.add_argument("--cache-dir", metavar="DIR", help="cache directory (TFHUB_CACHE_DIR)")
    common.add_argument("--socket", metavar="PATH", help="daemon socket (HUBCACHE_SOCKET)")
    common.add_argument("--no-daemon", action="store_true", help="work in this process")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text)

    command("daemon", "serve the cache on a Unix socket")
    prefetch = command("prefetch", "download models")
    prefetch.add_argument("handles", nargs="+", metavar="HANDLE")
    prefetch.add_argument("--json", action="store_true", help="print results as JSON")
    command("resolve", "print a model's path (downloading it if needed)").add_argument(
        "handle", metavar="HANDLE"
    )
    command("ls", "list cached models").add_argument("--json", action="store_true")
    command("rm", "remove cached models").add_argument("targets", nargs="+", metavar="HANDLE|KEY")
    command("gc", "evict down to the size budget").add_argument(
        "--max-size", type=_size, metavar="SIZE", help="budget for this run, e.g. 50GiB"
    )
    command("pin", "never evict a model").add_argument("target", metavar="HANDLE|KEY")
    command("unpin", "let a model be evicted again").add_argument("target", metavar="HANDLE|KEY")
    command("status", "daemon and cache status").add_argument("--json", action="store_true")
    imported = command("import", "publish a local tarball as a handle's model (air-gapped hosts)")
    imported.add_argument("tarball", metavar="TARBALL")
    imported.add_argument("--handle", required=True, metavar="HANDLE")
    exported = command("export", "write a cached model as a .tar.gz")
    exported.add_argument("handle", metavar="HANDLE")
    exported.add_argument("-o", "--output", required=True, metavar="FILE")
    verify = command("verify", "check the cache against its index (an fsck)")
    verify.add_argument("--repair", action="store_true", help="fix, re-fetch, rebuild the index")
    verify.add_argument("--json", action="store_true")
    return parser


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def _fail(message: object) -> None:
    print(f"hubcache: {message}", file=sys.stderr)


def _with_daemon(settings: Settings, work: Callable[[Client], int]) -> int | None:
    """``work(client)`` when a daemon answers; None to fall back in-process."""
    client = daemon_client(settings)
    if client is None:
        return None
    try:
        return work(client)
    except DaemonUnavailable:
        return None


def _cmd_daemon(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio  # noqa: PLC0415

    from hubcache.daemon import serve  # noqa: PLC0415
    from hubcache.logs import configure  # noqa: PLC0415
    from hubcache.memory import tune_process  # noqa: PLC0415

    configure()
    tune_process()
    return asyncio.run(serve(settings))


def _cmd_prefetch(args: argparse.Namespace, settings: Settings) -> int:
    from hubcache.progress import Board  # noqa: PLC0415

    board = Board(args.handles)
    client = daemon_client(settings)
    if client is not None and board.enabled:
        board.follow(client)
    try:
        outcomes = resolve_many(args.handles, settings, progress=board.update, own_process=True)
    finally:
        board.close()
    failed = [o for o in outcomes if isinstance(o, HubcacheError)]
    for error in failed:
        _fail(error)
    if args.json:
        rows = [
            {"handle": h, "error": o.to_payload()} if isinstance(o, HubcacheError) else o
            for h, o in zip(args.handles, outcomes, strict=True)
        ]
        print(json.dumps(rows, indent=2))
    else:
        for outcome in outcomes:
            if not isinstance(outcome, HubcacheError):
                print(f"{outcome['handle']}\t{outcome['path']}")
    return 1 if failed else 0


def _cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    outcome = resolve_many([args.handle], settings, own_process=True)[0]
    if isinstance(outcome, HubcacheError):
        raise outcome
    print(os.path.abspath(outcome["path"]))
    return 0


def _cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    rows: list[dict[str, Any]] | None = None
    client = daemon_client(settings)
    if client is not None:
        try:
            rows = client.models()
        except DaemonUnavailable:
            rows = None
    if rows is None:
        from hubcache.store import Store, entry_row  # noqa: PLC0415

        store = Store(settings)
        try:
            rows = [entry_row(e, store.layout) for e in store.entries()]
        finally:
            store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(row["last_access"])))
        pin = " pinned" if row["pinned"] else ""
        size = _human(int(row["size_bytes"]))
        print(f"{row['key']}  {size:>9}  {when}  {row['handle'] or '?'}{pin}")
    return 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _key_of(target: str) -> str:
    return target if is_key(target) else cache_key(target)


def _in_store(settings: Settings, work: Callable[[Any], int]) -> int:
    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    try:
        return work(store)
    finally:
        store.close()


def _cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    def remote(client: Client) -> int:
        status = 0
        for target in args.targets:
            try:
                client.remove(_key_of(target))
            except NotCachedError:
                _fail(NotCachedError("not in the cache", target))
                status = 1
        return status

    def local(store: Any) -> int:
        import filelock  # noqa: PLC0415

        status = 0
        for target in args.targets:
            key = _key_of(target)
            with filelock.FileLock(str(store.layout.kernel_lock(key)), thread_local=False):
                if not store.remove(key):
                    _fail(NotCachedError("not in the cache", target))
                    status = 1
        return status

    done = _with_daemon(settings, remote)
    return done if done is not None else _in_store(settings, local)


def _cmd_pin(args: argparse.Namespace, settings: Settings, pinned: bool = True) -> int:
    key = _key_of(args.target)

    def remote(client: Client) -> int:
        client.pin(key, pinned)
        return 0

    def local(store: Any) -> int:
        from hubcache.evict import set_pinned  # noqa: PLC0415

        if not set_pinned(store, key, pinned):
            raise NotCachedError("not in the cache", args.target)
        return 0

    try:
        done = _with_daemon(settings, remote)
    except NotCachedError:
        raise NotCachedError("not in the cache", args.target) from None
    return done if done is not None else _in_store(settings, local)


def _cmd_unpin(args: argparse.Namespace, settings: Settings) -> int:
    return _cmd_pin(args, settings, pinned=False)


def _cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    max_bytes: int | None = args.max_size

    def report(evicted: list[str], freed: int) -> int:
        print(f"evicted {len(evicted)} model(s), freed {_human(freed)}")
        return 0

    def remote(client: Client) -> int:
        result = client.gc(max_bytes)
        return report(result["evicted"], result["freed_bytes"])

    def local(store: Any) -> int:
        from hubcache.evict import collect  # noqa: PLC0415

        result = collect(store, settings, max_bytes)
        return report(result.evicted, result.freed_bytes)

    done = _with_daemon(settings, remote)
    return done if done is not None else _in_store(settings, local)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    status: dict[str, Any] = {"socket": str(settings.socket), "daemon": None}

    def remote(client: Client) -> int:
        status["daemon"] = client.health()
        status["jobs"] = [j for j in client.jobs() if j["state"] in ("queued", "downloading")]
        status["models"] = client.models()
        return 0

    if _with_daemon(settings, remote) is None:

        def local(store: Any) -> int:
            from hubcache.store import entry_row  # noqa: PLC0415

            status["models"] = [entry_row(e, store.layout) for e in store.entries()]
            return 0

        _in_store(settings, local)
    status["cache_dir"] = (status["daemon"] or {}).get("cache_dir", str(settings.cache_dir))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    daemon = status["daemon"]
    print(f"daemon:    {'running, version ' + daemon['version'] if daemon else 'not running'}")
    print(f"socket:    {status['socket']}")
    print(f"cache_dir: {status['cache_dir']}")
    models = status["models"]
    print(f"models:    {len(models)}, {_human(sum(m['size_bytes'] for m in models))}")
    for job in status.get("jobs", []):
        done, total = job["bytes_done"], job["bytes_total"]
        print(f"job {job['id']}: {job['state']} {done}/{total} {job['handle']}")
    return 0


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """In this process always: the daemon never reads a client's files."""
    from pathlib import Path  # noqa: PLC0415

    from hubcache.api import run_sync  # noqa: PLC0415
    from hubcache.pipeline import Pipeline  # noqa: PLC0415

    tarball = Path(args.tarball)
    if not tarball.is_file():
        raise HubcacheError(f"no such file: {tarball}", args.handle)

    async def publish() -> Any:
        pipeline = Pipeline(settings)
        try:
            return await pipeline.import_tarball(args.handle, tarball)
        finally:
            await pipeline.aclose()
            pipeline.store.close()

    resolved = run_sync(publish())
    note = "" if resolved.source == "download" else " (already cached: left as it was)"
    print(f"{args.handle}\t{resolved.path}{note}")
    return 0


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path  # noqa: PLC0415

    from hubcache.pack import pack  # noqa: PLC0415

    outcome = resolve_many([args.handle], settings, own_process=True)[0]
    if isinstance(outcome, HubcacheError):
        raise outcome
    try:
        size = pack(Path(outcome["path"]), Path(args.output))
    except OSError as error:
        raise HubcacheError(f"cannot write {args.output}: {error.strerror}", args.handle) from None
    print(f"{args.output}\t{size} bytes")
    return 0


def _cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Always in this process: it reads the directory itself (re-fetches may use the daemon)."""
    from hubcache.fsck import check, repair  # noqa: PLC0415
    from hubcache.store import Store  # noqa: PLC0415

    store = Store(settings)
    try:
        found = check(store)
        repaired: list[str] = []
        failures: list[HubcacheError] = []
        if args.repair and found:
            repaired, refetch = repair(store, found)
            outcomes = resolve_many(refetch, settings, own_process=True) if refetch else []
            failures = [o for o in outcomes if isinstance(o, HubcacheError)]
            found = check(store)
    finally:
        store.close()
    if args.json:
        report = {
            "problems": [p.as_dict() for p in found],
            "repaired": repaired,
            "errors": [str(e) for e in failures],
        }
        print(json.dumps(report, indent=2))
    else:
        for line in repaired:
            print(f"repaired {line}")
        for problem in found:
            print(problem.line())
        for error in failures:
            _fail(error)
        if not found and not failures:
            print("cache is consistent")
    return 1 if found or failures else 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "daemon": _cmd_daemon,
    "prefetch": _cmd_prefetch,
    "resolve": _cmd_resolve,
    "ls": _cmd_ls,
    "rm": _cmd_rm,
    "gc": _cmd_gc,
    "pin": _cmd_pin,
    "unpin": _cmd_unpin,
    "status": _cmd_status,
    "verify": _cmd_verify,
    "import": _cmd_import,
    "export": _cmd_export,
}


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
