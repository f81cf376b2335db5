"""
A cache of verified logins (HMACs of them, never secrets), so reconnect
storms skip bcrypt.

bcrypt costs ~0.3 s of CPU at cost 12; the server gives the callout 2 s.
Only successes are cached, keyed by an HMAC under a random key made at startup:
the cache holds nothing that helps anyone recover or replay a secret, and a
wrong secret always pays the full bcrypt price. It is bounded, entries
expire, and `clear()` runs on every policy change.

Under `run --workers N` the workers share one key (handed over by their
supervisor, never written anywhere) and tell each other every new success
(service/dispatch/cachepeers.py), so a user checked on one worker is a hit on all.
With a state bucket (CALLOUT_STATE_BUCKET) the replicas share a key derived
from the issuer seed and keep the successes in the bucket as well
(service/process/statelink.py), so a restarted replica starts warm.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from service.policy.passwords import bcrypt_check

if TYPE_CHECKING:
    from collections.abc import Callable

KEY_SIZE = 32  # the HMAC key
DIGEST_SIZE = 32  # HMAC-SHA256: one cache entry, as siblings exchange them


class LoginCache:
    """
    `check(hashed, secret)` with a bounded, expiring cache of successes.

    Thread-safe: checks run on a thread pool.
    """

    def __init__(
        self,
        *,
        ttl: float = 600.0,
        max_entries: int = 100_000,
        check: Callable[[str, str], bool] = bcrypt_check,
        clock: Callable[[], float] = time.monotonic,
        key: bytes | None = None,
        on_success: Callable[[bytes], None] | None = None,
    ) -> None:
        self._key = key if key is not None else os.urandom(KEY_SIZE)
        self._ttl = ttl
        self._max = max_entries
        self._check = check
        self._clock = clock
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.checks = 0  # secret checks run (bcrypt), hits and misses aside
        # Called with the digest of each new success (from a checking thread).
        self._listeners = [] if on_success is None else [on_success]
        self._cleared: list[Callable[[], None]] = []

    def _digest(self, hashed: str, secret: str) -> bytes:
        msg = hashed.encode() + b"\0" + secret.encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def __call__(self, hashed: str, secret: str) -> bool:
        """True when `secret` matches the bcrypt `hashed`."""
        digest = self._digest(hashed, secret)
        now = self._clock()
        with self._lock:
            expires = self._entries.get(digest)
            if expires is not None and expires > now:
                self._entries.move_to_end(digest)
                self.hits += 1
                return True
        self.misses += 1
        ok = self._check(hashed, secret)
        self.checks += 1
        if not ok:
            return False
        self.learn(digest)
        for tell in self._listeners:
            tell(digest)
        return True

    def listen(self, tell: Callable[[bytes], None]) -> None:
        """Have `tell` called with each new success's digest (from any thread)."""
        self._listeners.append(tell)

    def holds(self, hashed: str, secret: str) -> bool:
        """Whether this login was verified before (an HMAC lookup, no bcrypt)."""
        digest = self._digest(hashed, secret)
        with self._lock:
            expires = self._entries.get(digest)
        return expires is not None and expires > self._clock()

    def learn(self, digest: bytes, age: float = 0.0) -> None:
        """Remember a success checked elsewhere `age` seconds ago, by digest."""
        if len(digest) != DIGEST_SIZE or age >= self._ttl:
            return
        with self._lock:
            self._entries[digest] = self._clock() + self._ttl - max(0.0, age)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def on_clear(self, then: Callable[[], None]) -> None:
        """Have `then` called after each `clear` (on the clearing thread)."""
        self._cleared.append(then)

    def clear(self) -> None:
        """Forget everything (a policy change may have changed the hashes)."""
        with self._lock:
            self._entries.clear()
        for then in self._cleared:
            then()
