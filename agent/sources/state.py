"""Per-device saved state (a driver's learned quirks or refusals) kept in the store's meta
table, so a restart starts from what the last run learned."""

from __future__ import annotations

from agent.store import Store

__all__ = ["MetaState"]


class MetaState:
    """agent.core.source.SavedState for one device, under ``quirks:<device>`` in the store."""

    def __init__(self, store: Store, device: str) -> None:
        self._store = store
        self.key = f"quirks:{device}"

    async def load(self) -> str | None:
        return await self._store.get_meta(self.key)

    async def save(self, value: str) -> None:
        await self._store.set_meta(self.key, value)
