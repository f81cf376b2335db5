"""The state bucket's link without a server: keys, entries read and written."""

from __future__ import annotations

import json

from service.dispatch.sharedkey import derive, replica_key
from service.dispatch.throttle import ThrottleEvent
from service.process.statelink import StateLink
from service.protocol.nkeys import KeyPair, Prefix

NOW = 1_800_000_000.0


def _link() -> tuple[StateLink, list[tuple[bytes, float]], list[ThrottleEvent]]:
    successes: list[tuple[bytes, float]] = []
    events: list[ThrottleEvent] = []
    link = StateLink(
        "state",
        ttl=600,
        learn_success=lambda digest, age: successes.append((digest, age)),
        learn_event=events.append,
        event_ttl=lambda: 60.0,
        wall=lambda: NOW,
    )
    return link, successes, events


def test_replicas_derive_one_key_from_the_issuer_seed_and_nothing_else() -> None:
    """Same seed, same key; another seed or purpose, another key; never the seed."""
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()
    other = KeyPair.create(Prefix.ACCOUNT).export_seed()

    assert replica_key(seed) == replica_key(seed)
    assert replica_key(seed) != replica_key(other)
    cache, throttle = (
        derive(replica_key(seed), p) for p in ("login cache", "throttle")
    )
    assert cache != throttle
    assert seed.encode() not in replica_key(seed)
    assert derive(None, "throttle") is None


def test_entries_of_both_kinds_are_fed_in_with_their_age() -> None:
    """A cache entry goes to the cache (aged), a throttle event to the throttle."""
    link, successes, events = _link()
    event = ThrottleEvent(b"i" * 16, "principal", b"k" * 32, NOW - 5)

    link._apply("c." + "ab" * 32, json.dumps({"at": NOW - 30}).encode())
    link._apply(
        "t." + event.id.hex(),
        json.dumps(
            {"kind": "principal", "key": event.key.hex(), "at": event.at}
        ).encode(),
    )

    assert successes == [(bytes.fromhex("ab" * 32), 30.0)]
    assert events == [event]


def test_entries_not_written_by_a_replica_are_ignored() -> None:
    """Garbage, other keys and forged kinds change nothing."""
    link, successes, events = _link()
    for key, value in (
        ("c.zz", b'{"at": 1}'),
        ("t." + "00" * 16, b'{"kind": "admin", "key": "' + b"00" * 32 + b'", "at": 1}'),
        (
            "t." + "00" * 15,
            b'{"kind": "address", "key": "' + b"00" * 32 + b'", "at": 1}',
        ),
        ("other", b'{"at": 1}'),
        ("c." + "ab" * 32, b"not json"),
    ):
        assert link._apply(key, value) is None

    assert successes == []
    assert events == []


def test_before_it_is_started_telling_is_a_no_op() -> None:
    """A replica whose bucket could not be opened still decides: writes go nowhere."""
    link, _, _ = _link()

    link.tell_success(b"d" * 32)
    link.tell_event(ThrottleEvent(b"i" * 16, "address", b"k" * 32, NOW))

    assert link._queue is None
