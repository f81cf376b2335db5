"""The supervisor's hub and the workers' links: one key, successes relayed."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

import pytest

from service.config import PEER_FD_ENV
from service.dispatch.cachepeers import Hub, Link
from service.dispatch.logincache import LoginCache
from service.dispatch.throttle import LoginThrottle, ThrottleEvent
from service.handler import Outcome
from service.policy.throttle import Throttle
from tests.builders import hash_secret

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HASH = hash_secret("right")


def _link(hub: Hub, index: int, monkeypatch: pytest.MonkeyPatch) -> Link:
    # what a child does with the descriptor it inherits
    theirs = hub.channel(index)
    monkeypatch.setenv(PEER_FD_ENV, str(os.dup(theirs.fileno())))
    theirs.close()
    link = Link.from_env()
    assert link is not None
    return link


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub()
    yield hub
    hub.close()


def test_every_worker_gets_the_same_key_and_only_through_the_channel(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is the hub's, the same for all, and not in the environment."""
    links = [_link(hub, i, monkeypatch) for i in range(3)]

    assert {link.key for link in links} == {hub.key}
    assert len(hub.key) == 32
    assert hub.key.hex() not in str(os.environ)
    for link in links:
        link.close()


def test_without_a_channel_there_is_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """A single-process service keeps a cache of its own."""
    monkeypatch.delenv(PEER_FD_ENV, raising=False)

    assert Link.from_env() is None


async def test_a_success_on_one_worker_reaches_the_others(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 0 checks once; workers 1 and 2 then hit without checking."""
    links = [_link(hub, i, monkeypatch) for i in range(3)]
    caches = [LoginCache(key=links[0].key, on_success=links[0].tell)] + [
        LoginCache(key=link.key) for link in links[1:]
    ]
    learned = [asyncio.Event() for _ in links]
    for cache, event in zip(caches[1:], learned[1:], strict=True):
        original = cache.learn

        def learn(
            digest: bytes,
            age: float = 0.0,
            original: Callable[[bytes, float], None] = original,
            event: asyncio.Event = event,
        ) -> None:
            original(digest, age)
            event.set()

        cache.learn = learn  # type: ignore[method-assign]
    tasks = [
        asyncio.create_task(link.listen(cache))
        for link, cache in zip(links, caches, strict=True)
    ]

    assert caches[0](HASH, "right")
    await asyncio.wait_for(asyncio.gather(learned[1].wait(), learned[2].wait()), 5)

    assert caches[1](HASH, "right")
    assert caches[2](HASH, "right")
    assert [c.checks for c in caches] == [1, 0, 0]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for link in links:
        link.close()


async def test_a_worker_stops_listening_when_the_supervisor_is_gone(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EOF on the channel ends `listen`; telling then is a no-op, not an error."""
    link = _link(hub, 0, monkeypatch)
    cache = LoginCache(key=link.key)

    hub.close()
    await asyncio.wait_for(link.listen(cache), 5)
    link.tell(b"x" * 32)

    assert len(cache) == 0
    link.close()


def test_a_replaced_worker_gets_a_new_channel_and_the_same_key(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted child (same index) is linked again; the old channel is closed."""
    old = _link(hub, 0, monkeypatch)
    new = _link(hub, 0, monkeypatch)

    assert new.key == old.key == hub.key
    old._sock.settimeout(5)
    assert old._sock.recv(64) == b""
    old.close()
    new.close()


def test_channels_are_packet_sockets() -> None:
    """One recv is one digest: SOCK_SEQPACKET keeps the boundaries."""
    hub = Hub()
    theirs = hub.channel(0)
    try:
        assert theirs.type == socket.SOCK_SEQPACKET
    finally:
        theirs.close()
        hub.close()


def test_a_stray_descriptor_turns_sharing_off_not_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variable naming no socket, or a channel without a key: no link, no error."""
    monkeypatch.setenv(PEER_FD_ENV, "987654")  # not an open descriptor
    assert Link.from_env() is None

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.close()  # the key never comes: EOF
    monkeypatch.setenv(PEER_FD_ENV, str(theirs.detach()))
    assert Link.from_env() is None


async def test_a_failure_on_one_worker_counts_on_the_others(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttle events go through the supervisor like digests: one back-off for all."""
    config = Throttle(failures=2, address_failures=50)
    links = [_link(hub, i, monkeypatch) for i in range(2)]
    throttles = [LoginThrottle(config, key=links[0].key) for _ in links]
    throttles[0].listen(links[0].tell_event)
    learned = asyncio.Event()
    original = throttles[1].learn

    def learn(event: ThrottleEvent) -> None:
        original(event)
        learned.set()

    throttles[1].learn = learn  # type: ignore[method-assign]
    tasks = [
        asyncio.create_task(link.listen(LoginCache(key=link.key), throttle))
        for link, throttle in zip(links, throttles, strict=True)
    ]
    failure = Outcome(
        decision="deny",
        reply=b"",
        reason="bad_password",
        user="john-doe",
        client_host="198.51.100.7",
    )

    throttles[0].observe(failure)
    await asyncio.wait_for(learned.wait(), 5)
    throttles[1].observe(failure)

    assert throttles[1].blocked("john-doe", "198.51.100.7")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for link in links:
        link.close()
