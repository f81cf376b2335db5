"""
The dispatcher's two lanes: cached identities are decided on the event loop,
never behind bcrypt; cold checks are shed when they cannot make the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import time
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from service.dispatch.fastlane import Claimed, deadline
from service.policy import parse_policy
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import AccountSigner
from tests.builders import build_dispatcher, hash_secret
from tests.factories import FakeServer, make_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from service.dispatch.dispatcher import Dispatcher
    from service.ops.metrics import Metrics
    from service.policy import Policy

ISSUER = KeyPair.create(Prefix.ACCOUNT)
SIGNERS = {"APP": AccountSigner(ISSUER, audience="APP")}
COLD = [f"cold{i}" for i in range(3)]


@functools.cache
def _policy() -> Policy:
    # cost 12, as `nats server passwd` makes them: ~0.25 s per check
    hashes = {u: hash_secret(f"{u}-pw", 12) for u in COLD}
    hashes["known"] = hash_secret("known-pw")
    return parse_policy(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        "roles: {r: {subscribe: {allow: [a]}}}\nusers:\n"
        + "".join(
            f'  - {{name: {u}, password: "{h}", roles: [r]}}\n'
            for u, h in hashes.items()
        )
    )


def _dispatcher(**settings: object) -> tuple[Dispatcher, Metrics]:
    dispatcher, metrics, _ = build_dispatcher(_policy(), ISSUER, **settings)
    return dispatcher, metrics


def _request(user: str, *, ttl: int = 60) -> bytes:
    body, _ = make_request(
        FakeServer(),
        issuer_account=ISSUER.public_key,
        connect_opts={"user": user, "pass": f"{user}-pw"},
        now=int(time.time()),
        ttl=ttl,
    )
    return body


def _recording(order: list[str], name: str) -> Callable[[bytes], Awaitable[None]]:
    async def respond(_reply: bytes) -> None:
        order.append(name)

    return respond


async def test_a_cached_user_is_answered_before_cold_checks_queued_ahead() -> None:
    """Three cost-12 checks are queued first; the known user does not wait for them."""
    dispatcher, _ = _dispatcher(threads=1)
    order: list[str] = []
    await dispatcher.dispatch(_request("known"), None, _recording(order, "warm-up"))
    await dispatcher.wait()  # a cost-4 bcrypt: now in the cache

    for user in COLD:
        await dispatcher.dispatch(_request(user), None, _recording(order, user))
    await dispatcher.dispatch(_request("known"), None, _recording(order, "known"))
    answered_inline = list(order)
    await dispatcher.wait()
    dispatcher.close()

    assert answered_inline == ["warm-up", "known"]
    assert order[:2] == ["warm-up", "known"]
    assert sorted(order[2:]) == COLD
    assert dispatcher.login_cache.hits == 1


async def test_a_request_that_cannot_make_its_deadline_is_dropped_and_counted() -> None:
    """With bcrypt known to take 10 s, a 2 s request is shed: no reply, counted."""
    dispatcher, metrics = _dispatcher(threads=1)
    dispatcher.cold.cost = 10.0
    sent: list[str] = []

    with capture_logs() as logs:
        await dispatcher.dispatch(_request("known", ttl=2), None, _recording(sent, "x"))
        await dispatcher.wait()

    (line,) = [e for e in logs if e["event"].startswith("callout.request_")]
    assert sent == []
    assert line["event"] == "callout.request_aborted"
    assert line["reason"] == "deadline_unmeetable"
    assert line["bcrypt_ms"] == 10000.0
    dropped = metrics.registry.get_sample_value(
        "callout_dropped_requests_total", {"reason": "expired"}
    )
    counted = metrics.registry.get_sample_value(
        "callout_requests_total", {"decision": "abort", "reason": "deadline_unmeetable"}
    )
    assert dropped == 1
    assert counted == 1
    dispatcher.close()


async def test_a_shed_request_still_warms_the_cache_for_the_retry() -> None:
    """The dropped check runs in idle time, so the client's retry is a cache hit."""
    dispatcher, _ = _dispatcher(threads=1)
    dispatcher.cold.cost = 10.0
    sent: list[str] = []
    await dispatcher.dispatch(_request("known", ttl=2), None, _recording(sent, "shed"))
    await dispatcher.wait()

    await asyncio.to_thread(_wait_for, lambda: len(dispatcher.login_cache) == 1)
    await dispatcher.dispatch(_request("known"), None, _recording(sent, "retry"))

    assert sent == ["retry"]  # answered before dispatch() returned: no bcrypt
    assert dispatcher.login_cache.hits == 1
    dispatcher.close()


async def test_dispatch_is_back_pressure_for_cached_users() -> None:
    """A cached decision holds no in-flight slot after dispatch() returns."""
    dispatcher, _ = _dispatcher(max_inflight=1)
    sent: list[str] = []
    await dispatcher.dispatch(_request("known"), None, _recording(sent, "first"))
    await dispatcher.wait()

    for i in range(5):
        await dispatcher.dispatch(_request("known"), None, _recording(sent, str(i)))

    assert sent == ["first", "0", "1", "2", "3", "4"]
    dispatcher.close()


def test_verified_secrets_stay_cached_for_cache_ttl() -> None:
    """CALLOUT_CACHE_TTL reaches the verification cache."""
    dispatcher, _ = _dispatcher(cache_ttl=123)

    assert dispatcher.login_cache._ttl == 123
    dispatcher.close()


def test_the_deadline_is_the_servers_timeout_from_arrival() -> None:
    """exp - iat is the server's timeout; exp + 1 bounds it; no exp, no deadline."""
    received, wall = 50.0, 1000.3

    assert deadline(1002, 1000, received, wall) == 52.0
    assert deadline(1000, 1000, received, wall) == pytest.approx(50.7)
    assert deadline(0, 1000, received, wall) == math.inf


def test_the_claimed_deadline_reads_the_requests_exp_and_iat() -> None:
    """From the request's own claims; garbage has no deadline (the handler says why)."""
    now = int(time.time())
    body, _ = make_request(FakeServer(), issuer_account=ISSUER.public_key, now=now)

    found = Claimed(body, None, None, received=10.0, wall=now + 0.5).deadline()
    garbage = Claimed(b"not a jwt", None, None, received=10.0, wall=now).deadline()

    assert found == 12.0
    assert garbage == math.inf


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    until = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > until:
            raise AssertionError("condition not met")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def _no_callout_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)
    with capture_logs():  # not to a stdout an earlier test's capture closed
        yield
