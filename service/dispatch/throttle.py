"""
The login throttle: failure counters and back-offs (policy/throttle.py says
what they mean; this module keeps them).

Counters are keyed by an HMAC of the principal and address under a random
key made at startup, so the table holds no names, no addresses and nothing
about a secret. They live in this process: under `run --workers N` or with
several replicas an attacker's attempts are spread over N counters, so the
effective limits are N times the policy's (docs/security.md says so).

Thread-safe: `blocked` and `spends` are asked from the lanes' threads;
`observe` runs on the event loop after each decision, which is also where
back-offs start and end, and where their log lines are written.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.handler import Outcome
    from service.ops.metrics import Metrics
    from service.policy.throttle import Throttle

log = structlog.get_logger("callout")

Scope = Literal["principal", "address"]
# Denials that mean "a secret was tried and was wrong" (or named nobody).
FAILURES = frozenset({"bad_password", "unknown_user", "unknown_token"})
MAX_COUNTERS = 100_000  # a spray of addresses or names cannot grow it past this


@dataclass(slots=True)
class _Counter:
    scope: Scope
    user: str | None  # for the log line of a principal's back-off
    host: str
    failures: deque[float] = field(default_factory=deque)
    trips: int = 0
    until: float = 0.0  # end of the current back-off (monotonic), 0: none


class LoginThrottle:
    """`Guard` for `evaluate`, fed by every decision through `observe`."""

    def __init__(
        self,
        config: Throttle,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counters: OrderedDict[bytes, _Counter] = OrderedDict()
        self._active: dict[bytes, _Counter] = {}
        self.configure(config)

    def configure(self, config: Throttle) -> None:
        """Take a (reloaded) policy's limits; counters and back-offs stay."""
        self._config = config
        self._exempt = tuple(ipaddress.ip_network(n) for n in config.exempt_networks)

    def _id(self, *parts: str) -> bytes:
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _exempted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # not an address we know: counted like any other
        return any(address in network for network in self._exempt)

    def _in_backoff(self, key: bytes, scope: Scope) -> bool:
        with self._lock:
            counter = self._counters.get(key)
            active = counter is not None and counter.until > self._clock()
        if active and self._metrics is not None:
            self._metrics.throttle(scope)
        return active

    def blocked(self, principal: str, host: str) -> bool:
        """The principal is in back-off at this address (refuse, any secret)."""
        if self._exempted(host):
            return False
        return self._in_backoff(self._id("p", principal, host), "principal")

    def spends(self, host: str) -> bool:
        """A login from this address that needs bcrypt may run it."""
        if self._exempted(host):
            return True
        return not self._in_backoff(self._id("a", host), "address")

    def observe(self, outcome: Outcome) -> None:
        """Count a decided login: failures add up, a success clears its principal."""
        host = outcome.client_host
        now = self._clock()
        self._sweep(now)
        if not host or self._exempted(host):
            return
        if outcome.decision == "allow" and outcome.user is not None:
            with self._lock:
                self._counters.pop(self._id("p", outcome.user, host), None)
            return
        if outcome.decision != "deny" or outcome.reason not in FAILURES:
            return
        config = self._config
        if outcome.user is not None:
            self._fail("principal", outcome.user, host, config.failures, now)
        self._fail("address", None, host, config.address_failures, now)

    def _fail(
        self, scope: Scope, user: str | None, host: str, limit: int, now: float
    ) -> None:
        key = self._id("p", user, host) if user is not None else self._id("a", host)
        config = self._config
        with self._lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter(scope, user, host)
                while len(self._counters) > MAX_COUNTERS:
                    oldest, _ = self._counters.popitem(last=False)
                    self._active.pop(oldest, None)
            self._counters.move_to_end(key)
            if counter.until > now:
                return  # attempts refused during a back-off are no new failures
            if counter.until and now - counter.until > config.max_backoff:
                counter.trips = 0  # quiet long enough: start over at `backoff`
            failures = counter.failures
            failures.append(now)
            while failures and failures[0] <= now - config.window:
                failures.popleft()
            if len(failures) < limit:
                return
            seconds = min(config.backoff * 2**counter.trips, config.max_backoff)
            counter.trips += 1
            counter.until = now + seconds
            failures.clear()
            self._active[key] = counter
        log.warning(
            "callout.backoff_started",
            scope=scope,
            user=user,
            client_host=host,
            seconds=seconds,
            failures=limit,
        )

    def _sweep(self, now: float) -> None:
        """Log the back-offs that are over (one line each)."""
        with self._lock:
            ended = [(k, c) for k, c in self._active.items() if c.until <= now]
            for key, _ in ended:
                del self._active[key]
        for _, counter in ended:
            log.info(
                "callout.backoff_ended",
                scope=counter.scope,
                user=counter.user,
                client_host=counter.host,
            )

    def active(self, scope: str) -> int:
        """Back-offs in force now, of one scope (for the gauge)."""
        now = self._clock()
        with self._lock:
            return sum(
                c.scope == scope and c.until > now for c in self._active.values()
            )
