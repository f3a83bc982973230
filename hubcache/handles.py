"""Model handles: what a handle is, its cache key, and where its tarball is downloaded from.

Pure functions over strings, except :func:`classify`, which asks the filesystem whether a
handle names an existing local directory. The rules copy tensorflow_hub's so that both tools
agree on keys and URLs.
"""

from __future__ import annotations

import enum
import hashlib
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from hubcache.errors import HandleError

COMPRESSED_QUERY = ("tf-hub-format", "compressed")
HUB_CN_PREFIX = "https://hub.tensorflow.google.cn/"
GCS_CN_TEMPLATE = "https://gcs.tensorflow.google.cn/tfhub-modules/{}.tar.gz"
ACCEPTED_FORMS = "an http(s):// model URL, an existing local directory, or a gs:// path"


class HandleKind(enum.Enum):
    REMOTE = "remote"  # downloaded into the cache
    LOCAL = "local"  # used where it is: never copied, never sent to the daemon


@dataclass(frozen=True, slots=True)
class Mirror:
    """Handles starting with ``prefix`` are fetched from ``url`` + the rest, before the origin."""

    prefix: str
    url: str


def cache_key(handle: str) -> str:
    """The cache directory name of ``handle``: sha1 of the handle exactly as given."""
    return hashlib.sha1(handle.encode("utf8")).hexdigest()  # noqa: S324 - tensorflow_hub's key


def is_remote(handle: str) -> bool:
    parsed = urllib.parse.urlparse(handle)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def classify(handle: str) -> HandleKind:
    """Tell a downloadable handle from a local one; anything else is a :class:`HandleError`."""
    if not isinstance(handle, str) or not handle.strip():
        raise HandleError(f"empty handle; expected {ACCEPTED_FORMS}", repr(handle))
    if is_remote(handle):
        return HandleKind.REMOTE
    if handle.startswith("gs://") or os.path.isdir(handle):
        return HandleKind.LOCAL
    if handle.startswith(("http://", "https://")):
        raise HandleError(f"URL has no host; expected {ACCEPTED_FORMS}", handle)
    raise HandleError(f"not a URL or an existing directory; expected {ACCEPTED_FORMS}", handle)


def append_compressed_query(url: str) -> str:
    """Add ``tf-hub-format=compressed`` to the query exactly as tensorflow_hub does."""
    parsed = list(urllib.parse.urlparse(url))
    query = urllib.parse.parse_qsl(parsed[4])
    query.append(COMPRESSED_QUERY)
    parsed[4] = urllib.parse.urlencode(query)
    return urllib.parse.urlunparse(parsed)


def origin_url(handle: str) -> str:
    """The URL tensorflow_hub itself would fetch for ``handle``."""
    if not is_remote(handle):
        raise HandleError(f"cannot be downloaded; expected {ACCEPTED_FORMS}", handle)
    if handle.startswith(HUB_CN_PREFIX):
        return GCS_CN_TEMPLATE.format(handle[len(HUB_CN_PREFIX) :])
    return append_compressed_query(handle)


def download_urls(handle: str, mirrors: Sequence[Mirror] = ()) -> list[str]:
    """Every URL to try for ``handle``, in order: matching mirrors first, the origin last."""
    urls = [
        append_compressed_query(mirror.url + handle[len(mirror.prefix) :])
        for mirror in mirrors
        if handle.startswith(mirror.prefix)
    ]
    urls.append(origin_url(handle))
    return urls
