"""
Login state shared by replicas through a JetStream KV bucket
(CALLOUT_STATE_BUCKET): the login throttle's events and the verification
cache's successes, so that an attacker's guesses spread over the replicas
by the queue group add up to one back-off, and a restarted or added
replica starts warm instead of paying bcrypt once per user again.

The bucket (created with `ttl` = CALLOUT_CACHE_TTL if missing, one value
per key) holds two kinds of keys, both named by HMACs under the replicas'
shared key (dispatch/sharedkey.py: derived from the issuer seed), so it
holds no name, address, secret, password hash or token:

- `c.<digest>`: a verified login, the verification cache's entry (an HMAC
  of the password hash and the secret); value `{"at": <unix time>}`. It
  lives as long as the cache's entries (the bucket's TTL);
- `t.<event id>`: one counted failure, or a success that clears a
  principal's failures (dispatch/throttle.py `ThrottleEvent`); value
  `{"kind": ..., "key": <the counter's HMAC>, "at": <unix time>}`, with a
  per-message TTL of the policy's window plus its longest back-off (beyond
  that it changes nothing), so failures do not pile up for a whole day.

Each replica writes what it counts or verifies and watches the whole
bucket, feeding what the others wrote into its cache and throttle (through
plain callables; its own writes come back and are recognised). A watch
that ends or fails mid-run is logged once and opened again, after 1 s,
then twice as long each time up to 30 s; a new watch replays the whole
bucket, which is also how a reload re-reads it: the reload clears the
verification cache (the hashes may have changed), and the entries still in
the bucket are read again at once. That is safe: an entry is an HMAC of
the hash and the secret, so one made under a changed hash never matches. Decisions
never wait for the bucket: writes go through a bounded queue (full: the
write is dropped) and are read back asynchronously. Only startup waits,
up to `LOAD_WAIT`, for the bucket's current contents before subscribing to
requests. When JetStream cannot be reached at startup the replica logs one
warning and counts alone (its local counters still throttle).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import structlog
from nats.errors import Error as NatsError
from nats.js.errors import APIError, BucketNotFoundError

from service.dispatch.throttle import ThrottleEvent
from service.log import Throttle as Every

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client
    from nats.js.kv import KeyValue

    from service.config import Settings
    from service.dispatch.logincache import LoginCache
    from service.dispatch.throttle import LoginThrottle

log = structlog.get_logger("callout")

QUEUE = 10_000  # writes waiting; beyond, dropped (the local state still counts)
LOAD_WAIT = 3.0  # seconds at startup for the bucket's contents
API_WAIT = 2.0  # seconds for a JetStream API call
FLUSH_WAIT = 1.0  # seconds at shutdown for the writes still queued
_LOG_EVERY = 30.0
RETRY_FIRST = 1.0  # seconds before opening a lost watch again, doubling
RETRY_MAX = 30.0
_CACHE, _EVENT = "c.", "t."

Write = tuple[str, bytes, float | None]  # key, value, per-message TTL


class StateLink:
    """One replica's link to the state bucket: writes ours, reads everyone's."""

    def __init__(
        self,
        bucket: str,
        *,
        ttl: float,
        learn_success: Callable[[bytes, float], None],
        learn_event: Callable[[ThrottleEvent], None],
        event_ttl: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self._ttl = ttl
        self._learn_success = learn_success
        self._learn_event = learn_event
        self._event_ttl = event_ttl
        self._wall = wall
        self._queue: asyncio.Queue[Write] | None = None  # None: not linked
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Any = None
        self._every = Every(_LOG_EVERY)
        self._msg_ttl = True  # per-message TTLs allowed (a bucket we created)
        self._kv: KeyValue | None = None
        self._rereading = False  # the watch is stopped on purpose: open another
        self._lost = False  # the watch died, and that was logged
        self._retry = RETRY_FIRST
        self._loaded_once = False
        self._watching = False  # a watch is being read now

    async def start(self, nc: Client) -> bool:
        """Open (or create) the bucket and read it; False, warned once, if not."""
        try:
            js = nc.jetstream(timeout=API_WAIT)
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                kv = await js.create_key_value(
                    bucket=self.bucket,
                    ttl=self._ttl,
                    history=1,
                    description="nats-auth-callout shared login state (HMACs only)",
                )
            self._watcher = await kv.watchall()
            self._kv = kv
        except (NatsError, TimeoutError, OSError) as exc:
            log.warning(
                "callout.state_unavailable",
                bucket=self.bucket,
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )
            return False
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(QUEUE)
        loaded = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._watch(loaded)),
            asyncio.create_task(self._write(kv)),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOAD_WAIT):
                await loaded.wait()
        return True

    # --- ours, to the bucket ------------------------------------------------

    def tell_success(self, digest: bytes) -> None:
        """A new verified login (called from a checking thread)."""
        if self._loop is None:
            return
        value = json.dumps({"at": self._wall()}).encode()
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(
                self._enqueue, (_CACHE + digest.hex(), value, None)
            )

    def tell_event(self, event: ThrottleEvent) -> None:
        """A counted failure or a clearing success (called on the event loop)."""
        value = {"kind": event.kind, "key": event.key.hex(), "at": event.at}
        self._enqueue(
            (_EVENT + event.id.hex(), json.dumps(value).encode(), self._event_ttl())
        )

    def _enqueue(self, write: Write) -> None:
        if self._queue is None:
            return
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            self._warn("queue_full")

    async def _write(self, kv: KeyValue) -> None:
        assert self._queue is not None  # noqa: S101 - started before this task
        while True:
            key, value, ttl = await self._queue.get()
            try:
                await self._put(kv, key, value, ttl)
            except (NatsError, TimeoutError, OSError) as exc:
                self._warn(type(exc).__name__)
            finally:
                self._queue.task_done()

    async def _put(
        self, kv: KeyValue, key: str, value: bytes, ttl: float | None
    ) -> None:
        if ttl is None:
            await kv.put(key, value)
            return
        if self._msg_ttl:
            try:
                await kv.create(key, value, msg_ttl=max(1.0, ttl))
            except APIError:
                # a bucket made elsewhere without per-message TTLs: the
                # bucket's own TTL will remove the events, later
                self._msg_ttl = False
            else:
                return
        await kv.put(key, value)

    def _warn(self, error: str) -> None:
        if self._every.allow(error):
            log.warning("callout.state_write_failed", bucket=self.bucket, error=error)

    # --- everyone's, from the bucket ----------------------------------------

    def reread(self) -> None:
        """Read the whole bucket again (the cache was cleared: a reload)."""
        if not self._watching or self._rereading or self._queue is None:
            return  # not linked, stopping, or a new watch is on its way anyway
        self._rereading = True
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._stop_watch()))

    async def _stop_watch(self) -> None:
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await self._watcher.stop()  # its reader then opens another at once

    async def _watch(self, loaded: asyncio.Event) -> None:
        """Read the bucket, and open the watch again whenever it ends."""
        while True:
            try:
                await self._read(loaded)
                error = "ended"
            except (NatsError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
            loaded.set()  # startup does not wait for a watch that died
            delay = 0.0
            if self._rereading:
                self._rereading = False
            else:
                if not self._lost:
                    self._lost = True
                    log.warning(
                        "callout.state_watch_lost", bucket=self.bucket, error=error
                    )
                delay, self._retry = self._retry, min(self._retry * 2, RETRY_MAX)
            self._watcher = await self._reopen(delay)

    async def _reopen(self, delay: float) -> KeyValue.KeyWatcher:
        assert self._kv is not None  # noqa: S101 - set before the watch started
        while True:
            await asyncio.sleep(delay)  # a back-off between attempts, not a wait
            try:
                return await self._kv.watchall()
            except (NatsError, TimeoutError, OSError):
                delay = min(max(delay * 2, RETRY_FIRST), RETRY_MAX)

    async def _read(self, loaded: asyncio.Event) -> None:
        self._watching = True
        try:
            await self._drain(loaded)
        finally:
            self._watching = False

    async def _drain(self, loaded: asyncio.Event) -> None:
        logins = events = 0
        async for entry in self._watcher:
            if entry is None:  # the end of what the bucket held when watched
                loaded.set()
                self._retry = RETRY_FIRST  # this watch works: a fresh back-off
                if not self._loaded_once or self._lost:
                    event = (
                        "callout.state_watch_restored"
                        if self._lost
                        else "callout.state_loaded"
                    )
                    log.info(event, bucket=self.bucket, logins=logins, events=events)
                self._loaded_once, self._lost = True, False
                continue
            if entry.operation is not None or not entry.value:
                continue  # a deletion or an expiry marker
            kind = self._apply(entry.key, entry.value)
            logins += kind == _CACHE
            events += kind == _EVENT

    def _apply(self, key: str, value: bytes) -> str | None:
        """Feed one entry in; its kind, None when it is not one of ours."""
        try:
            doc = json.loads(value)
            at = float(doc["at"])
            if key.startswith(_CACHE):
                self._learn_success(bytes.fromhex(key[2:]), self._wall() - at)
                return _CACHE
            if key.startswith(_EVENT):
                event = ThrottleEvent.parse(
                    bytes.fromhex(key[2:]), doc["kind"], bytes.fromhex(doc["key"]), at
                )
                if event is not None:
                    self._learn_event(event)
                    return _EVENT
        except (ValueError, KeyError, TypeError):
            pass  # not written by us: ignored
        return None

    async def stop(self) -> None:
        """Write what is queued (up to `FLUSH_WAIT`), then stop reading."""
        self._rereading = True  # the watch ends on purpose: no warning
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_WAIT):
                    await self._queue.join()
            self._queue = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watcher is not None:
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await self._watcher.stop()


def state_link(
    settings: Settings, cache: LoginCache, throttle: LoginThrottle
) -> StateLink | None:
    """The link for CALLOUT_STATE_BUCKET, wired to the cache and throttle."""
    if not settings.state_bucket:
        return None
    link = StateLink(
        settings.state_bucket,
        ttl=settings.cache_ttl,
        learn_success=cache.learn,
        learn_event=throttle.learn,
        event_ttl=lambda: throttle.memory,
    )
    cache.listen(link.tell_success)
    cache.on_clear(link.reread)
    throttle.listen(link.tell_event)
    return link
