"""Package re-exports imported when first asked for (PEP 562's module ``__getattr__``).

A package whose ``__init__`` re-exports its modules' names would import them all whenever any
one module of it is imported: the registry imports ``drivers.gpio.spec`` and the site config
``agent.energy.config`` for every site, and that must not load the GPIO driver (and gpiozero)
or the energy reports for a site without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` that imports each name of ``where`` (name: module)
    from its module on first use."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
