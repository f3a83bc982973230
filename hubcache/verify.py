"""Is a directory a complete model? The shape of a SavedModel / TF1 Hub module, and a manifest.

A manifest maps each file's relative path to its size; it is taken when a model is published
(or adopted) and lets a resolve notice files that a temp cleaner deleted or truncated since.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")
_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")

Manifest = dict[str, int]


def take_manifest(root: Path) -> Manifest:
    manifest: Manifest = {}
    for parent, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(parent, name)
            manifest[os.path.relpath(full, root)] = os.lstat(full).st_size
    return manifest


def shape_problems(root: Path) -> list[str]:
    """What keeps ``root`` from being a loadable model, judged from its shape alone."""
    if not root.is_dir():
        return ["directory is missing"]
    problems = []
    if not any((root / name).is_file() for name in MODEL_FILES):
        problems.append("not a SavedModel: no " + ", ".join(MODEL_FILES))
    variables = root / "variables"
    if variables.is_dir():
        names = set(os.listdir(variables))
        shards = [match for match in map(_SHARD.match, names) if match]
        if shards and "variables.index" not in names:
            problems.append("variables/variables.index is missing")
        if "variables.index" in names:
            count = int(shards[0].group(2)) if shards else 1
            for i in range(count):
                shard = f"variables.data-{i:05d}-of-{count:05d}"
                if shard not in names:
                    problems.append(f"variables/{shard} is missing")
    return problems


def manifest_problems(root: Path, manifest: Mapping[str, int]) -> list[str]:
    """Files of the manifest that are gone or changed size."""
    problems = []
    for relative, size in manifest.items():
        try:
            actual = os.lstat(root / relative).st_size
        except FileNotFoundError:
            problems.append(f"{relative} is missing")
            continue
        if actual != size:
            problems.append(f"{relative} has {actual} bytes, expected {size}")
    return problems


def model_problems(root: Path, manifest: Mapping[str, int] | None = None) -> list[str]:
    """Everything wrong with the model at ``root``; empty means complete."""
    problems = shape_problems(root)
    if manifest and problems != ["directory is missing"]:
        problems += [p for p in manifest_problems(root, manifest) if p not in problems]
    return problems
