"""hubcache: a shared, resumable, tensorflow_hub-compatible model cache.

``import hubcache`` imports neither TensorFlow nor aiohttp: cache hits are answered from the
directory, downloads start the asyncio pipeline on demand, and only :func:`load` needs TensorFlow.
"""

from hubcache.api import load, prefetch, resolve
from hubcache.errors import (
    ArchiveError,
    ArchiveLimitError,
    CacheError,
    CacheFullError,
    ConfigError,
    FetchError,
    HandleError,
    HTTPStatusError,
    HubcacheError,
    IntegrityError,
    LockTimeoutError,
    NotAModelError,
    NotCachedError,
    UnsafeArchiveError,
)

__version__ = "0.1.0"


def install() -> object:
    """Make ``tensorflow_hub`` resolve http(s) handles through hubcache (imports TensorFlow)."""
    from hubcache.hub import install as _install  # noqa: PLC0415

    return _install()


def KerasLayer(handle: str, **kwargs: object) -> object:
    """``hub.KerasLayer`` for a handle resolved through hubcache (imports TensorFlow)."""
    from hubcache.hub import keras_layer  # noqa: PLC0415

    return keras_layer(handle, **kwargs)


__all__ = [
    "ArchiveError",
    "ArchiveLimitError",
    "CacheError",
    "CacheFullError",
    "ConfigError",
    "FetchError",
    "HTTPStatusError",
    "HandleError",
    "HubcacheError",
    "IntegrityError",
    "KerasLayer",
    "LockTimeoutError",
    "NotAModelError",
    "NotCachedError",
    "UnsafeArchiveError",
    "__version__",
    "install",
    "load",
    "prefetch",
    "resolve",
]
