"""The CLI contract: exit codes, ls/rm, and what `import hubcache` pulls in (DESIGN §7, §9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hubcache
from hubcache.errors import HubcacheError, error_class
from hubcache.handles import cache_key
from tests.conftest import Model, run_cli
from tests.origin import Origin


def test_import_pulls_in_neither_tensorflow_nor_aiohttp() -> None:
    """Training jobs pay nothing for importing hubcache."""
    code = "import sys, hubcache; print([m for m in ('tensorflow', 'aiohttp') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cached_resolve_needs_no_aiohttp(origin: Origin, models: dict[str, Model]) -> None:
    """A cache hit is answered from the directory without starting the download machinery."""
    url = origin.put("alpha", models["alpha"].tarball)
    assert run_cli("prefetch", url).returncode == 0
    code = (
        "import sys, hubcache; p = hubcache.resolve(sys.argv[1]);print('aiohttp' in sys.modules, p)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
    )
    assert done.stdout.split()[0] == "False"


def test_usage_errors_exit_2() -> None:
    """Bad command lines are usage errors, not failures."""
    assert run_cli().returncode == 2
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("resolve").returncode == 2


def test_bad_handle_exits_1_with_one_line() -> None:
    """A handle of no accepted form: exit 1, one line naming it and the accepted forms."""
    done = run_cli("resolve", "ftp://example.com/model")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "ftp://example.com/model" in done.stderr


def test_local_directory_is_returned_unchanged(tmp_path: Path, cache_dir: Path) -> None:
    """A local model directory is used where it is: never copied into the cache."""
    assert hubcache.resolve(str(tmp_path)) == str(tmp_path)
    assert not cache_dir.exists() or not any(p.name != ".hubcache" for p in cache_dir.iterdir())


def test_prefetch_json_and_ls_and_rm(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """prefetch --json reports each model; rm by handle or key removes model and descriptor."""
    a = origin.put("alpha", models["alpha"].tarball)
    b = origin.put("beta", models["beta"].tarball)
    done = run_cli("prefetch", "--json", a, b)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["handle"], r["key"], r["source"]) for r in rows] == [
        (a, cache_key(a), "download"), (b, cache_key(b), "download")]  # fmt: skip
    listed = json.loads(run_cli("ls", "--json").stdout)
    assert sorted(e["handle"] for e in listed) == sorted([a, b])
    assert run_cli("rm", a, cache_key(b)).returncode == 0
    assert json.loads(run_cli("ls", "--json").stdout) == []
    assert [p.name for p in cache_dir.iterdir()] == [".hubcache"]
    missing = run_cli("rm", a)
    assert missing.returncode == 1 and a in missing.stderr and "not in the cache" in missing.stderr


def test_ls_survives_a_lost_index(
    origin: Origin, models: dict[str, Model], cache_dir: Path
) -> None:
    """The index is derived data: deleted, it is rebuilt from the descriptors."""
    url = origin.put("alpha", models["alpha"].tarball)
    assert run_cli("prefetch", url).returncode == 0
    for path in (cache_dir / ".hubcache").glob("index.sqlite*"):
        path.unlink()
    listed = json.loads(run_cli("ls", "--json").stdout)
    assert [e["handle"] for e in listed] == [url]


def test_partial_failure_reports_each_handle(origin: Origin, models: dict[str, Model]) -> None:
    """prefetch of a good and a bad handle: the good one lands, exit 1, one line for the bad."""
    good = origin.put("alpha", models["alpha"].tarball)
    bad = origin.url("missing")
    done = run_cli("prefetch", good, bad)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and bad in done.stderr
    assert done.stdout.startswith(good)


def test_error_codes_map_back_to_classes() -> None:
    """Every error class has a distinct stable code that maps back to it."""
    classes = [cls for cls in vars(hubcache).values()
               if isinstance(cls, type) and issubclass(cls, HubcacheError)]  # fmt: skip
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    assert all(error_class(cls.code) is cls for cls in classes)
