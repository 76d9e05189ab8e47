"""One object for equal per-point data of many devices.

Most meters of a site repeat one point layout (every meter of a type takes its profile's points,
and agent/config/sharing.py makes equal point configs one object), so their planned reads,
decoder layouts and plan-cache keys are equal too. Built per device they held about 4 MB at
200 meters x 35 points (bench/mem_sources.py); kept here by content they are held once.

An entry lives as long as some device uses its object (a weak table): a config reload that
drops every device drops what they shared. Keys name points by ``id()``; that is sound because
the shared object holds those points, so no other object can take their ids while the entry
exists.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SharedTable"]

T = TypeVar("T")


class SharedTable(Generic[T]):
    """Objects by a key of their content: ``get(key, make)`` gives the one made for an equal
    key while it is still in use anywhere, or makes and keeps (weakly) a new one."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: weakref.WeakValueDictionary[Hashable, T] = weakref.WeakValueDictionary()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        found = self._table.get(key)
        if found is None:
            found = self._table[key] = make()
        return found

    def __len__(self) -> int:
        return len(self._table)
