"""
The login throttle as the policy sees it: asked before a secret check.

The throttle itself (counters, back-offs) lives in dispatch/throttle.py;
evaluate only needs its two answers, and the cache's "seen before".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

CheckSecret = Callable[[str, str], bool]


class Guard(Protocol):
    """
    What the login throttle says before a secret check (dispatch/throttle.py).

    Asked only for password and token logins, whose checks cost bcrypt.
    """

    def blocked(self, principal: str, host: str) -> bool:
        """The principal is in back-off at this address: refuse, any secret."""
        ...

    def spends(self, host: str) -> bool:
        """A login from this address that needs bcrypt may run it."""
        ...

    def decoy(self, host: str) -> bool:
        """An unknown name from this address may have its decoy check now."""
        ...


@dataclass(frozen=True, slots=True)
class Gate:
    """The guard, the source address, and how to ask the cache without bcrypt."""

    guard: Guard
    host: str
    holds: CheckSecret

    def refuses(
        self, principal: str | None, hashes: Iterable[str], secret: str
    ) -> bool:
        # asked for an unknown name too ("" names no principal and is never
        # blocked): the same work, so the time to a refusal tells nothing
        if self.guard.blocked(principal or "", self.host) and principal:
            return True
        if any(self.holds(hashed, secret) for hashed in hashes):
            return False  # verified before: no bcrypt to spend
        return not self.guard.spends(self.host)

    def decoys(self) -> bool:
        """A decoy check may run (else the refusal is paced without one)."""
        return self.guard.decoy(self.host)
