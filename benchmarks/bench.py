"""hubcache vs tensorflow_hub, side by side in one run (``make bench``; never in ``make test``).

A SavedModel-shaped tarball of ``--size`` MB of float32 weights is served from a local origin
(optionally capped per connection). Rounds alternate the tools; every cold fetch starts from an
empty cache. Each tool is timed inside its own process around the call only (imports excluded).
Results are printed and written to ``docs/benchmarks.md`` as medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hubcache.client import Client, DaemonUnavailable  # noqa: E402
from tests.origin import Origin  # noqa: E402

HUB_TIMED = """
import sys, time, tensorflow_hub as hub
t = time.perf_counter(); hub.resolve(sys.argv[1]); print(time.perf_counter() - t)
"""
HUBCACHE_TIMED = """
import sys, time, hubcache.cli, hubcache.pipeline  # imported lazily by the CLI: not timed
t = time.perf_counter(); hubcache.cli.main(["prefetch", sys.argv[1]])
print(time.perf_counter() - t)
"""
RESOLVER = "import sys, hubcache; hubcache.resolve(sys.argv[1])"


def build_tarball(size_mb: int, cache: Path) -> bytes:
    """saved_model.pb + variables/ with ``size_mb`` MB of float32 normal noise, gzipped."""
    path = cache / f"model-{size_mb}mb.tar.gz"
    if path.exists():
        return path.read_bytes()
    weights = np.random.default_rng(0).standard_normal(size_mb * (1 << 20) // 4, dtype=np.float32)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for directory in ("./", "./variables"):  # real tarballs list them; hub relies on it
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in (
            ("./saved_model.pb", np.random.default_rng(1).bytes(256 << 10)),
            ("./variables/variables.index", np.random.default_rng(2).bytes(4 << 10)),
            ("./variables/variables.data-00000-of-00001", weights.tobytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@dataclass
class Env:
    """A fresh cache directory and the environment every tool in a measurement shares."""

    root: Path
    socket: Path | None = None
    vars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, base: Path, name: str, socket: Path | None = None) -> Env:
        root = base / f"{name}-{time.monotonic_ns()}"
        root.mkdir(parents=True)
        config = root / "hubcache.toml"
        config.write_text("min_free = 0\n")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(
            TFHUB_CACHE_DIR=str(root / "cache"),
            HUBCACHE_CONFIG=str(config),
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONPATH=str(ROOT),
        )
        if socket is None:
            env["HUBCACHE_NO_DAEMON"] = "1"
        else:
            env["HUBCACHE_SOCKET"] = str(socket)
        return cls(root, socket, env)

    def run(self, code: str, *args: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.vars, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{code.strip().splitlines()[0]} failed:\n{done.stderr[-3000:]}")
        return float(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def daemon(env: Env) -> Iterator[subprocess.Popen[bytes]]:
    assert env.socket is not None
    process = subprocess.Popen(
        [sys.executable, "-m", "hubcache", "daemon"], env=env.vars,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = Client(env.socket)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.health()
            break
        except (DaemonUnavailable, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cold_rounds(origin: Origin, url: str, base: Path, rounds: int) -> dict[str, list[float]]:
    """Alternate the three cold fetches; each in an empty cache."""
    times: dict[str, list[float]] = {"hub": [], "inproc": [], "daemon": [], "rss": []}
    for i in range(rounds):
        order = ["hub", "inproc", "daemon"] if i % 2 == 0 else ["daemon", "inproc", "hub"]
        for tool in order:
            if tool == "hub":
                times["hub"].append(Env.fresh(base, "hub").run(HUB_TIMED, url))
            elif tool == "inproc":
                times["inproc"].append(Env.fresh(base, "inproc").run(HUBCACHE_TIMED, url))
            else:
                env = Env.fresh(base, "daemon", base / f"d{i}.sock")
                with daemon(env) as process:
                    times["daemon"].append(env.run(HUBCACHE_TIMED, url))
                    times["rss"].append(peak_rss_mb(process.pid))
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True, exist_ok=True)
            print(f"  round {i + 1} {tool}: {times[tool][-1]:.2f}", file=sys.stderr)
    return times


def warm_and_crowd(
    origin: Origin, url: str, base: Path, clients: int, size: int
) -> dict[str, float]:
    """Warm resolve latency through the daemon, then N concurrent cold resolvers."""
    results: dict[str, float] = {}
    env = Env.fresh(base, "warm", base / "w.sock")
    with daemon(env):
        env.run(HUBCACHE_TIMED, url)
        client = Client(env.socket)  # type: ignore[arg-type]
        latencies = []
        for _ in range(2000):
            started = time.perf_counter()
            client.resolve(url)
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        results["warm_p50_ms"] = latencies[len(latencies) // 2]
        results["warm_p99_ms"] = latencies[int(len(latencies) * 0.99)]
        walls = []
        for _ in range(20):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hubcache", "resolve", url], env=env.vars,
                           capture_output=True, check=True)  # fmt: skip
            walls.append((time.perf_counter() - started) * 1000)
        results["cli_ms"] = median(walls)
    crowd = Env.fresh(base, "crowd", base / "c.sock")
    with daemon(crowd) as process:
        before = len(origin.log)
        started = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-c", RESOLVER, url], env=crowd.vars)
            for _ in range(clients)
        ]
        assert all(p.wait(600) == 0 for p in procs)
        results["crowd_wall_s"] = time.perf_counter() - started
        results["crowd_origin_ratio"] = sum(s.sent for s in origin.log[before:]) / size
        results["crowd_rss_mb"] = peak_rss_mb(process.pid)
    return results


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1 << 20)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB RAM, Python {platform.python_version()}"


def scenario(args: argparse.Namespace, rate_mbps: float | None, base: Path) -> dict[str, object]:
    tarball = build_tarball(args.size, ROOT / "benchmarks" / ".cache")
    origin = Origin(chunk=1 << 20).start()
    try:
        rate = rate_mbps * 1e6 if rate_mbps else None
        url = origin.put("model", tarball, rate=rate)
        print(f"scenario: per-connection cap {rate_mbps or 'none'} MB/s", file=sys.stderr)
        cold = cold_rounds(origin, url, base, args.rounds)
        extra = warm_and_crowd(origin, url, base, args.clients, len(tarball)) if not rate else {}
        return {"cap_mbps": rate_mbps, "tarball_bytes": len(tarball), **cold, **extra}
    finally:
        origin.stop()


def double_size_rss(args: argparse.Namespace, base: Path) -> float:
    tarball = build_tarball(args.size * 2, ROOT / "benchmarks" / ".cache")
    origin = Origin(chunk=1 << 20).start()
    try:
        url = origin.put("model2x", tarball)
        env = Env.fresh(base, "double", base / "x.sock")
        with daemon(env) as process:
            env.run(HUBCACHE_TIMED, url)
            return peak_rss_mb(process.pid)
    finally:
        origin.stop()


def report(args: argparse.Namespace, runs: list[dict[str, object]], rss_2x: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{' '.join(['python', 'benchmarks/bench.py', *sys.argv[1:]])}`"
        f" (what `make bench` runs) on {time.strftime('%Y-%m-%d')}.",
        f"Machine: {machine()}. Model: {args.size} MB of float32 weights, "
        f"gzip tarball of {runs[0]['tarball_bytes']:,} bytes, served from 127.0.0.1.",
        f"Medians of {args.rounds} alternating rounds; each cold fetch into an empty cache; "
        "each tool timed around the call only (imports excluded).",
        "",
        "| scenario | tensorflow_hub | hubcache in-process | ratio | hubcache via daemon | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        hub, inproc, via = (median(run[k]) for k in ("hub", "inproc", "daemon"))  # type: ignore[arg-type]
        cap = f"{run['cap_mbps']} MB/s per connection" if run["cap_mbps"] else "loopback, no cap"
        lines.append(
            f"| cold fetch, {cap} | {hub:.2f} s | {inproc:.2f} s | {inproc / hub:.2f}x "
            f"| {via:.2f} s | {via / hub:.2f}x |"
        )
    first = runs[0]
    lines += [
        "",
        "| measure | result |",
        "|---|---|",
        f"| warm resolve through the daemon, p50 / p99 | {first['warm_p50_ms']:.2f} ms / "
        f"{first['warm_p99_ms']:.2f} ms |",
        f"| whole `hubcache resolve` process (warm, median of 20) | {first['cli_ms']:.0f} ms |",
        f"| {args.clients} concurrent cold resolvers: wall | {first['crowd_wall_s']:.2f} s = "
        f"{first['crowd_wall_s'] / median(first['daemon']):.2f}x a single fetch |",  # type: ignore[arg-type, operator]
        f"| {args.clients} concurrent cold resolvers: origin bytes | "
        f"{first['crowd_origin_ratio']:.3f}x the tarball |",
        f"| daemon peak RSS during a cold fetch ({args.size} MB) | {max(first['rss']):.0f} MB |",  # type: ignore[call-overload]
        f"| daemon peak RSS, {args.clients} resolvers | {first['crowd_rss_mb']:.0f} MB |",
        f"| daemon peak RSS, model twice the size ({args.size * 2} MB) | {rss_2x:.0f} MB |",
        "",
        "Raw numbers (seconds, MB):",
        "",
        "```json",
        json.dumps(runs, indent=1, default=float),
        "```",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=800, help="weights in MB (default 800)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-conn-mbps", type=float, default=25.0,
                        help="cap for the second scenario; 0 skips it")  # fmt: skip
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hcb-", dir="/tmp"))
    try:
        runs = [scenario(args, None, base)]
        if args.per_conn_mbps:
            runs.append(scenario(args, args.per_conn_mbps, base))
        rss_2x = double_size_rss(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = report(args, runs, rss_2x)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
