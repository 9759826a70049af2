"""Where assets come from. Each module of this package that defines `SOURCES` (a tuple of
`base.Source` instances) adds its kinds; `get(kind)` finds one. Adding a source is one module here and
one test file: the config, the driver, the command line and the dataset card reach it through
`Source`'s methods and attributes only.
"""
from __future__ import annotations

import importlib
import pkgutil

from curation.sources.base import AssetTask, Source
from curation.sources.generated import write_demo_assets, write_procedural_assets

__all__ = ["AssetTask", "Source", "all_sources", "get", "kinds", "write_demo_assets", "write_procedural_assets"]

_REGISTRY: dict[str, Source] = {}


def _registry() -> dict[str, Source]:
    if not _REGISTRY:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{__name__}.{info.name}")
            for source in getattr(module, "SOURCES", ()):
                if source.kind in _REGISTRY:
                    raise RuntimeError(f"source kind {source.kind!r} defined twice ({module.__name__})")
                _REGISTRY[source.kind] = source
    return _REGISTRY


def kinds() -> tuple[str, ...]:
    return tuple(_registry())


def all_sources() -> tuple[Source, ...]:
    return tuple(_registry().values())


def get(kind: str) -> Source:
    try:
        return _registry()[kind]
    except KeyError:
        raise ValueError(f"no source kind {kind!r} (have: {', '.join(kinds())})") from None
