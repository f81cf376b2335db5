"""
The global budget of decoy checks: once spent, unknown names are refused
without bcrypt, paced so that their refusals take as long as a known name's
wrong password; cached logins are never slowed.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import TYPE_CHECKING

from structlog.testing import capture_logs

from service.dispatch.coldlane import ColdLane
from service.dispatch.decoys import DecoyBudget
from service.dispatch.throttle import LoginThrottle
from service.handler import Outcome
from service.ops.metrics import Metrics
from service.policy import Deny, evaluate, parse_policy
from service.policy.throttle import Throttle
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import build_dispatcher, hash_secret
from tests.factories import FakeServer, decoded_request, make_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from service.policy import Policy

HOST, TRUSTED = "198.51.100.7", "10.0.0.5"
ISSUER = KeyPair.create(Prefix.ACCOUNT)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(cost: int = 4, rate: float = 0.1) -> Policy:
    # rate 0.1: a bucket of one decoy; the other limits out of the way
    return parse_policy(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        "roles: {r: {subscribe: {allow: [a]}}}\nusers:\n"
        f'  - {{name: john-doe, password: "{hash_secret("jd-pw", cost)}", '
        "roles: [r]}\n"
        f"throttle: {{failures: 1000, address_failures: 1000, "
        f"decoys_per_second: {rate}, exempt_networks: [10.0.0.0/8]}}\n"
    )


def test_the_budget_refills_at_its_rate_up_to_ten_seconds_of_it() -> None:
    """Rate 2: twenty decoys at once, then one per half second, never more than 20."""
    clock = Clock()
    budget = DecoyBudget(2.0, clock=clock)

    first = [budget.take() for _ in range(21)]
    clock.now += 0.5
    refilled = [budget.take(), budget.take()]
    clock.now += 3600
    after_an_hour = sum(budget.take() for _ in range(25))

    assert first == [True] * 20 + [False]
    assert refilled == [True, False]
    assert after_an_hour == 20


def test_a_spent_budget_refuses_unknown_names_paced_and_without_bcrypt() -> None:
    """No token: an unknown name is denied paced, unchecked; known names still pay."""
    policy = _policy()
    throttle = LoginThrottle(policy.document.throttle)
    checked: list[str] = []

    def check(hashed: str, secret: str) -> bool:
        checked.append(hashed)
        return False

    def attempt(user: str, host: str = HOST) -> object:
        request = decoded_request(
            connect_opts={"user": user, "password": "guess"}, client_host=host
        )
        return evaluate(policy, request, 0, check_secret=check, guard=throttle)

    first = attempt("nobody-1")
    second = attempt("nobody-2")
    checks_for_unknown = len(checked)
    known = attempt("john-doe")
    trusted = attempt("nobody-3", TRUSTED)

    assert first == Deny("unknown_user")
    assert second == Deny("unknown_user", paced=True)
    assert checks_for_unknown == 1  # the first one's decoy only
    assert known == Deny("bad_password", user="john-doe")  # a real check, unpaced
    assert trusted == Deny("unknown_user")  # exempt: its decoy runs
    credential = policy.by_name["john-doe"].credential
    assert checked == [policy.timing_hash, credential, policy.timing_hash]


def test_a_fast_attempt_defers_without_taking_a_token() -> None:
    """Asked from a fast attempt the answer is yes and the bucket stays full."""
    clock, fast = Clock(), threading.local()
    throttle = LoginThrottle(
        Throttle(decoys_per_second=0.1),
        clock=clock,
        deferring=lambda: getattr(fast, "on", False),
    )
    fast.on = True
    deferred = [throttle.decoy(HOST) for _ in range(5)]
    fast.on = False

    assert deferred == [True] * 5
    assert [throttle.decoy(HOST), throttle.decoy(HOST)] == [True, False]


def test_running_out_and_coming_back_log_one_line_each() -> None:
    """decoys_spent once however many are paced; decoys_restored with their count."""
    clock, metrics = Clock(), Metrics()
    throttle = LoginThrottle(
        Throttle(decoys_per_second=0.1), clock=clock, metrics=metrics
    )
    paced = Outcome(
        decision="deny", reply=b"", reason="unknown_user", client_host=HOST, paced=True
    )
    with capture_logs() as logs:
        throttle.decoy(HOST)
        for _ in range(3):
            throttle.decoy(HOST)
            throttle.observe(paced)
        clock.now += 10
        throttle.decoy(HOST)
        throttle.observe(Outcome(decision="deny", reply=b"", client_host=HOST))

    events = [(e["event"], e.get("paced")) for e in logs]
    assert events == [("callout.decoys_spent", None), ("callout.decoys_restored", 3)]
    value = metrics.registry.get_sample_value(
        "callout_throttled_total", {"scope": "decoys"}
    )
    assert value == 3


async def test_a_paced_result_waits_like_a_check_without_holding_the_thread() -> None:
    """After a 0.2 s check a paced one comes 0.2 s after its pick; no thread waits."""
    lane: ColdLane[str] = ColdLane(1, paced=lambda r: r == "paced")
    loop = asyncio.get_running_loop()

    def submit(fn: Callable[[], str]) -> asyncio.Future[object]:
        return lane.submit(
            fn, deadline=lambda: float("inf"), received=time.monotonic(), loop=loop
        )  # type: ignore[return-value]

    def check() -> str:
        time.sleep(0.2)  # a check of 0.2 s, as the lane measures it
        return "checked"

    await submit(check)
    started = time.monotonic()
    paced, quick = submit(lambda: "paced"), submit(lambda: "quick")
    done = [
        (await future, time.monotonic() - started)
        for future in asyncio.as_completed([paced, quick])
    ]
    lane.close()

    assert [result for result, _ in done] == ["quick", "paced"]
    assert done[0][1] < 0.1
    assert 0.19 <= done[1][1] < 0.6
    assert lane.pace() >= 0.19  # drawn from the checks that ran


def _request(user: str, password: str) -> bytes:
    body, _ = make_request(
        FakeServer(),
        issuer_account=ISSUER.public_key,
        connect_opts={"user": user, "pass": password},
        now=int(time.time()),
    )
    return body


def _timed(sent: dict[str, float], name: str) -> Callable[[bytes], Awaitable[None]]:
    started = time.perf_counter()

    async def respond(_reply: bytes) -> None:
        sent[name] = time.perf_counter() - started

    return respond


async def test_paced_unknown_names_take_as_long_as_wrong_passwords() -> None:
    """Budget spent, cost-11 hashes: the refusals' medians agree; no decoy bcrypt."""
    dispatcher, metrics, _ = build_dispatcher(_policy(cost=11), ISSUER, threads=1)
    sent: dict[str, float] = {}
    await dispatcher.dispatch(_request("spender", "x"), None, _timed(sent, "spend"))
    await dispatcher.wait()  # the one token's decoy; checks now have a duration
    checks = dispatcher.login_cache.checks
    assert checks == 1  # taken on the cold lane, not by the fast attempt too
    unknown, wrong = [], []
    for n in range(8):
        for name, user in (("u", f"nobody-{n}"), ("w", "john-doe")):
            await dispatcher.dispatch(_request(user, "guess"), None, _timed(sent, name))
            await dispatcher.wait()
        unknown.append(sent["u"])
        wrong.append(sent["w"])
    dispatcher.close()

    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.6 < ratio < 1.6, (unknown, wrong)
    assert dispatcher.login_cache.checks - checks == 8  # the wrong passwords only
    paced = metrics.registry.get_sample_value(
        "callout_throttled_total", {"scope": "decoys"}
    )
    assert paced == 8


async def test_a_cached_login_is_not_slowed_by_paced_refusals() -> None:
    """Ten paced refusals pending: john-doe's cached login is answered inline."""
    dispatcher, _, _ = build_dispatcher(_policy(), ISSUER, threads=1)
    dispatcher.cold.cost = 0.5  # as if bcrypt were slow: the paced wait is long
    sent: dict[str, float] = {}
    await dispatcher.dispatch(_request("john-doe", "jd-pw"), None, _timed(sent, "in"))
    await dispatcher.dispatch(_request("spender", "x"), None, _timed(sent, "spend"))
    await dispatcher.wait()  # john-doe cached; the one decoy spent
    for n in range(10):
        await dispatcher.dispatch(
            _request(f"nobody-{n}", "x"), None, _timed(sent, f"u{n}")
        )

    await dispatcher.dispatch(_request("john-doe", "jd-pw"), None, _timed(sent, "jd"))
    answered_inline = "jd" in sent
    await dispatcher.wait()
    dispatcher.close()

    assert answered_inline
    assert sent["jd"] < 0.05
    assert dispatcher.login_cache.hits == 1
