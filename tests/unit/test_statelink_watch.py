"""
The state bucket's watch without a server: a watch that dies is logged once
and opened again with back-off; a cleared cache (a reload) re-reads the bucket.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from structlog.testing import capture_logs

from service.dispatch.logincache import LoginCache
from service.process import statelink
from service.process.statelink import StateLink

if TYPE_CHECKING:
    import pytest

    from service.dispatch.throttle import ThrottleEvent

DIGEST = bytes(range(32))


def _entry(key: str = "c." + DIGEST.hex()) -> SimpleNamespace:
    value = json.dumps({"at": time.time()}).encode()
    return SimpleNamespace(key=key, value=value, operation=None)


class Watcher:
    """Replays `entries` and the end-of-contents marker, then fails or waits."""

    def __init__(self, *entries: object, fail: Exception | None = None) -> None:
        self._entries: list[object] = [*entries, None]
        self._fail = fail
        self._stopped = asyncio.Event()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> object:
        if self._entries:
            return self._entries.pop(0)
        if self._fail is not None:
            raise self._fail
        await self._stopped.wait()
        raise StopAsyncIteration

    async def stop(self) -> None:
        self._stopped.set()


class Bucket:
    """`watchall` hands out the given watchers (or raises the given errors)."""

    def __init__(self, *watches: Watcher | Exception) -> None:
        self.watches = list(watches)
        self.opened = 0

    async def watchall(self) -> Watcher:
        self.opened += 1
        watch = self.watches.pop(0)
        if isinstance(watch, Exception):
            raise watch
        return watch

    async def put(self, key: str, value: bytes) -> None: ...


class Connection:
    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    def jetstream(self, **_: Any) -> SimpleNamespace:
        async def key_value(_name: str) -> Bucket:
            return self._bucket

        return SimpleNamespace(key_value=key_value)


def _link(cache: LoginCache, learned: asyncio.Event, count: int) -> StateLink:
    seen: list[bytes] = []

    def learn(digest: bytes, age: float) -> None:
        cache.learn(digest, age)
        seen.append(digest)
        if len(seen) == count:
            learned.set()

    def ignore(_event: ThrottleEvent) -> None: ...

    return StateLink(
        "state",
        ttl=600,
        learn_success=learn,
        learn_event=ignore,
        event_ttl=lambda: 60.0,
    )


async def test_a_watch_that_dies_is_logged_once_and_opened_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It fails, one reopen fails too: one warning, then restored with the entries."""
    monkeypatch.setattr(statelink, "RETRY_FIRST", 0.01)
    cache, learned = LoginCache(), asyncio.Event()
    bucket = Bucket(
        Watcher(fail=ConnectionClosedError()),
        NatsTimeout(),
        Watcher(_entry()),
    )
    link = _link(cache, learned, count=1)

    with capture_logs() as logs:
        assert await link.start(Connection(bucket))  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            await learned.wait()
        await link.stop()

    events = [e["event"] for e in logs]
    assert events == [
        "callout.state_loaded",
        "callout.state_watch_lost",
        "callout.state_watch_restored",
    ]
    assert logs[1]["error"] == "ConnectionClosedError"
    assert logs[2]["logins"] == 1
    assert bucket.opened == 3
    assert len(cache) == 1


async def test_a_cleared_cache_reads_the_bucket_again() -> None:
    """A reload clears the cache; the entries still in the bucket come back at once."""
    cache, learned = LoginCache(), asyncio.Event()
    bucket = Bucket(Watcher(_entry()), Watcher(_entry()))
    link = _link(cache, learned, count=2)
    cache.on_clear(link.reread)

    with capture_logs() as logs:
        assert await link.start(Connection(bucket))  # type: ignore[arg-type]
        assert len(cache) == 1
        cache.clear()
        emptied = len(cache)
        async with asyncio.timeout(5):
            await learned.wait()
        await link.stop()

    assert emptied == 0
    assert len(cache) == 1
    assert bucket.opened == 2
    assert [e["event"] for e in logs] == ["callout.state_loaded"]  # no warning
