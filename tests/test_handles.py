"""Handles: keys and URLs exactly as tensorflow_hub computes them (DESIGN §2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hubcache.errors import HandleError
from hubcache.handles import (
    HandleKind,
    Mirror,
    append_compressed_query,
    cache_key,
    classify,
    download_urls,
    origin_url,
)

URLS = [
    "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5",
    "https://tfhub.dev/google/model/1?foo=bar",
    "https://www.kaggle.com/models/google/bert/TensorFlow2/en-uncased/3?a=1&a=2&b=%20x",
    "http://example.com/m?tf-hub-format=uncompressed#frag",
    "https://example.com/path;params?q=%E2%82%AC",
]


@pytest.mark.parametrize("url", URLS)
def test_compressed_query_matches_tensorflow_hub(url: str) -> None:
    """The download URL is byte-identical to what tensorflow_hub's resolver requests."""
    from tensorflow_hub.resolver import HttpResolverBase

    hub_url = HttpResolverBase._append_format_query(None, url, ("tf-hub-format", "compressed"))
    assert append_compressed_query(url) == hub_url
    assert origin_url(url) == hub_url


def test_cache_key_is_sha1_of_the_exact_handle() -> None:
    """No normalisation: a trailing slash is another key, as in tensorflow_hub."""
    handle = "https://tfhub.dev/google/model/1"
    assert cache_key(handle) == hashlib.sha1(handle.encode("utf8")).hexdigest()
    assert cache_key(handle) != cache_key(handle + "/")


def test_china_mirror_rule() -> None:
    """hub.tensorflow.google.cn handles fetch the GCS tarball directly, as tensorflow_hub does."""
    handle = "https://hub.tensorflow.google.cn/google/bert/1"
    assert (
        origin_url(handle) == "https://gcs.tensorflow.google.cn/tfhub-modules/google/bert/1.tar.gz"
    )


def test_local_directories_and_gcs_are_returned_unchanged(tmp_path: Path) -> None:
    """Existing directories and gs:// paths are local handles: never downloaded."""
    assert classify(str(tmp_path)) is HandleKind.LOCAL
    assert classify("gs://bucket/models/m") is HandleKind.LOCAL
    assert classify("https://tfhub.dev/x/1") is HandleKind.REMOTE


@pytest.mark.parametrize(
    "bad", ["", "   ", "ftp://host/m", "file:///etc", "/no/such/dir", "https://"]
)
def test_anything_else_is_a_handle_error_naming_the_forms(bad: str) -> None:
    """The error names the handle and lists the accepted forms."""
    with pytest.raises(HandleError) as caught:
        classify(bad)
    assert "http(s)://" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_mirrors_are_tried_before_the_origin() -> None:
    """A matching [[mirrors]] prefix rewrites the URL; the origin stays the last resort."""
    mirrors = [Mirror("https://tfhub.dev/", "http://mirror.internal/tfhub/"),
               Mirror("https://other/", "http://nope/")]  # fmt: skip
    urls = download_urls("https://tfhub.dev/google/m/1", mirrors)
    assert urls == [
        "http://mirror.internal/tfhub/google/m/1?tf-hub-format=compressed",
        "https://tfhub.dev/google/m/1?tf-hub-format=compressed",
    ]
