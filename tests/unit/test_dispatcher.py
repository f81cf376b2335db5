"""The dispatcher without NATS: replies, one log line, metrics, reload, drops."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from service.policy import parse_policy
from service.protocol.nkeys import KeyPair, Prefix
from service.signers import AccountSigner, Loaded
from tests.builders import build_dispatcher, hash_secret
from tests.factories import FakeServer, make_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from service.dispatch.dispatcher import Dispatcher
    from service.ops.health import Health
    from service.ops.metrics import Metrics
    from service.policy import Policy

ISSUER = KeyPair.create(Prefix.ACCOUNT)
SIGNERS = {"APP": AccountSigner(ISSUER, audience="APP")}
PASSWORD = "jd-pw"
HASH = hash_secret(PASSWORD)


def _policy(comment: str = "") -> Policy:
    return parse_policy(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        "roles: {r: {subscribe: {allow: [a]}}}\n"
        f'users:\n  - {{name: john-doe, password: "{HASH}", roles: [r]}}\n{comment}'
    )


def _dispatcher(**settings: object) -> tuple[Dispatcher, Metrics, Health]:
    return build_dispatcher(_policy(), ISSUER, **settings)


def _request(*, sub: str = ISSUER.public_key, now: int | None = None) -> bytes:
    body, _ = make_request(
        FakeServer(),
        issuer_account=sub,
        connect_opts={"user": "john-doe", "pass": PASSWORD},
        now=int(time.time()) if now is None else now,
    )
    return body


def _replies() -> tuple[list[bytes], Callable[[bytes], Awaitable[None]]]:
    sent: list[bytes] = []

    async def respond(reply: bytes) -> None:
        sent.append(reply)

    return sent, respond


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_request_is_answered_logged_and_counted() -> None:
    """One reply, one decision line with the policy version, one count."""
    dispatcher, metrics, _ = _dispatcher()
    sent, respond = _replies()

    with capture_logs() as logs:
        dispatcher.accept(_request(), None, respond)
        await dispatcher.wait()

    assert len(sent) == 1
    (line,) = [e for e in logs if e["event"].startswith("callout.request_")]
    assert line["event"] == "callout.request_authorized"
    assert line["policy_version"] == _policy().version_hash
    assert (
        _value(metrics, "callout_requests_total", decision="allow", reason="none") == 1
    )
    assert _value(metrics, "callout_request_duration_seconds_count", decision="allow")


async def test_a_reload_during_a_request_leaves_it_alone() -> None:
    """A request in flight is answered and logged with the policy it started with."""
    dispatcher, metrics, _ = _dispatcher()
    old, new = _policy(), _policy("# v2\n")
    sent: list[bytes] = []

    async def respond_while_reloading(reply: bytes) -> None:
        dispatcher.install(Loaded(new, SIGNERS))  # the swap, mid-request
        sent.append(reply)

    with capture_logs() as logs:
        dispatcher.accept(_request(), None, respond_while_reloading)
        await dispatcher.wait()
        _, respond = _replies()
        dispatcher.accept(_request(), None, respond)
        await dispatcher.wait()

    versions = [
        e["policy_version"] for e in logs if e["event"].startswith("callout.req")
    ]
    assert len(sent) == 1
    assert [old.version_hash, new.version_hash] == versions
    assert dispatcher.context.policy is new
    assert _value(metrics, "callout_policy_info", version=new.version_hash) == 1
    assert _value(metrics, "callout_policy_info", version=old.version_hash) is None


async def test_beyond_max_inflight_a_request_is_dropped() -> None:
    """Over the bound, the request is dropped and counted as overload."""
    dispatcher, metrics, _ = _dispatcher(max_inflight=1)
    sent, respond = _replies()

    with capture_logs() as logs:
        dispatcher.accept(_request(), None, respond)
        dispatcher.accept(_request(), None, respond)
        await dispatcher.wait()

    assert len(sent) == 1
    assert dispatcher.received == 2
    assert any(e["event"] == "callout.request_dropped" for e in logs)
    assert _value(metrics, "callout_dropped_requests_total", reason="overload") == 1


async def test_an_expired_request_is_counted_as_dropped() -> None:
    """A request past its deadline is aborted and counted as an expired drop."""
    dispatcher, metrics, _ = _dispatcher()
    sent, respond = _replies()

    with capture_logs():
        dispatcher.accept(_request(now=int(time.time()) - 60), None, respond)
        await dispatcher.wait()

    assert sent == []
    assert _value(metrics, "callout_dropped_requests_total", reason="expired") == 1
    assert (
        _value(
            metrics,
            "callout_requests_total",
            decision="abort",
            reason="expired_request",
        )
        == 1
    )


async def test_cut_off_cancels_and_counts_what_is_still_running() -> None:
    """At the end of the grace, unfinished requests are cancelled and counted."""
    dispatcher, metrics, _ = _dispatcher()
    never = asyncio.Event()

    async def stuck(_reply: bytes) -> None:
        await never.wait()

    dispatcher.accept(_request(), None, stuck)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await dispatcher.wait()
    cut = dispatcher.cut_off()
    await asyncio.gather(*dispatcher._tasks, return_exceptions=True)
    dispatcher.close()

    assert cut == 1
    assert _value(metrics, "callout_dropped_requests_total", reason="shutdown") == 1


async def test_first_request_of_a_mismatched_server_sets_readiness() -> None:
    """An issuer mismatch is logged once and makes /readyz report it."""
    dispatcher, _, health = _dispatcher()
    other = KeyPair.create(Prefix.ACCOUNT).public_key
    _, respond = _replies()

    with capture_logs() as logs:
        dispatcher.accept(_request(sub=other), None, respond)
        await dispatcher.wait()
        await asyncio.gather(*dispatcher._checking)

    assert health.key_problem == "issuer_mismatch"
    assert [e["event"] for e in logs].count("callout.issuer_mismatch") == 1


@pytest.fixture(autouse=True)
def _no_callout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)
