"""
Connection caps and the live-connections gauge, over the system-account
link (docs/operations.md "Connection caps").

The view (review/liveview.py) follows the servers' CONNECT and DISCONNECT
events as they come, and is replaced by a CONNZ of the whole cluster at
start, every `REFRESH` seconds and after the link reconnects (events sent
while it was away are lost). A decision only reads and counts in memory
(`admit`): it never waits for the network, so a cap is as fresh as the
events (milliseconds on a healthy cluster) and, when events are lost, as
the last CONNZ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog

from service.review.liveview import LiveView, keys_of, parse_event
from service.review.sessions import account_names, principal_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.msg import Msg

    from service.policy import Allow, Policy
    from service.process.syslink import SystemLink
    from service.protocol.claims import AuthRequest
    from service.review.sessions import Connection

log = structlog.get_logger("callout")

CONNECTS = "$SYS.ACCOUNT.*.CONNECT"
DISCONNECTS = "$SYS.ACCOUNT.*.DISCONNECT"
REFRESH = 30.0  # seconds between CONNZ snapshots: the bound on lost events
DENY = "too_many_connections"


class LiveConnections:
    """The cluster's client connections, kept fresh; the cap check on them."""

    def __init__(
        self, link: SystemLink, current: Callable[[], Policy], refresh: float = REFRESH
    ) -> None:
        self._link = link
        self._current = current
        self._refresh = refresh
        self.view = LiveView()

    async def follow(self) -> None:
        """Subscribe to the events, then refresh until cancelled (link up)."""
        # nats-py replays these subscriptions after a reconnect
        await self._link.subscribe(CONNECTS, self._on_event)
        await self._link.subscribe(DISCONNECTS, self._on_event)
        while True:
            await self.refresh()
            # wake early after a reconnect: the events of the gap are lost
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._link.reconnected.wait(), self._refresh)
            self._link.reconnected.clear()

    async def refresh(self) -> None:
        """Replace the view with what the servers report now."""
        self.view.begin_refresh()
        connections = await self._link.connz()
        if not connections:
            # never a true answer: our own link is one of the connections
            self.view.abandon_refresh()
            return
        self.view.finish_refresh(connections)
        if self.view.refreshes == 1:
            log.info(
                "callout.live_connections_synced",
                connections=len(connections),
                servers=len({c.server_id for c in connections}),
            )

    async def _on_event(self, msg: Msg) -> None:
        event = parse_event(msg.data)
        if event is None:
            return
        if self.view.apply(event) and event.kind == "disconnect":
            self._freed(event.connection)

    def _freed(self, conn: Connection) -> None:
        """Log when a principal that was at its cap is one below it again."""
        policy = self._current()
        found = principal_key(policy, conn.user)  # provider users: not by name
        if found is None or not (cap := found[1].max_connections):
            return
        accounts = account_names(policy, found[1].account)
        if conn.account not in accounts:
            return  # a static user of the same name elsewhere
        keys = frozenset((a, conn.user) for a in accounts)
        if self.view.held(keys, time.time()) == cap - 1:
            log.info(
                "callout.connection_cap_freed",
                principal=conn.user,
                account=conn.account,
                max_connections=cap,
            )

    def admit(self, allow: Allow, request: AuthRequest, now: float) -> str | None:
        """`too_many_connections` when `allow`'s principal holds its cap already."""
        if not allow.max_connections:
            return None
        keys = keys_of(self._current(), allow)
        seat = (request.server.id, request.client_info.id)
        if self.view.take(keys, seat, allow.max_connections, now):
            return None
        return DENY
