"""A model's fingerprint, without TensorFlow.

SavedModels written by TensorFlow ≥ 2.12 carry ``fingerprint.pb``: a ``FingerprintDef`` whose
fields 1-5 are uint64 hashes (saved_model checksum, graph, signatures, object graph, checkpoint).
We read those varints directly. Without that file (TF1 Hub modules, older SavedModels), the
fingerprint is a sha256 over (relative path, file sha256) in path order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

FINGERPRINT_FILE = "fingerprint.pb"
_FIELDS = range(1, 6)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def parse_fingerprint_pb(data: bytes) -> dict[int, int]:
    """The uint64 fields 1-5 of a serialized ``FingerprintDef`` (others are skipped)."""
    fields: dict[int, int] = {}
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(data, at)
            if number in _FIELDS:
                fields[number] = value
        elif wire == 2:
            length, at = _varint(data, at)
            at += length
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if at != len(data):
        raise ValueError("truncated field")
    return fields


def from_fingerprint_pb(data: bytes) -> str | None:
    try:
        fields = parse_fingerprint_pb(data)
    except ValueError:
        return None
    if not fields:
        return None
    return "tf:" + "-".join(f"{fields.get(n, 0):016x}" for n in _FIELDS)


def from_hashes(hashes: Mapping[str, str]) -> str:
    """sha256 over each (relative path, file sha256), in path order."""
    digest = hashlib.sha256()
    for path in sorted(hashes):
        digest.update(f"{path}\0{hashes[path]}\n".encode())
    return "sha256:" + digest.hexdigest()


def fingerprint_pb(root: Path) -> str | None:
    """The fingerprint from the model's ``fingerprint.pb``, if it has a readable one."""
    try:
        return from_fingerprint_pb((root / FINGERPRINT_FILE).read_bytes())
    except OSError:
        return None


def fingerprint(root: Path, hashes: Mapping[str, str]) -> str:
    """``fingerprint.pb`` when the model has a readable one, else the content hash."""
    return fingerprint_pb(root) or from_hashes(hashes)
