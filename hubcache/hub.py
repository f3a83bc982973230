"""tensorflow_hub integration: route ``hub.load`` / ``hub.KerasLayer`` / ``hub.resolve`` through
hubcache, and a ``KerasLayer`` that holds a lease while it loads. Imports TensorFlow; nothing else
in hubcache does except ``hubcache.load``."""

from __future__ import annotations

from typing import Any

from hubcache.api import resolve
from hubcache.config import load_settings
from hubcache.handles import HandleKind, cache_key, classify, is_remote
from hubcache.layout import Layout
from hubcache.leases import held


class HubcacheResolver:
    """A tensorflow_hub resolver: http(s) handles go through hubcache (daemon or in-process)."""

    def is_supported(self, handle: object) -> bool:
        return isinstance(handle, str) and is_remote(handle)

    def __call__(self, handle: str) -> str:
        return resolve(handle)


def install() -> HubcacheResolver:
    """Register hubcache with tensorflow_hub (the last registered resolver is asked first)."""
    from tensorflow_hub import registry  # noqa: PLC0415

    resolver = HubcacheResolver()
    registry.resolver.add_implementation(resolver)
    return resolver


def keras_layer(handle: str, **kwargs: Any) -> Any:
    """``hub.KerasLayer`` on the resolved path; leased while TensorFlow loads it."""
    import tensorflow_hub as hub  # noqa: PLC0415

    if classify(handle) is HandleKind.LOCAL:
        return hub.KerasLayer(handle, **kwargs)
    settings = load_settings()
    with held(Layout(settings.cache_dir), cache_key(handle)):
        return hub.KerasLayer(resolve(handle, settings), **kwargs)
