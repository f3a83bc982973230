"""Configuration: names, precedence and validation (DESIGN §8)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hubcache.config import MinFree, load_settings, parse_size, setting_names
from hubcache.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_sizes() -> None:
    """Sizes accept bytes and SI/IEC suffixes."""
    assert parse_size(123) == 123
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("20GiB") == 20 * 2**30
    assert parse_size("1.5G") == int(1.5 * 2**30)
    with pytest.raises(ConfigError):
        parse_size("lots")
    assert MinFree.parse("10%") == MinFree(fraction=0.1)


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    """flag > environment > TOML > defaults."""
    config = tmp_path / "c.toml"
    config.write_text('cache_dir = "/from/file"\nmax_size = "1GiB"\n[download]\nconnections = 3\n')
    env = {"HUBCACHE_CONFIG": str(config)}
    settings = load_settings(environ=env)
    assert (str(settings.cache_dir), settings.max_size, settings.download.connections) == (
        "/from/file", 2**30, 3)  # fmt: skip
    env["TFHUB_CACHE_DIR"] = "/from/env"
    assert str(load_settings(environ=env).cache_dir) == "/from/env"
    assert str(load_settings(environ=env, cache_dir="/from/flag").cache_dir) == "/from/flag"


@pytest.mark.parametrize(
    "text", ["colour = 1\n", "[download]\nconections = 2\n", "[limits]\nx = 1\n"]
)
def test_unknown_keys_are_an_error_naming_the_key(tmp_path: Path, text: str) -> None:
    """A typo in the config file is reported, not ignored."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    key = text.split("=", 1)[0].rsplit("\n", 1)[-1].strip()
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={"HUBCACHE_CONFIG": str(config)})


def test_example_config_documents_every_key_and_loads() -> None:
    """config.example.toml names every key and is itself a valid config."""
    example = ROOT / "config.example.toml"
    data = tomllib.loads(example.read_text())
    documented = set(data) | {f"{s}.{k}" for s in ("download", "limits") for k in data[s]}
    assert set(setting_names()) - {"mirrors"} <= documented
    assert "[[mirrors]]" in example.read_text()  # shown commented out: there is no default mirror
    load_settings(environ={"HUBCACHE_CONFIG": str(example)})
