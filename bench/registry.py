"""One small generic registry for methods, datasets, metrics and models.

Components register themselves in their own file (``@METHODS.register("prefix")``); the
packages ``bench.methods``, ``bench.datasets`` and ``bench.metrics`` import their modules
explicitly in their ``__init__``, so a registry is never filled as a side effect of some
unrelated import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from bench.errors import BenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> component. Duplicate names are errors; unknown names get a did-you-mean."""

    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        # the package whose modules register this kind (None: methods, datasets and metrics)
        self.package = package
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise BenchError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}") from None

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def _ensure_loaded(self) -> None:
        # The registries are filled by importing their packages; do it here so a lookup
        # never sees a half-filled registry, and still explicitly (one import per package).
        if self.package is not None:
            importlib.import_module(self.package)
            return
        _load_all()


METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")
METRICS: Registry = Registry("metric")
# Experiment trackers (``--log-to``): their package is light (each tracker imports its library
# when a run starts), so naming one never loads the methods' torch code.
TRACKERS: Registry = Registry("tracker", package="bench.trackers")

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import bench.datasets
    import bench.methods
    import bench.metrics  # noqa: F401
