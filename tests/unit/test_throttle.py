"""The login throttle: back-offs per principal and address, and what they refuse."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from service.dispatch.throttle import LoginThrottle, ThrottleEvent
from service.handler import Outcome
from service.ops.metrics import Metrics
from service.policy import Deny, evaluate, parse_policy
from service.policy.throttle import Throttle
from tests.builders import hash_secret
from tests.factories import decoded_request

if TYPE_CHECKING:
    from collections.abc import Callable


CONFIG = Throttle(failures=3, address_failures=5, window=60, backoff=10, max_backoff=40)
HOST, OTHER = "198.51.100.7", "203.0.113.9"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(config: Throttle = CONFIG) -> tuple[LoginThrottle, Clock, Metrics]:
    clock, metrics = Clock(), Metrics()
    return LoginThrottle(config, metrics=metrics, clock=clock), clock, metrics


def _fail(throttle: LoginThrottle, user: str | None, host: str = HOST) -> None:
    reason = "bad_password" if user else "unknown_user"
    throttle.observe(
        Outcome(decision="deny", reply=b"", reason=reason, user=user, client_host=host)
    )


def test_a_principal_is_blocked_after_its_failures_at_that_address_only() -> None:
    """Three failures block john-doe at this address; another address is fine."""
    throttle, _, _ = _throttle()
    for _ in range(2):
        _fail(throttle, "john-doe")
    assert not throttle.blocked("john-doe", HOST)

    _fail(throttle, "john-doe")

    assert throttle.blocked("john-doe", HOST)
    assert not throttle.blocked("john-doe", OTHER)
    assert not throttle.blocked("alice", HOST)


def test_the_backoff_ends_doubles_and_is_capped() -> None:
    """10 s, then 20 s, then 40 s (the cap), each after three more failures."""
    throttle, clock, _ = _throttle()
    lengths = []
    for _ in range(4):
        start = clock.now
        for _ in range(3):
            _fail(throttle, "john-doe")
        while throttle.blocked("john-doe", HOST):
            clock.now += 1
        lengths.append(clock.now - start)

    assert lengths == [10, 20, 40, 40]


def test_failures_refused_during_a_backoff_do_not_extend_it() -> None:
    """Attempts while blocked are no new failures: the back-off ends on time."""
    throttle, clock, _ = _throttle()
    for _ in range(3):
        _fail(throttle, "john-doe")
    for _ in range(50):
        _fail(throttle, "john-doe")

    clock.now += 10

    assert not throttle.blocked("john-doe", HOST)


def test_a_success_clears_the_principals_failures() -> None:
    """Two failures, a success, two failures: not blocked."""
    throttle, _, _ = _throttle()
    for _ in range(2):
        _fail(throttle, "john-doe")
    throttle.observe(
        Outcome(decision="allow", reply=b"", user="john-doe", client_host=HOST)
    )
    for _ in range(2):
        _fail(throttle, "john-doe")

    assert not throttle.blocked("john-doe", HOST)


def test_failures_outside_the_window_do_not_count() -> None:
    """Two old failures and one new one stay under the limit."""
    throttle, clock, _ = _throttle()
    for _ in range(2):
        _fail(throttle, "john-doe")
    clock.now += 61
    _fail(throttle, "john-doe")

    assert not throttle.blocked("john-doe", HOST)


def test_an_address_spends_no_bcrypt_after_its_failures() -> None:
    """Five failures of any names from one address stop its bcrypt; others spend."""
    throttle, _, metrics = _throttle()
    for n in range(4):
        _fail(throttle, None if n % 2 else f"user{n}")
    assert throttle.spends(HOST)

    _fail(throttle, None)

    assert not throttle.spends(HOST)
    assert throttle.spends(OTHER)
    assert throttle.active("address") == 1
    sample = metrics.registry.get_sample_value
    assert sample("callout_throttled_total", {"scope": "address"}) == 1


def test_exempt_networks_are_never_throttled() -> None:
    """An address in exempt_networks neither counts nor is refused."""
    config = CONFIG.model_copy(update={"exempt_networks": ("198.51.100.0/24",)})
    throttle, _, _ = _throttle(config)
    for _ in range(10):
        _fail(throttle, "john-doe")

    assert not throttle.blocked("john-doe", HOST)
    assert throttle.spends(HOST)


def test_entering_and_leaving_a_backoff_log_one_line_each() -> None:
    """backoff_started when tripped, backoff_ended at the first decision after it."""
    throttle, clock, _ = _throttle()
    with capture_logs() as logs:
        for _ in range(3):
            _fail(throttle, "john-doe")
        clock.now += 11
        _fail(throttle, "someone")

    events = [(e["event"], e["scope"], e["user"]) for e in logs]
    assert events == [
        ("callout.backoff_started", "principal", "john-doe"),
        ("callout.backoff_ended", "principal", "john-doe"),
    ]
    assert logs[0]["seconds"] == 10
    assert logs[0]["client_host"] == HOST


def test_reasons_that_are_no_wrong_secret_are_not_counted() -> None:
    """Network, connection-type and throttled denials count for nothing."""
    throttle, _, _ = _throttle()
    for reason in ("source_not_allowed", "throttled", "connection_type_not_allowed"):
        for _ in range(5):
            throttle.observe(
                Outcome(
                    decision="deny",
                    reply=b"",
                    reason=reason,
                    user="john-doe",
                    client_host=HOST,
                )
            )

    assert not throttle.blocked("john-doe", HOST)
    assert throttle.spends(HOST)


# --- through evaluate: what a throttled login costs --------------------------

POLICY = parse_policy(
    "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
    f'users:\n  - {{name: john-doe, password: "{hash_secret("right")}"}}\n'
)


def _counting() -> tuple[list[str], Callable[[str, str], bool]]:
    calls: list[str] = []

    def check(hashed: str, secret: str) -> bool:
        calls.append(hashed)
        return secret == "right"

    return calls, check


def _decide(
    throttle: LoginThrottle,
    user: str,
    password: str,
    check: Callable[[str, str], bool],
    *,
    cached: bool = False,
) -> object:
    request = decoded_request({"user": user, "password": password}, client_host=HOST)
    return evaluate(
        POLICY,
        request,
        1_800_000_000,
        check_secret=check,
        guard=throttle,
        holds=lambda _h, _s: cached,
    )


def test_the_right_password_is_refused_during_a_backoff_without_bcrypt() -> None:
    """In back-off, even the right password gets `throttled` and no secret check."""
    throttle, _, _ = _throttle()
    for _ in range(3):
        _fail(throttle, "john-doe")
    calls, check = _counting()

    decision = _decide(throttle, "john-doe", "right", check)

    assert decision == Deny("throttled", user="john-doe")
    assert calls == []


def test_under_an_address_backoff_known_and_unknown_names_look_alike() -> None:
    """No bcrypt for an unknown name or an uncached known one; a cached login passes."""
    throttle, _, _ = _throttle()
    for _ in range(5):
        _fail(throttle, None)
    calls, check = _counting()

    unknown = _decide(throttle, "mallory", "guess", check)
    known = _decide(throttle, "john-doe", "wrong", check)
    cached = _decide(throttle, "john-doe", "right", check, cached=True)

    assert unknown == Deny("throttled")
    assert known == Deny("throttled", user="john-doe")
    assert calls == [POLICY.by_name["john-doe"].credential]  # only the cached one
    assert not isinstance(cached, Deny)


def test_without_a_guard_nothing_changes() -> None:
    """evaluate with no guard (explain, test) runs the secret check as before."""
    calls, check = _counting()
    request = decoded_request(
        {"user": "john-doe", "password": "right"}, client_host=HOST
    )

    decision = evaluate(POLICY, request, 1_800_000_000, check_secret=check)

    assert not isinstance(decision, Deny)
    assert len(calls) == 1


def test_counters_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spray of addresses cannot grow the table past its bound."""
    monkeypatch.setattr("service.dispatch.throttle.MAX_COUNTERS", 10)
    throttle, _, _ = _throttle()
    for n in range(50):
        _fail(throttle, None, host=f"10.0.0.{n}")

    assert len(throttle._counters) == 10


def test_real_time_is_the_default_clock() -> None:
    """Without a clock argument the monotonic clock drives back-offs."""
    throttle = LoginThrottle(CONFIG)
    for _ in range(3):
        _fail(throttle, "john-doe")

    assert throttle.blocked("john-doe", HOST)
    assert (
        throttle._counters[throttle._id("p", "john-doe", HOST)].until > time.monotonic()
    )


# --- shared state: events between processes ---------------------------------

KEY = b"k" * 32


def _pair() -> tuple[LoginThrottle, LoginThrottle, Clock]:
    """Two processes' throttles with one key, each telling the other."""
    clock = Clock()
    first, second = (
        LoginThrottle(CONFIG, clock=clock, wall=clock, key=KEY) for _ in range(2)
    )
    first.listen(second.learn)
    second.listen(first.learn)
    return first, second, clock


def test_failures_spread_over_two_processes_trip_one_backoff_on_both() -> None:
    """Two guesses on one process and one on the other: both refuse john-doe."""
    first, second, _ = _pair()

    _fail(first, "john-doe")
    _fail(second, "john-doe")
    assert not first.blocked("john-doe", HOST)
    _fail(first, "john-doe")

    assert first.blocked("john-doe", HOST)
    assert second.blocked("john-doe", HOST)


def test_an_event_heard_twice_counts_once() -> None:
    """The same event from the supervisor and from the bucket is one failure."""
    sender = LoginThrottle(CONFIG, key=KEY)
    told: list[ThrottleEvent] = []
    sender.listen(told.append)
    _fail(sender, "john-doe")
    _fail(sender, "john-doe")
    receiver = LoginThrottle(CONFIG, key=KEY)

    for event in told * 3:
        receiver.learn(event)
        sender.learn(event)  # our own, coming back

    assert not receiver.blocked("john-doe", HOST)
    assert not sender.blocked("john-doe", HOST)
    _fail(receiver, "john-doe")
    assert receiver.blocked("john-doe", HOST)


def test_a_success_on_another_process_clears_the_principals_failures() -> None:
    """Two failures here, a success there, one failure here: not blocked."""
    first, second, _ = _pair()
    _fail(first, "john-doe")
    _fail(first, "john-doe")

    second.observe(
        Outcome(decision="allow", reply=b"", user="john-doe", client_host=HOST)
    )
    _fail(first, "john-doe")

    assert not first.blocked("john-doe", HOST)


def test_old_events_count_at_their_own_time() -> None:
    """An event older than the window (a late or replayed one) counts for nothing."""
    clock = Clock()
    sender = LoginThrottle(CONFIG, clock=clock, wall=clock, key=KEY)
    told: list[ThrottleEvent] = []
    sender.listen(told.append)
    for _ in range(3):
        _fail(sender, "john-doe")
    clock.now += 61  # the window is 60 s; the back-off (10 s) is long over
    receiver = LoginThrottle(CONFIG, clock=clock, wall=clock, key=KEY)

    for event in told:
        receiver.learn(event)

    assert not receiver.blocked("john-doe", HOST)


def test_a_backoff_heard_of_is_enforced_but_logged_only_where_seen() -> None:
    """A process that saw none of the failures refuses silently; no names sent."""
    sender = LoginThrottle(CONFIG, key=KEY)
    told: list[ThrottleEvent] = []
    sender.listen(told.append)
    for _ in range(3):
        _fail(sender, "john-doe")
    receiver = LoginThrottle(CONFIG, key=KEY)

    with capture_logs() as logs:
        for event in told:
            receiver.learn(event)

    assert receiver.blocked("john-doe", HOST)
    assert logs == []
    packed = b"".join(event.pack() for event in told)
    assert b"john-doe" not in packed
    assert HOST.encode() not in packed
    assert {event.kind for event in told} == {"principal", "address"}


def test_events_survive_their_packets_and_garbage_is_refused() -> None:
    """pack/unpack round-trip; a packet of another size or kind is None."""
    event = ThrottleEvent(b"i" * 16, "cleared", KEY, 1_700_000_000.5)

    assert ThrottleEvent.unpack(event.pack()) == event
    assert ThrottleEvent.unpack(event.pack()[:-1]) is None
    assert ThrottleEvent.unpack(b"i" * 16 + b"x" + event.pack()[17:]) is None


def test_max_backoff_below_backoff_is_refused() -> None:
    """A cap shorter than the first back-off is a policy problem."""
    with pytest.raises(ValueError, match="max_backoff must be at least backoff"):
        Throttle(backoff=60, max_backoff=30)
