"""
The global budget of decoy checks (policy `throttle.decoys_per_second`).

An unknown name gets a decoy bcrypt so that its refusal takes as long as a
known name's wrong password. The per-address budget (dispatch/throttle.py)
stops one address from spending many; this bucket stops many addresses
from spending the cores between them. Once it is empty, unknown names are
refused without a decoy and the cold lane paces the refusal instead
(dispatch/coldlane.py), so the timing still does not tell names apart.

Per process: it guards that process's cold lane, which is what a decoy
costs. Thread-safe: `take` is asked on the cold lane's threads; `report`
runs on the event loop, which writes the log lines.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import structlog

from service.policy.throttle import DECOY_BURST

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger("callout")


class DecoyBudget:
    """A token bucket of `rate` decoy checks a second."""

    def __init__(
        self, rate: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = rate
        self._tokens = self._capacity = max(1.0, rate * DECOY_BURST)
        self._at = clock()
        self._paced = 0  # refusals paced since the budget ran out
        self._spent = False  # it ran out (and no decoy ran since)
        self._told = False  # ... and that was logged

    def configure(self, rate: float) -> None:
        """A (reloaded) policy's rate; the tokens left stay, up to the new capacity."""
        with self._lock:
            self._refill()
            self._rate = rate
            self._capacity = max(1.0, rate * DECOY_BURST)
            self._tokens = min(self._tokens, self._capacity)

    def _refill(self) -> None:
        now = self._clock()  # under the lock
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def take(self) -> bool:
        """One decoy check may run now (a token taken); False: pace instead."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                self._spent = False
                return True
            self._spent = True
            self._paced += 1
            return False

    def report(self) -> None:
        """Log the budget running out and coming back (one line each)."""
        with self._lock:
            spent, told, paced = self._spent, self._told, self._paced
            if spent != told:
                self._told = spent
            if not spent and told:
                self._paced = 0
        if spent and not told:
            log.warning("callout.decoys_spent", decoys_per_second=self._rate)
        elif told and not spent:
            log.info("callout.decoys_restored", paced=paced)
