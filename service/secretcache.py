"""
A cache of successful secret checks, so reconnect storms skip bcrypt.

bcrypt costs ~0.3 s of CPU at cost 12; the server gives the callout 2 s.
Only successes are cached, keyed by an HMAC under a per-process random key:
the cache holds nothing that helps anyone recover or replay a secret, and a
wrong secret always pays the full bcrypt price. It is bounded, entries
expire, and `clear()` runs on every policy change.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import bcrypt

if TYPE_CHECKING:
    from collections.abc import Callable


def bcrypt_check(hashed: str, secret: str) -> bool:
    """
    Check a secret against a bcrypt hash (bcrypt compares in constant time).

    Returns:
        False on a mismatch and on any error: a malformed hash, a secret that
        is not encodable or longer than bcrypt's 72 bytes.
    """
    try:
        return bcrypt.checkpw(secret.encode("utf-8"), hashed.encode("ascii"))
    except (ValueError, TypeError):
        return False


class SecretCache:
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
    ) -> None:
        self._key = os.urandom(32)
        self._ttl = ttl
        self._max = max_entries
        self._check = check
        self._clock = clock
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

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
        if not self._check(hashed, secret):
            return False
        with self._lock:
            self._entries[digest] = now + self._ttl
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget everything (a policy change may have changed the hashes)."""
        with self._lock:
            self._entries.clear()
