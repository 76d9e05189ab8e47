"""``edge-agent sync``: push every reading the broker lacks; exit 0 only once it has them all.

For swapping or decommissioning a gateway: stop the service, run ``edge-agent sync --data-dir
DIR``, and when it exits 0 the broker has acknowledged (QoS 1 PUBACK) every reading the store
holds and every alert event. Where to publish comes from ``--config FILE`` (the site config, with
its credentials and TLS), or else from what the agent recorded in the store the last time its
uplink ran (broker URL, topic prefix, site, gateway; never a password); ``--mqtt URL`` overrides
the broker. Exit status: 0 all acknowledged, 1 a failure said in one sentence, 2 a bad option,
78 a config that cannot be used (raised as ConfigError for the CLI).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from agent.config.model import SiteInfo, UplinkConfig
from agent.core.errors import AgentError
from agent.core.record import ms_to_iso
from agent.store import Store, read_meta
from agent.uplink import IDENTITY_KEY, sync_all

__all__ = ["SyncTarget", "resolve_target", "sync_command"]

EX_USAGE = 2
_PROGRESS_EVERY_S = 2.0


class _UsageError(AgentError):
    """A bad command-line option (exit 2)."""


@dataclass(frozen=True)
class SyncTarget:
    """Which store to push, to which broker, under which topics."""

    db: Path
    uplink: UplinkConfig
    site: SiteInfo
    gateway_id: str


def sync_command(
    data_dir: Path,
    *,
    mqtt_url: str | None = None,
    config_path: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run the command; returns the exit status. AgentError (exit 1) and ConfigError (78) are
    left to the CLI, which prints them as one sentence."""
    try:
        target = resolve_target(data_dir, mqtt_url=mqtt_url, config_path=config_path)
    except _UsageError as exc:
        print(f"edge-agent sync: {exc}", file=err)
        return EX_USAGE
    return asyncio.run(_sync(target, out))


def resolve_target(
    data_dir: Path, *, mqtt_url: str | None = None, config_path: Path | None = None
) -> SyncTarget:
    if mqtt_url is not None:
        _uplink_config(url=mqtt_url)  # a bad URL is a usage error, whatever else is wrong
    if config_path is not None:
        from agent.config.loader import load_config

        config = load_config(config_path)
        db = config.store.path if config.store.path.is_absolute() else data_dir / config.store.path
        uplink = config.uplink
        if uplink is None and mqtt_url is None:
            raise AgentError(f"{config_path} has no uplink section: add one, or give --mqtt URL")
        if mqtt_url is not None:
            settings = uplink.model_dump(exclude={"url"}) if uplink is not None else {}
            uplink = _uplink_config(url=mqtt_url, **settings)
        assert uplink is not None
        _check_store(db)
        return SyncTarget(db=db, uplink=uplink, site=config.site, gateway_id=config.gateway.id)
    db = data_dir / "readings.db"
    _check_store(db)
    recorded = read_meta(db, IDENTITY_KEY)
    if recorded is None:
        raise AgentError(
            f"the buffer {db} does not say where its agent published (its uplink never ran): "
            "give --config FILE"
        )
    identity = json.loads(recorded)
    uplink = _uplink_config(
        url=mqtt_url or identity["url"],
        topic_prefix=identity["topic_prefix"],
        client_id=identity["client_id"],
        protocol=identity["protocol"],
    )
    site = SiteInfo(id=identity["site"], name=identity["site"])
    return SyncTarget(db=db, uplink=uplink, site=site, gateway_id=identity["gateway"])


def _check_store(db: Path) -> None:
    if not db.is_file():
        raise AgentError(f"there is no buffer at {db}: give the agent's --data-dir")


def _uplink_config(**values: object) -> UplinkConfig:
    try:
        return UplinkConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        # pydantic prefixes "Value error, "; the sentence after it is ours.
        message = str(first["msg"]).removeprefix("Value error, ")
        raise _UsageError(f"--mqtt: {message}") from None


async def _sync(target: SyncTarget, out: TextIO) -> int:
    url = target.uplink.url
    async with Store(target.db, batch_window=0.05, max_bytes=None) as store:
        before = await store.stats()
        events = await store.unpublished_events(1)
        if before.unsynced == 0 and not events:
            print(
                f"nothing to send: the broker has every reading in {target.db} "
                f"(up to seq {before.last_seq})",
                file=out,
            )
            return 0
        oldest = ms_to_iso(before.oldest_unsynced_ms) if before.oldest_unsynced_ms else "-"
        print(
            f"sending {before.unsynced} readings (oldest from {oldest}) to {url} ...",
            file=out,
            flush=True,
        )
        shown = time.monotonic()

        def progress(count: int) -> None:
            nonlocal shown
            if time.monotonic() - shown >= _PROGRESS_EVERY_S:
                shown = time.monotonic()
                print(f"  {count} of {before.unsynced} acknowledged", file=out, flush=True)

        count = await sync_all(
            target.uplink,
            site=target.site,
            gateway_id=target.gateway_id,
            store=store,
            progress=progress,
        )
        left = await store.unsynced(1, below_seq=before.last_seq + 1)
        events = await store.unpublished_events(1)
        after = await store.stats()
    if left or events:
        raise AgentError(
            f"{after.unsynced} readings are still not acknowledged by {url}; run the command again"
        )
    later = after.last_seq - before.last_seq
    print(
        f"done: {count} readings sent to {url}; the broker has acknowledged every reading up to "
        f"seq {before.last_seq}"
        + (f" ({later} stored since by a running agent are left to it)" if later else ""),
        file=out,
    )
    return 0
