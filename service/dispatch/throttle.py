"""
The login throttle: failure counters and back-offs (policy/throttle.py says
what they mean; this module keeps them).

Counters are keyed by an HMAC of the principal and address, so the table
holds no names, no addresses and nothing about a secret. The key is random
for a process alone; processes that share their state share the key (the
workers of `run --workers N` get it from their supervisor, replicas with a
state bucket derive it from the issuer seed: dispatch/sharedkey.py).

Sharing: the queue group spreads an attacker's attempts over every worker
and replica, so each counted failure is also told to `listen`ers as a
`ThrottleEvent` (an id, the counter's HMAC, a wall-clock time: no name or
address) and failures told by others are counted through `learn`. Each
process counts the union of the failures and reaches the same back-offs;
an event heard twice (from the supervisor and from the bucket, or our own
coming back) counts once, by its random id. Sharing is best effort: a lost
event only makes the effective limit a little higher.

The global budget of decoy checks (dispatch/decoys.py) is asked through
`decoy`; it is per process and not shared.

Thread-safe: `blocked`, `spends` and `decoy` are asked from the lanes' threads;
`observe` and `learn` run on the event loop, which is also where
back-offs start and end, and where their log lines are written.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import math
import os
import struct
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import structlog

from service.dispatch.decoys import DecoyBudget

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.handler import Outcome
    from service.ops.metrics import Metrics
    from service.policy.throttle import Throttle

log = structlog.get_logger("callout")

Scope = Literal["principal", "address"]
# what an event says of its counter: one failure of a scope, or a success
# (the principal's earlier failures no longer count)
Kind = Literal["principal", "address", "cleared"]
# Denials that mean "a secret was tried and was wrong" (or named nobody).
FAILURES = frozenset({"bad_password", "unknown_user", "unknown_token"})
MAX_COUNTERS = 100_000  # a spray of addresses or names cannot grow it past this
MAX_SEEN = 100_000  # event ids remembered to count each event once
KEY_SIZE = 32
_ID_SIZE = 16
EVENT_SIZE = _ID_SIZE + 1 + KEY_SIZE + 8  # id, kind, counter key, wall time
_KINDS: dict[bytes, Kind] = {b"p": "principal", b"a": "address", b"c": "cleared"}


@dataclass(frozen=True, slots=True)
class ThrottleEvent:
    """One counted failure (or a success), as sharing processes tell it."""

    id: bytes  # random: heard twice, counted once
    kind: Kind
    key: bytes  # the counter's HMAC: names no one
    at: float  # wall clock (time.time): comparable across hosts

    def pack(self) -> bytes:
        """The fixed-size packet the supervisor relays between workers."""
        return self.id + self.kind[0].encode() + self.key + struct.pack("!d", self.at)

    @classmethod
    def parse(
        cls, id_: bytes, kind: str, key: bytes, at: float
    ) -> ThrottleEvent | None:
        """An event from its fields as read elsewhere (a bucket); None if not one."""
        if len(id_) != _ID_SIZE or len(key) != KEY_SIZE or not math.isfinite(at):
            return None
        known = _KINDS.get(kind[:1].encode())
        return cls(id_, known, key, at) if known == kind else None

    @classmethod
    def unpack(cls, data: bytes) -> ThrottleEvent | None:
        """The event in a packet; None for anything else."""
        kind = _KINDS.get(data[_ID_SIZE : _ID_SIZE + 1])
        if len(data) != EVENT_SIZE or kind is None:
            return None
        (at,) = struct.unpack("!d", data[-8:])
        if not math.isfinite(at):
            return None
        return cls(data[:_ID_SIZE], kind, data[_ID_SIZE + 1 : -8], at)


@dataclass(slots=True)
class _Counter:
    scope: Scope
    # who, for the log lines: known once this process saw one of the failures
    # itself; a counter only heard of from others stays "" and logs nothing
    # (the processes that saw the attacker say who it was)
    user: str | None = None
    host: str = ""
    failures: deque[float] = field(default_factory=deque)
    trips: int = 0
    until: float = 0.0  # end of the current back-off (monotonic), 0: none
    announced: bool = False  # its back-off_started was logged here


class LoginThrottle:
    """`Guard` for `evaluate`, fed by every decision through `observe`."""

    def __init__(
        self,
        config: Throttle,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        key: bytes | None = None,
        deferring: Callable[[], bool] = lambda: False,
    ) -> None:
        self._key = key if key is not None else os.urandom(KEY_SIZE)
        self._clock = clock
        self._wall = wall
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counters: OrderedDict[bytes, _Counter] = OrderedDict()
        self._active: dict[bytes, _Counter] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._listeners: list[Callable[[ThrottleEvent], None]] = []
        # a fast attempt asks `decoy` too, but only defers to the cold lane,
        # which asks again before the check: the token is taken there, once
        self._deferring = deferring
        self.decoys = DecoyBudget(config.decoys_per_second, clock=clock)
        self.configure(config)

    def configure(self, config: Throttle) -> None:
        """Take a (reloaded) policy's limits; counters and back-offs stay."""
        self._config = config
        self.decoys.configure(config.decoys_per_second)
        self._exempt = tuple(ipaddress.ip_network(n) for n in config.exempt_networks)

    @property
    def memory(self) -> float:
        """Seconds an event can still matter: a window, then the longest back-off."""
        return self._config.window + self._config.max_backoff

    def listen(self, tell: Callable[[ThrottleEvent], None]) -> None:
        """Have `tell` called (on the event loop) with each event counted here."""
        self._listeners.append(tell)

    def _id(self, *parts: str) -> bytes:
        message = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _exempted(self, host: str) -> bool:
        if not self._exempt:
            return False  # the default: no address to parse on every login
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
        # no counter at all (the usual case): nothing can be in back-off, and
        # an honest login pays no HMAC for the throttle
        if not self._counters or self._exempted(host):
            return False
        return self._in_backoff(self._id("p", principal, host), "principal")

    def spends(self, host: str) -> bool:
        """A login from this address that needs bcrypt may run it."""
        if not self._counters or self._exempted(host):
            return True
        return not self._in_backoff(self._id("a", host), "address")

    def decoy(self, host: str) -> bool:
        """An unknown name from this address may have its decoy check now."""
        if self._exempted(host) or self._deferring():
            return True
        return self.decoys.take()

    def observe(self, outcome: Outcome) -> None:
        """Count a decided login: failures add up, a success clears its principal."""
        host = outcome.client_host
        now = self._clock()
        self._sweep(now)
        if outcome.paced and self._metrics is not None:
            self._metrics.throttle("decoys")
        self.decoys.report()
        if not host or self._exempted(host):
            return
        if outcome.decision == "allow" and outcome.user is not None:
            if not self._counters:
                return  # no failure anywhere: nothing to clear
            key = self._id("p", outcome.user, host)
            if self._clear(key, now):
                self._tell("cleared", key)
            return
        if outcome.decision != "deny" or outcome.reason not in FAILURES:
            return
        if outcome.user is not None:
            key = self._id("p", outcome.user, host)
            if self._fail(key, "principal", now, (outcome.user, host)):
                self._tell("principal", key)
        key = self._id("a", host)
        if self._fail(key, "address", now, (None, host)):
            self._tell("address", key)

    def learn(self, event: ThrottleEvent) -> None:
        """Count an event another process told (once, however often heard)."""
        with self._lock:
            if event.id in self._seen:
                return
            self._remember(event.id)
        now = self._clock()
        # its time on our clock; a peer's clock ahead of ours is "just now"
        at = now - max(0.0, self._wall() - event.at)
        self._sweep(now)
        if event.kind == "cleared":
            self._clear(event.key, at)
        else:
            self._fail(event.key, event.kind, at, None)

    def _remember(self, event_id: bytes) -> None:
        self._seen[event_id] = None  # under the lock
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)

    def _tell(self, kind: Kind, key: bytes) -> None:
        if not self._listeners:
            return
        event = ThrottleEvent(os.urandom(_ID_SIZE), kind, key, self._wall())
        with self._lock:
            self._remember(event.id)  # ours, coming back: already counted
        for tell in self._listeners:
            tell(event)

    def _clear(self, key: bytes, at: float) -> bool:
        """A success: the principal's failures up to `at` no longer count."""
        with self._lock:
            counter = self._counters.get(key)
            if counter is None or counter.until > at:
                return False  # nothing to clear; a back-off is never lifted
            failures, before = counter.failures, (len(counter.failures), counter.trips)
            while failures and failures[0] <= at:
                failures.popleft()
            counter.trips = 0  # the owner got in: the next back-off starts short
            return (len(failures), 0) != before  # tell others only of a change

    def _fail(
        self, key: bytes, scope: Scope, at: float, who: tuple[str | None, str] | None
    ) -> bool:
        """Count one failure at `at` (monotonic); whether it counted."""
        config = self._config
        limit = config.failures if scope == "principal" else config.address_failures
        with self._lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter(scope)
                while len(self._counters) > MAX_COUNTERS:
                    oldest, _ = self._counters.popitem(last=False)
                    self._active.pop(oldest, None)
            self._counters.move_to_end(key)
            if who is not None:
                counter.user, counter.host = who
            if counter.until > at:
                return False  # attempts refused during a back-off are no new failures
            if counter.until and at - counter.until > config.max_backoff:
                counter.trips = 0  # quiet long enough: start over at `backoff`
            failures = counter.failures
            bisect.insort(failures, at)  # others' events may come late
            while failures and failures[0] <= self._clock() - config.window:
                failures.popleft()
            if len(failures) < limit:
                return True
            seconds = min(config.backoff * 2**counter.trips, config.max_backoff)
            counter.trips += 1
            counter.until = at + seconds
            counter.announced = bool(counter.host)
            failures.clear()
            self._active[key] = counter
        if counter.announced:
            log.warning(
                "callout.backoff_started",
                scope=scope,
                user=counter.user,
                client_host=counter.host,
                seconds=seconds,
                failures=limit,
            )
        return True

    def _sweep(self, now: float) -> None:
        """Log the back-offs that are over (one line each)."""
        with self._lock:
            ended = [(k, c) for k, c in self._active.items() if c.until <= now]
            for key, _ in ended:
                del self._active[key]
        for _, counter in ended:
            if counter.announced:
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
