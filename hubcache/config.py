"""Settings: resolved once into frozen dataclasses, then passed down explicitly.

Precedence: flag > environment > TOML file > defaults. Unknown keys are an error naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from hubcache.errors import ConfigError
from hubcache.handles import Mirror

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes from ``"20GiB"``, ``"500MB"``, ``"1.5G"`` or a plain integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ConfigError(f"not a size: {value!r} (use bytes or e.g. '500MB', '20GiB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True, slots=True)
class MinFree:
    """Free space to keep on the cache's filesystem: a fraction of it, or a number of bytes."""

    fraction: float = 0.0
    bytes: int = 0

    @classmethod
    def parse(cls, value: object) -> MinFree:
        text = str(value).strip()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                raise ConfigError(f"not a percentage: {value!r}") from None
            if not 0 <= percent < 100:
                raise ConfigError(f"min_free must be below 100%: {value!r}")
            return cls(fraction=percent / 100)
        return cls(bytes=parse_size(value))


@dataclass(frozen=True, slots=True)
class DownloadSettings:
    max_concurrent: int = 4
    connections: int = 8
    retries: int = 8
    stall_seconds: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    min_chunk: int = 4 << 20
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class Limits:
    max_model_bytes: int = 64 * 2**30
    max_ratio: float = 100.0
    max_members: int = 100_000


@dataclass(frozen=True, slots=True)
class Settings:
    cache_dir: Path
    socket: Path
    socket_mode: int = 0o660
    max_size: int = 200 * 2**30
    min_free: MinFree = field(default_factory=lambda: MinFree(fraction=0.10))
    lease_seconds: float = 3600.0
    lock_stale_seconds: float = 60.0
    gc_interval_seconds: float = 300.0
    pins: tuple[str, ...] = ()
    offline: bool = False
    no_daemon: bool = False
    download: DownloadSettings = field(default_factory=DownloadSettings)
    limits: Limits = field(default_factory=Limits)
    mirrors: tuple[Mirror, ...] = ()


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"expected a positive integer, got {value!r}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"expected a number of seconds, got {value!r}")
    return float(value)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {value!r}")
    return value


def _mode(value: object) -> int:
    try:
        return int(str(value), 8)
    except ValueError:
        raise ConfigError(f"expected an octal mode like '0660', got {value!r}") from None


def _pins(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of handles, got {value!r}")
    return tuple(value)


def _mirrors(value: object) -> tuple[Mirror, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"expected [[mirrors]] tables, got {value!r}")
    mirrors = []
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConfigError(f"mirrors[{i}] is not a table")
        _reject_unknown(table, {"prefix", "url"}, f"mirrors[{i}].")
        try:
            mirrors.append(Mirror(prefix=_string(table["prefix"]), url=_string(table["url"])))
        except KeyError as missing:
            raise ConfigError(f"mirrors[{i}] needs {missing}") from None
    return tuple(mirrors)


Parser = Callable[[object], Any]
_TOP: dict[str, Parser] = {
    "cache_dir": lambda v: Path(_string(v)).expanduser(),
    "socket": lambda v: Path(_string(v)).expanduser(),
    "socket_mode": _mode,
    "max_size": parse_size,
    "min_free": MinFree.parse,
    "lease_seconds": _seconds,
    "lock_stale_seconds": _seconds,
    "gc_interval_seconds": _seconds,
    "pins": _pins,
    "mirrors": _mirrors,
}
_DOWNLOAD: dict[str, Parser] = {
    "max_concurrent": _positive_int,
    "connections": _positive_int,
    "retries": lambda v: _positive_int(v) if v != 0 else 0,
    "stall_seconds": _seconds,
    "backoff_initial": _seconds,
    "backoff_max": _seconds,
    "min_chunk": parse_size,
    "ca_file": _string,
}
_LIMITS: dict[str, Parser] = {
    "max_model_bytes": parse_size,
    "max_ratio": _seconds,
    "max_members": _positive_int,
}


def _reject_unknown(table: Mapping[str, object], known: set[str], prefix: str = "") -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown config key {prefix}{key!r}")


def _parse_table(
    table: Mapping[str, object], parsers: dict[str, Parser], prefix: str
) -> dict[str, Any]:
    _reject_unknown(table, set(parsers), prefix)
    parsed = {}
    for key, value in table.items():
        try:
            parsed[key] = parsers[key](value)
        except ConfigError as error:
            raise ConfigError(f"config key {prefix}{key}: {error.message}") from None
    return parsed


def settings_from_mapping(data: Mapping[str, Any], base: Settings) -> Settings:
    """``base`` updated with a parsed TOML document; unknown keys raise :class:`ConfigError`."""
    top = {k: v for k, v in data.items() if k not in ("download", "limits")}
    values = _parse_table(top, _TOP, "")
    for name, parsers in (("download", _DOWNLOAD), ("limits", _LIMITS)):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config key {name!r} must be a table")
        section = getattr(base, name)
        values[name] = replace(section, **_parse_table(table, parsers, f"{name}."))
    return replace(base, **values)


def default_config_file(environ: Mapping[str, str]) -> Path | None:
    if environ.get("HUBCACHE_CONFIG"):
        return Path(environ["HUBCACHE_CONFIG"])
    for candidate in (
        Path(platformdirs.user_config_dir("hubcache")) / "config.toml",
        Path("/etc/hubcache/config.toml"),
    ):
        if candidate.is_file():
            return candidate
    return None


def default_socket(environ: Mapping[str, str]) -> Path:
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime, "hubcache", "hubcache.sock")
    return Path("/run/hubcache/hubcache.sock")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_settings(
    *,
    config_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    socket: str | Path | None = None,
    no_daemon: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags (the arguments), the environment, a TOML file and defaults."""
    env = os.environ if environ is None else environ
    settings = Settings(
        cache_dir=Path(platformdirs.user_cache_dir("hubcache")), socket=default_socket(env)
    )
    path = Path(config_file) if config_file else default_config_file(env)
    if path is not None:
        try:
            with path.open("rb") as stream:
                settings = settings_from_mapping(tomllib.load(stream), settings)
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    overrides: dict[str, Any] = {}
    if env.get("TFHUB_CACHE_DIR"):
        overrides["cache_dir"] = Path(env["TFHUB_CACHE_DIR"]).expanduser()
    if env.get("HUBCACHE_SOCKET"):
        overrides["socket"] = Path(env["HUBCACHE_SOCKET"])
    if _truthy(env.get("HUBCACHE_OFFLINE")):
        overrides["offline"] = True
    if _truthy(env.get("HUBCACHE_NO_DAEMON")):
        overrides["no_daemon"] = True
    if cache_dir:
        overrides["cache_dir"] = Path(cache_dir).expanduser()
    if socket:
        overrides["socket"] = Path(socket)
    if no_daemon:
        overrides["no_daemon"] = True
    settings = replace(settings, **overrides)
    return replace(settings, cache_dir=settings.cache_dir.absolute())


def setting_names() -> list[str]:
    """Every key a config file may hold, dotted (for docs and tests)."""
    top = [f.name for f in fields(Settings) if f.name in _TOP]
    return top + [f"download.{k}" for k in _DOWNLOAD] + [f"limits.{k}" for k in _LIMITS]
