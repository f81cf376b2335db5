"""The verification cache: successes cached under an HMAC, bounded, expiring."""

from __future__ import annotations

from service.dispatch.logincache import LoginCache
from service.policy.passwords import bcrypt_check
from tests.builders import hash_secret

HASH = hash_secret("right")


class Counter:
    """A check function that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, hashed: str, secret: str) -> bool:
        self.calls += 1
        return bcrypt_check(hashed, secret)


def test_bcrypt_check_accepts_right_and_refuses_wrong_and_garbage() -> None:
    """bcrypt_check is true only for the right secret; malformed hashes are false."""
    assert bcrypt_check(HASH, "right")
    assert not bcrypt_check(HASH, "wrong")
    assert not bcrypt_check("not-a-hash", "right")


def test_success_is_cached_and_failure_is_not() -> None:
    """A right secret is checked once; a wrong one pays every time."""
    counter = Counter()
    cache = LoginCache(check=counter)

    assert cache(HASH, "right")
    assert cache(HASH, "right")
    assert not cache(HASH, "wrong")
    assert not cache(HASH, "wrong")

    assert counter.calls == 3
    assert cache.hits == 1


def test_cache_holds_no_secret() -> None:
    """Entries are HMAC digests, not the secret or the hash."""
    cache = LoginCache(check=lambda _h, _s: True)
    cache(HASH, "right")

    keys = list(cache._entries)

    assert all(b"right" not in k and HASH.encode() not in k for k in keys)
    assert len(keys[0]) == 32


def test_entries_expire() -> None:
    """After the ttl the secret is checked again."""
    now = [0.0]
    counter = Counter()
    cache = LoginCache(ttl=10, check=counter, clock=lambda: now[0])

    cache(HASH, "right")
    now[0] = 11
    cache(HASH, "right")

    assert counter.calls == 2


def test_size_is_bounded_and_clear_empties() -> None:
    """The oldest entries go first past max_entries; clear() drops all."""
    cache = LoginCache(max_entries=2, check=lambda _h, _s: True)
    for secret in ("a", "b", "c"):
        cache(HASH, secret)

    size = len(cache)
    cache.clear()

    assert size == 2
    assert len(cache) == 0


def test_a_success_is_told_and_a_told_digest_is_a_hit() -> None:
    """Two caches with one key: a success on one is a hit on the other, no check."""
    key = bytes(range(32))
    told: list[bytes] = []
    first, second = Counter(), Counter()
    one = LoginCache(check=first, key=key, on_success=told.append)
    other = LoginCache(check=second, key=key)

    assert one(HASH, "right")
    assert one(HASH, "right")  # a hit: not told again
    assert not one(HASH, "wrong")  # a failure: never told
    for digest in told:
        other.learn(digest)

    assert len(told) == 1
    assert other(HASH, "right")
    assert second.calls == 0
    assert (one.checks, other.checks) == (2, 0)


def test_a_digest_under_another_key_or_of_another_size_is_no_hit() -> None:
    """What a cache learns only counts under its own key; junk is ignored."""
    told: list[bytes] = []
    one = LoginCache(check=Counter(), key=b"a" * 32, on_success=told.append)
    counter = Counter()
    other = LoginCache(check=counter, key=b"b" * 32)

    assert one(HASH, "right")
    other.learn(told[0])
    other.learn(b"short")

    assert len(other) == 1
    assert other(HASH, "right")
    assert counter.calls == 1
