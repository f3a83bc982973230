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
    "LockTimeoutError",
    "NotAModelError",
    "NotCachedError",
    "UnsafeArchiveError",
    "__version__",
    "load",
    "prefetch",
    "resolve",
]
