"""
The live connection view, without IO: every client connection of the
cluster by (server, cid) with its account and principal, for connection
caps (`max_connections`) and the `callout_live_connections` gauge
(docs/operations.md "Connection caps").

It is fed by the servers' `$SYS.ACCOUNT.<acc>.CONNECT|DISCONNECT` events
(`apply`) and corrected by a CONNZ of the whole cluster (`begin_refresh`,
then `finish_refresh`): events that arrive while that CONNZ is on its way
are journaled and replayed on top of the snapshot, so that a connection
closed (or opened) meanwhile is not brought back (or lost).

A connection this process has just admitted is not in any report yet: the
server registers it after our reply, and its CONNECT event takes a moment
more. `take` counts it at once, as pending under its (server, cid), which
the authorization request names; the event or a CONNZ that shows that
seat ends the pending entry, and so does `PENDING_FOR` (a reply the server
never used: the client left, or the reply came too late).

`take` runs on the decision lanes' threads, the rest on the event loop:
one lock, held for dictionary work only.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from service.review.sessions import Connection, account_names

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service.policy import Allow, Policy

Seat = tuple[str, int]  # (server_id, cid)
Key = tuple[str, str]  # (account as the servers name it, principal name)

# seconds an admitted connection counts before the servers report it: well
# past the server's auth timeout (2 s by default), after which it is gone
PENDING_FOR = 5.0
_KINDS = {
    "io.nats.server.advisory.v1.client_connect": "connect",
    "io.nats.server.advisory.v1.client_disconnect": "disconnect",
}


@dataclass(frozen=True, slots=True)
class Event:
    """A CONNECT or DISCONNECT event of one client connection."""

    kind: Literal["connect", "disconnect"]
    connection: Connection


def parse_event(payload: bytes) -> Event | None:
    """A `$SYS.ACCOUNT.<acc>.CONNECT|DISCONNECT` event, or None if it is not one."""
    try:
        data = json.loads(payload)
        kind = _KINDS[data["type"]]
        client = data["client"]
        conn = Connection(
            server_id=str(data["server"]["id"]),
            cid=int(client["id"]),
            account=str(client.get("acc", "")),
            # the issued user JWT's name, as CONNZ's authorized_user
            user=str(client.get("user", "")),
            kind=str(client.get("client_type", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return Event("connect" if kind == "connect" else "disconnect", conn)


def keys_of(policy: Policy, allow: Allow) -> frozenset[Key]:
    """The keys under which the servers report `allow`'s connections."""
    return frozenset((a, allow.user) for a in account_names(policy, allow.account))


class LiveView:
    """Who is connected where, plus the connections admitted here just now."""

    def __init__(self, pending_for: float = PENDING_FOR) -> None:
        self._lock = threading.Lock()
        self._pending_for = pending_for
        self._live: dict[Seat, Key] = {}
        self._counts: Counter[Key] = Counter()
        self._accounts: Counter[str] = Counter()
        self._pending: dict[Seat, tuple[frozenset[Key], float]] = {}
        self._journal: list[Event] | None = None
        self.refreshes = 0  # complete snapshots taken in so far

    def apply(self, event: Event) -> bool:
        """One CONNECT or DISCONNECT event; whether it changed the view."""
        with self._lock:
            if self._journal is not None:
                self._journal.append(event)
            return self._apply(event)

    def begin_refresh(self) -> None:
        """A CONNZ is on its way: keep the events until it is in."""
        with self._lock:
            self._journal = []

    def finish_refresh(self, connections: Iterable[Connection]) -> None:
        """Replace the view with a CONNZ snapshot and the events since it was asked."""
        with self._lock:
            journal, self._journal = self._journal or [], None
            self._live.clear()
            self._counts.clear()
            self._accounts.clear()
            for conn in connections:
                self._add(conn)
            for event in journal:
                self._apply(event)
            for seat in self._live.keys() & self._pending.keys():
                del self._pending[seat]
            self.refreshes += 1

    def abandon_refresh(self) -> None:
        """The CONNZ failed: keep the view as the events made it."""
        with self._lock:
            self._journal = None

    def take(self, keys: frozenset[Key], seat: Seat, cap: int, now: float) -> bool:
        """
        Count a new connection at `seat` unless `keys` hold `cap` already.

        Returns:
            False when the principal is at its cap (nothing is counted then).
        """
        with self._lock:
            self._expire(now)
            held = sum(self._counts[k] for k in keys) + sum(
                1 for k, _ in self._pending.values() if k & keys
            )
            if held >= cap:
                return False
            self._pending[seat] = (keys, now + self._pending_for)
            return True

    def held(self, keys: frozenset[Key], now: float) -> int:
        """How many connections `keys` hold, pending ones included."""
        with self._lock:
            self._expire(now)
            pending = sum(1 for k, _ in self._pending.values() if k & keys)
            return sum(self._counts[k] for k in keys) + pending

    def per_account(self) -> dict[str, int]:
        """Live connections per account, as the servers reported them."""
        with self._lock:
            return dict(self._accounts)  # zeros too, until the next snapshot

    def _apply(self, event: Event) -> bool:
        conn = event.connection
        seat = (conn.server_id, conn.cid)
        self._pending.pop(seat, None)
        if event.kind == "connect":
            return self._add(conn)
        return self._remove(seat)

    def _add(self, conn: Connection) -> bool:
        seat = (conn.server_id, conn.cid)
        if seat in self._live:
            return False  # a snapshot and a replayed event may both name it
        key = (conn.account, conn.user)
        self._live[seat] = key
        self._counts[key] += 1
        self._accounts[conn.account] += 1
        return True

    def _remove(self, seat: Seat) -> bool:
        key = self._live.pop(seat, None)
        if key is None:
            return False
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]
        self._accounts[key[0]] -= 1
        return True

    def _expire(self, now: float) -> None:
        gone = [seat for seat, (_, until) in self._pending.items() if until <= now]
        for seat in gone:
            del self._pending[seat]
