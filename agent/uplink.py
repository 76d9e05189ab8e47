"""Publishes the buffered readings to the MQTT broker: live first, the backlog paced, at least once.

The store is the outbox. The uplink takes committed readings (live ones from memory, as the store
hands each commit over; the rest read from the file), publishes them as QoS 1 messages and marks
them synced only once the broker has acknowledged them (PUBACK); the store writes the mark with
its next commit. A batch whose acknowledgement never came is simply read again after the
reconnect, and one acknowledged just before a power cut is sent again after it, so a consumer may
see a reading twice, never zero times; ``seq`` lets it drop the duplicates.

After an outage the readings are split at the reconnect: those committed from then on are live
and go out as they are committed; the older ones are the backlog, sent oldest first, one batch
after each round of live readings, no faster than ``backfill_rate`` readings per second. So live
data never waits behind a day of history, and a thin link is not swamped. Both go to the same
topic; a backlog message says ``"backfill": true``. Topics and payloads: docs/payload.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiomqtt

from agent import __version__
from agent.commands.envelope import command_id_of
from agent.config.model import SiteInfo, UplinkConfig
from agent.core.backoff import Backoff
from agent.core.clock import Clock, system_clock
from agent.core.errors import StoreError, UplinkError
from agent.core.record import Quality, StoredReading, ms_to_iso
from agent.store import Store, StoreEvent

CommandHandler = Callable[[bytes, str | None], Awaitable[dict[str, Any]]]
"""``handler(payload, sender)``: the reply to a command (``sender`` from its topic, or None)."""

__all__ = [
    "DEFAULT_BACKFILL_RATE",
    "IDENTITY_KEY",
    "Uplink",
    "encode_event",
    "encode_readings",
    "sync_all",
]

log = logging.getLogger(__name__)

# What a broken or unreachable broker raises. Anything else is a bug and propagates.
_LINK_ERRORS = (aiomqtt.MqttError, TimeoutError, UplinkError)
# While idle, look at the store this often anyway (rows marked unsynced by another process).
_DRAIN_POLL_S = 0.05  # how often a stopping agent looks whether the uplink is through
_IDLE_RECHECK_S = 30.0
# How soon to try again when the store fails under the uplink (e.g. disk full).
_STORE_RETRY_S = 2.0
# paho's default limit for the TCP connect itself (it runs in an executor thread).
_TCP_CONNECT_TIMEOUT_S = 5.0
# A graceful stop says "offline" itself (a clean DISCONNECT discards the will), within this.
_GOODBYE_TIMEOUT_S = 2.0
_EVENTS_PER_READ = 50
_LIVE_READ = 1000  # live readings read (and marked synced) at once, at most, beyond batch_size

DEFAULT_BACKFILL_RATE = 1000.0
"""Readings per second of backlog when the config says nothing (about 1 Mbit/s of JSON)."""
IDENTITY_KEY = "uplink"
"""Store meta key where the uplink records where it publishes, for `edge-agent sync`."""
_FROM_CONFIG: Any = object()


class _Pacer:
    """Spaces backlog batches so that on average at most ``rate`` readings per second go out.

    After a batch of ``n`` readings started at ``t``, the next may start at ``t + n / rate``
    (or at once when sending took longer than that). No credit builds up while idle, so the
    largest burst is one batch.
    """

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a backfill rate must be positive (None: no cap)")
        self.rate = rate
        self._clock = clock
        self._next = -math.inf

    def delay(self) -> float:
        """Seconds until the next backlog batch may start (0: now)."""
        if self.rate is None:
            return 0.0
        return max(0.0, self._next - self._clock())

    def spend(self, count: int, started_at: float) -> None:
        if self.rate is not None:
            self._next = max(self._next, started_at) + count / self.rate


def encode_readings(
    site_id: str, gateway_id: str, readings: Sequence[StoredReading], *, backfill: bool = False
) -> bytes:
    """The JSON payload of one readings message (UTF-8); ``backfill`` marks backlog.

    Written out field by field rather than through a dict per reading and ``json.dumps``: this
    runs for every reading the gateway takes. The bytes are exactly those of
    ``json.dumps(body, ensure_ascii=False, separators=(",", ":"))`` with each record as
    ``StoredReading.to_record`` gives it (tests/test_uplink.py holds it to that).
    """
    text, float_text, isfinite = _json_text, float.__repr__, math.isfinite
    # A batch holds few points, few units and few stamps (every point of a reply shares one):
    # their JSON is written once per batch, not once per reading.
    heads: dict[tuple[str, str], str] = {}
    tails: dict[tuple[str, Quality, bool], str] = {}
    last_ts, stamp = None, ""
    records: list[str] = []
    append = records.append
    for r in readings:
        value, quality = r.value, r.quality
        if type(value) is float and isfinite(value):  # nearly every reading: no call
            value = float_text(value)
        else:
            value = _json_value(value)
            if value is None:  # JSON has no infinity or NaN; such a value is not a measurement
                value, quality = "null", Quality.BAD
        if r.ts_ms != last_ts:
            last_ts = r.ts_ms
            stamp = f',"ts":"{ms_to_iso(last_ts)}","value":'
        head = heads.get((r.device, r.point))
        if head is None:
            head = f',"device":{text(r.device)},"point":{text(r.point)}'
            heads[r.device, r.point] = head
        tail = tails.get((r.unit, quality, r.clock_untrusted))
        if tail is None:
            clock = ',"clock":"untrusted"}' if r.clock_untrusted else "}"
            tail = f',"unit":{text(r.unit)},"quality":"{_LABELS[quality]}"{clock}'
            tails[r.unit, quality, r.clock_untrusted] = tail
        append(f'{{"seq":{int(r.seq)}{head}{stamp}{value}{tail}')
    return (
        f'{{"gateway":{text(gateway_id)},"site":{text(site_id)},'
        f'"backfill":{"true" if backfill else "false"},"readings":[{",".join(records)}]}}'
    ).encode()


_json_text: Callable[[str], str] = json.encoder.encode_basestring  # what ensure_ascii=False uses
_LABELS = {quality: quality.label for quality in Quality}


def _json_value(value: object) -> str | None:
    """A reading's value as JSON text, the way ``json.dumps`` writes it; None for a float
    that JSON cannot hold (infinity, NaN)."""
    if type(value) is float:  # the common case first
        return float.__repr__(value) if math.isfinite(value) else None
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _json_text(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return int.__repr__(value)
    return json.dumps(value, ensure_ascii=False, allow_nan=False)  # anything else: as before


def encode_event(site_id: str, gateway_id: str, event: StoreEvent) -> bytes:
    """The JSON payload of one alert event message (UTF-8)."""
    body = {"gateway": gateway_id, "site": site_id, **event.to_record()}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class Uplink:
    """Keeps one MQTT connection and drains the store's backlog through it, forever.

    State for the live view: ``connected``, ``last_sync_ms`` (epoch ms of the last
    acknowledged batch, also kept in the store's meta), ``sent`` (readings acknowledged by the
    broker since start, duplicates included), ``backfilled`` (how many of those were backlog),
    ``backfilling`` (a backlog is being sent).

    ``backfill_rate`` (readings per second, None for no cap) defaults to the config's.
    """

    def __init__(
        self,
        config: UplinkConfig,
        *,
        site: SiteInfo,
        gateway_id: str,
        store: Store,
        birth: dict[str, Any],
        backoff: Backoff | None = None,
        backfill_rate: float | None = _FROM_CONFIG,
        on_command: CommandHandler | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock if clock is not None else system_clock()
        # Commands from upstream (HVAC overrides): each gets a reply on commands/reply.
        self._on_command = on_command
        self.site = site
        self.gateway_id = gateway_id
        self.store = store
        self.birth = dict(birth)
        self.backoff = backoff if backoff is not None else Backoff(initial=1.0, cap=60.0)
        if backfill_rate is _FROM_CONFIG:
            backfill_rate = config.backfill_rate
        self.backfill_rate: float | None = backfill_rate
        base = f"{config.topic_prefix}/{site.id}/{gateway_id}"
        self.status_topic = f"{base}/status"
        self.birth_topic = f"{base}/birth"
        self.readings_topic = f"{base}/readings"
        self.events_topic = f"{base}/events"
        self.alerts_topic = f"{base}/alerts"
        self.commands_topic = f"{base}/commands"
        self.replies_topic = f"{base}/commands/reply"
        self.client_id = config.client_id or f"edge-agent-{site.id}-{gateway_id}"
        self.url = f"{'mqtts' if config.uses_tls else 'mqtt'}://{config.host}:{config.port}"
        self.connected = False
        self.last_sync_ms: int | None = None
        self.sent = 0
        self.backfilled = 0
        self.backfilling = False
        self._backfill_started = (0.0, 0)  # (monotonic time, self.backfilled) at its start
        self._pacer = _Pacer(backfill_rate)
        self._down_since: int | None = None  # epoch ms of the start of the current outage
        self._store_failing = False

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"Uplink({self.url!r}, {self.client_id!r}, {state}, sent={self.sent})"

    # the service

    async def run(self) -> None:
        """Connect, announce, publish the backlog and then new readings; reconnect on failure.

        Runs until cancelled. On cancellation it says ``offline`` and disconnects cleanly.
        """
        with contextlib.suppress(StoreError):
            self.last_sync_ms = (await self.store.stats()).last_sync_ms
            # Where this gateway publishes, so that `edge-agent sync --data-dir` alone can push
            # the backlog of a gateway being swapped (no secrets: those stay in the config).
            await self.store.set_meta(IDENTITY_KEY, json.dumps(self.identity()))
        while True:
            log.info(
                "uplink: connecting to %s as %s (attempt %d)",
                self.url,
                self.client_id,
                self.backoff.attempts + 1,
            )
            try:
                await self._session()
            except _LINK_ERRORS as exc:
                self._went_down(exc)
            delay = self.backoff.next_delay()
            log.info("uplink: next connection attempt to %s in %.1f s", self.url, delay)
            await asyncio.sleep(delay)

    async def drain(self, *, within: float) -> bool:
        """Wait until every committed reading and event is published, for at most ``within``
        seconds; True when nothing is left. Returns at once while disconnected: a stop does not
        wait for a broker that is away (what is unsent stays in the store)."""
        try:
            async with asyncio.timeout(within):
                while self.connected:
                    stats = await self.store.stats()
                    if not stats.unsynced and not await self.store.unpublished_events(1):
                        return True
                    await asyncio.sleep(_DRAIN_POLL_S)
        except (TimeoutError, StoreError):
            pass
        return False

    def identity(self) -> dict[str, str]:
        """Where and as whom this uplink publishes (recorded in the store's meta)."""
        return {
            "url": self.config.url,
            "topic_prefix": self.config.topic_prefix,
            "site": self.site.id,
            "gateway": self.gateway_id,
            "client_id": self.client_id,
            "protocol": self.config.protocol,
        }

    def _went_down(self, exc: BaseException) -> None:
        self.connected = False
        reason = str(exc) or type(exc).__name__
        if self._down_since is None:
            self._down_since = self.clock.now_ms()
            log.warning(
                "uplink: %s is unreachable (%s); readings are kept in the store and sent on "
                "reconnect",
                self.url,
                reason,
            )
        else:
            log.debug("uplink: %s still unreachable: %s", self.url, reason)

    def _came_up(self) -> None:
        self.connected = True
        self.backoff.reset()
        if self._down_since is not None:
            log.info(
                "uplink: connected to %s again after %.0f s",
                self.url,
                (self.clock.now_ms() - self._down_since) / 1000,
            )
            self._down_since = None
        else:
            log.info("uplink: connected to %s", self.url)

    async def _session(self) -> None:
        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        client = await self._client(self.client_id, will=will)
        try:
            async with self._connection(client):
                try:
                    await self._publish(client, self.status_topic, b"online", retain=True)
                    await self._publish(
                        client, self.birth_topic, self._birth_payload(), retain=True
                    )
                    self._came_up()
                    await self._serve(client)
                except asyncio.CancelledError:
                    # Stopping: the clean DISCONNECT that follows discards the will, so say
                    # offline ourselves (bounded; a dead broker has its will anyway).
                    self.connected = False
                    with contextlib.suppress(*_LINK_ERRORS):
                        async with asyncio.timeout(_GOODBYE_TIMEOUT_S):
                            await client.publish(
                                self.status_topic, b"offline", qos=1, retain=True, timeout=math.inf
                            )
                    raise
        finally:
            self.connected = False

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(client), name=f"uplink[{self.client_id}].watch")
                tasks.create_task(self._pump(client), name=f"uplink[{self.client_id}].pump")
        except* _LINK_ERRORS as group:
            first = group.exceptions[0]
            raise UplinkError(str(first) or type(first).__name__) from first

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Serve upstream commands, and raise as soon as the connection drops (the pump may be
        waiting for new readings and would not notice)."""
        if self._on_command is not None:
            async with asyncio.timeout(self.config.timeout):
                # commands/<sender>: a platform with a topic of its own (the broker's ACL says
                # who may publish there) has a quota of its own.
                await client.subscribe([(self.commands_topic, 1), (f"{self.commands_topic}/+", 1)])
        async for message in client.messages:
            if self._on_command is None:
                continue
            is_command, sender = self._command_sender(message.topic.value)
            if not is_command:
                continue
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            reply = await self._command_reply(raw, sender)
            body = json.dumps(reply, ensure_ascii=False, default=str).encode()
            await self._publish(client, self.replies_topic, body, retain=False)

    def _command_sender(self, topic: str) -> tuple[bool, str | None]:
        """Whether ``topic`` carries commands (not our own replies), and the sender it names
        (None for the plain commands topic)."""
        if topic == self.commands_topic:
            return True, None
        head, _, sender = topic.rpartition("/")
        return head == self.commands_topic and sender != "reply", sender

    async def _command_reply(self, raw: bytes, sender: str | None) -> dict[str, Any]:
        """The handler's reply; a handler that fails does not end the uplink (nor the agent):
        the command is refused with the cause, in one log line."""
        assert self._on_command is not None
        try:
            return await self._on_command(raw, sender)
        except Exception as exc:  # any failure of one command is that command's, not the link's
            if isinstance(exc, StoreError):
                reason = f"cannot record this command now: {exc}"
            else:
                reason = f"the gateway failed to handle this command ({type(exc).__name__}: {exc})"
            # One line, no traceback: the cause is in the line and in the reply.
            log.error("uplink: a command was refused: %s", reason)  # noqa: TRY400
            return {"id": command_id_of(raw), "ok": False, "reason": reason, "applied": None}

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Live readings as they are committed; between them, the backlog, paced.

        Two cursors keep every read short: ``live`` walks from the connection's first new seq,
        ``backlog`` from the store's oldest unsynced reading up to that seq.
        """
        size = self.config.batch_size
        # Live readings are taken and marked synced a commit at a time (up to this many), sent
        # in messages of `size`: one hand-over (or store read, when memory cannot answer) and
        # one mark per commit rather than per message.
        live_read = max(size, _LIVE_READ)
        live_from = self._live_from_now()
        live = live_from
        backlog, backlog_done = 0, False
        events_seen: int | None = None  # None: look in the store once per connection
        await self._backlog_starts(live_from)
        while True:
            before = self.store.last_seq
            wait = _IDLE_RECHECK_S
            try:
                if events_seen is None or self.store.last_event_id > events_seen:
                    events_seen = self.store.last_event_id
                    await self._send_events(client)
                fresh = await self._live_readings(live, live_read)
                if fresh:
                    await self._send(client, fresh, backfill=False)
                    live = fresh[-1].seq + 1
                if len(fresh) == live_read:
                    continue  # more live readings: they go first
                # Every unsynced reading up to `before` was in that read (fewer than asked).
                live = max(live, before + 1)
                if not backlog_done:
                    wait = self._pacer.delay()
                    if wait == 0:
                        started = time.monotonic()
                        old = await self.store.unsynced(size, from_seq=backlog, below_seq=live_from)
                        if old:
                            await self._send(client, old, backfill=True)
                            self._pacer.spend(len(old), started)
                            backlog = old[-1].seq + 1
                            continue
                        backlog_done, wait = True, _IDLE_RECHECK_S
                        self._backlog_ends()
            except StoreError as exc:
                # Not a link problem: keep the connection, say it once, retry without spinning
                # (a batch that cannot be marked synced would otherwise be re-sent in a loop).
                if not self._store_failing:
                    self._store_failing = True
                    log.warning(
                        "uplink: the store failed (%s); retrying every %.0f s", exc, _STORE_RETRY_S
                    )
                await asyncio.sleep(_STORE_RETRY_S)
                continue
            if self._store_failing:
                self._store_failing = False
                log.info("uplink: the store works again")
            events_before = self.store.last_event_id
            try:
                woken = await self.store.wait_for_new(live - 1, wait, or_event=True)
            except StoreError:  # a closed store shows up on the next read
                woken = True
            if not woken and backlog_done and self.store.last_event_id == events_before:
                # Idle for a while: look again from the oldest unsynced reading (e.g. a batch
                # whose marking failed, or readings another process left unsynced).
                live_from, backlog, backlog_done = live, 0, False

    async def _live_readings(self, live: int, limit: int) -> list[StoredReading]:
        """Committed readings from seq ``live`` on: from memory (the last commits' readings)
        when it holds them all, else from the file (after a reconnect, a gap, an eviction or
        a clock correction)."""
        fresh = self.store.committed_after(live, limit)
        if fresh is None:
            fresh = await self.store.unsynced(limit, from_seq=live)
        return fresh

    def _live_from_now(self) -> int:
        """The first seq this connection sends as live (committed from now on; older unsynced
        readings are its backlog); the store is told, for its backpressure."""
        live_from = self.store.last_seq + 1
        self.store.uplink_connected(live_from)
        return live_from

    async def _backlog_starts(self, live_from: int) -> None:
        with contextlib.suppress(StoreError):
            stats = await self.store.stats()
            if stats.unsynced and stats.oldest_unsynced_ms is not None:
                self.backfilling = True
                self._backfill_started = (time.monotonic(), self.backfilled)
                rate = f"{self.backfill_rate:.0f} readings/s" if self.backfill_rate else "no cap"
                log.info(
                    "uplink: sending a backlog of %d readings (seq < %d, oldest from %s) "
                    "between live readings, at most %s",
                    stats.unsynced,
                    live_from,
                    ms_to_iso(stats.oldest_unsynced_ms),
                    rate,
                )

    def _backlog_ends(self) -> None:
        if self.backfilling:
            self.backfilling = False
            started, count = self._backfill_started
            log.info(
                "uplink: backlog sent: %d readings in %.0f s",
                self.backfilled - count,
                time.monotonic() - started,
            )

    async def _send(
        self, client: aiomqtt.Client, batch: Sequence[StoredReading], *, backfill: bool
    ) -> None:
        """Publish a batch, in messages of ``batch_size`` readings, and mark it synced once
        the broker has acknowledged them all.

        If marking fails (StoreError), or the link fails after some messages, the broker still
        has what it acknowledged and it will be sent again later: a duplicate, never a loss.
        """
        size = self.config.batch_size
        for start in range(0, len(batch), size):
            part = batch[start : start + size]
            payload = encode_readings(self.site.id, self.gateway_id, part, backfill=backfill)
            await self._publish(client, self.readings_topic, payload)
            self.sent += len(part)
            if backfill:
                self.backfilled += len(part)
            self.last_sync_ms = self.clock.now_ms()
        await self.store.mark_synced([r.seq for r in batch])

    async def _send_events(self, client: aiomqtt.Client) -> int:
        """Publish the store's unpublished alert events, oldest first; returns how many."""
        count = 0
        while events := await self.store.unpublished_events(_EVENTS_PER_READ):
            for event in events:
                await self._publish(
                    client, self.events_topic, encode_event(self.site.id, self.gateway_id, event)
                )
                if event.kind == "energy.alert":
                    await self._publish_alert_state(client, event)
            await self.store.mark_events_published([e.id for e in events])
            count += len(events)
        return count

    async def _publish_alert_state(self, client: aiomqtt.Client, event: StoreEvent) -> None:
        """Keep each alert's current state retained on ``alerts/<key>``: a dashboard that
        connects later sees what is raised now; a clear empties the retained message."""
        key = str(event.detail.get("key", "")).replace("/", "_").replace("#", "_").replace("+", "_")
        if not key:
            return
        raised = event.detail.get("state") == "raised"
        body = encode_event(self.site.id, self.gateway_id, event) if raised else b""
        await self._publish(client, f"{self.alerts_topic}/{key}", body, retain=True)

    # one-shot push, for `edge-agent sync`

    async def push_backlog(self, *, progress: Callable[[int], None] | None = None) -> int:
        """Connect once and publish every reading unsynced at the start; return how many.

        Unpublished alert events go first. No rate cap: a technician is waiting. Uses its own
        client id (``<client id>-sync``) and no will, so it does not disturb a running agent's
        session or status. ``progress(count)`` is called after each acknowledged batch. Raises
        UplinkError when the broker fails.
        """
        stop_at = self.store.last_seq  # readings committed later are the agent's business
        count = 0
        try:
            client = await self._client(f"{self.client_id}-sync", will=None)
            async with self._connection(client):
                await self._send_events(client)
                cursor = 0
                while batch := await self.store.unsynced(
                    self.config.batch_size, from_seq=cursor, below_seq=stop_at + 1
                ):
                    await self._send(client, batch, backfill=True)
                    cursor = batch[-1].seq + 1
                    count += len(batch)
                    if progress is not None:
                        progress(count)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            reason = str(exc) or "no answer in time"
            raise UplinkError(
                f"could not push readings to {self.url} ({count} sent before the failure): {reason}"
            ) from exc
        return count

    # MQTT plumbing

    async def _client(self, identifier: str, *, will: aiomqtt.Will | None) -> aiomqtt.Client:
        config = self.config
        try:
            password = await asyncio.to_thread(config.password)  # may read a file
        except OSError as exc:
            raise UplinkError(f"cannot read the MQTT password: {exc}") from exc
        tls = None
        if config.uses_tls:
            files = config.tls
            tls = aiomqtt.TLSParameters(
                ca_certs=str(files.ca_file) if files and files.ca_file else None,
                certfile=str(files.cert_file) if files and files.cert_file else None,
                keyfile=str(files.key_file) if files and files.key_file else None,
            )
        versions = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=password,
            identifier=identifier,
            protocol=versions[config.protocol],
            will=will,
            keepalive=max(1, round(config.keepalive)),
            timeout=config.timeout,
            tls_params=tls,
            logger=_MQTT_LOG,  # type: ignore[arg-type]  # aiomqtt only calls Logger methods
        )

    @contextlib.asynccontextmanager
    async def _connection(self, client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
        """Connect and, whatever happens, disconnect; both bounded in time.

        aiomqtt bounds the wait for CONNACK and for the disconnect by ``config.timeout``, and
        paho the TCP connect by its own connect timeout; these outer timeouts are a backstop
        that should never fire (firing first would leave aiomqtt's state half torn down).
        """
        try:
            async with asyncio.timeout(self.config.timeout + _TCP_CONNECT_TIMEOUT_S + 1):
                await client.__aenter__()
        except BaseException:
            _drop_socket(client)
            raise
        try:
            yield client
        finally:
            with contextlib.suppress(*_LINK_ERRORS):
                async with asyncio.timeout(self.config.timeout + 1):
                    await client.__aexit__(None, None, None)
            _drop_socket(client)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool = False
    ) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged (bounded)."""
        async with asyncio.timeout(self.config.timeout):
            await client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf)

    def _birth_payload(self) -> bytes:
        body = {
            "site": self.site.id,
            "gateway": self.gateway_id,
            **self.birth,
            "agent_version": __version__,
            "time": ms_to_iso(self.clock.now_ms()),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _drop_socket(client: aiomqtt.Client) -> None:
    """Close the socket of a client we are giving up on, if aiomqtt left it open.

    aiomqtt 2.5.1 keeps the socket (registered with the loop) when CONNACK never comes (a
    frozen broker) or when connecting is cancelled. paho's ``disconnect()`` sends DISCONNECT
    and closes it; its disconnect callback is detached first, because aiomqtt's would touch
    futures that the failed connect may have cancelled.
    """
    paho = getattr(client, "_client", None)
    if paho is not None and paho.socket() is not None:
        paho.on_disconnect = None
        paho.disconnect()


class _LinkLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The MQTT library's logger, with its errors demoted to info.

    paho logs a broken socket ("failed to receive on socket") as an error each time a
    connection drops; the uplink itself reports an outage once, as a warning, and that is the
    line an operator should see.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(min(level, logging.INFO), msg, *args, **kwargs)


_MQTT_LOG = _LinkLogger(logging.getLogger("agent.uplink.mqtt"), {})


async def sync_all(
    config: UplinkConfig,
    *,
    site: SiteInfo,
    gateway_id: str,
    store: Store,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Publish every unsynced reading once and return how many (UplinkError on failure)."""
    uplink = Uplink(config, site=site, gateway_id=gateway_id, store=store, birth={})
    return await uplink.push_backlog(progress=progress)
