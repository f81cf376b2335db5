"""
The system-account link: a second NATS connection, logged in with
CALLOUT_SYSTEM_*, for what only the system account may ask the servers
(docs/operations.md "Revocation and live sessions"):

* `$SYS.REQ.SERVER.PING.CONNZ` (`auth: true`): every server of the cluster
  answers with its connections, so a client admitted by another replica or
  before a restart is found too. There is no count of servers to wait for:
  replies are collected until none came for `QUIET` seconds (or `WAIT` in
  all), and a server whose list is longer than a page is asked again
  directly for the rest;
* `$SYS.REQ.SERVER.<id>.KICK` `{"cid": N}`: that server closes the
  connection (the client sees EOF and may reconnect; the callout decides
  again).

nats-py retries the first connect itself (the service may start before its
server); the link is up when `connected` is true and every call before then
finds nothing and kicks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import structlog
from nats.aio.client import Client
from nats.errors import Error as NatsError

from service.log import Throttle
from service.process.login import login_options
from service.review.sessions import ConnzPage, kick_answer, parse_connz

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.msg import Msg

    from service.config import Settings
    from service.review.sessions import Connection

log = structlog.get_logger("callout")

PING_CONNZ = "$SYS.REQ.SERVER.PING.CONNZ"
WAIT = 1.0  # seconds for all servers' CONNZ replies at most
QUIET = 0.25  # ... and this long after the last one (loopback: ~1 ms apart)
PAGE = 1024  # nats-server's default and its usual page size
_ERROR_LOG_EVERY = 5.0


class SystemLink:
    """The connection in the system account: find and kick connections."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = Client()
        self._throttle = Throttle(_ERROR_LOG_EVERY)
        # set after each reconnect: what was heard while away is missing
        self.reconnected = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._client.is_connected

    async def connect(self, *, retry: bool = True) -> None:
        """Connect, retrying until it works (cancel to give up) unless not `retry`."""
        opts: dict[str, Any] = {
            "servers": self._settings.servers,
            "name": "nats-auth-callout-system",
            "allow_reconnect": retry,
            # nats-py 2.16 takes 0 as "for ever": 1 is its smallest finite try
            "max_reconnect_attempts": -1 if retry else 1,
            "reconnect_time_wait": 1.0,
            "connect_timeout": 2,
            "error_cb": self._on_error,
            "reconnected_cb": self._on_reconnected,
        }
        await self._client.connect(**(opts | login_options(self._settings, "system")))
        log.info("callout.system_connected")

    async def subscribe(
        self, subject: str, cb: Callable[[Msg], Awaitable[None]], queue: str = ""
    ) -> None:
        """Listen on `subject` in the system account (revocations)."""
        await self._client.subscribe(subject, queue=queue, cb=cb)
        await self._client.flush()

    async def request(self, subject: str, payload: bytes, wait: float) -> bytes:
        """One request and its reply (raises nats-py's errors, TimeoutError)."""
        reply = await self._client.request(subject, payload, wait)
        return bytes(reply.data)

    async def connz(
        self, *, account: str | None = None, user: str | None = None
    ) -> list[Connection]:
        """Every open client connection of the cluster, filtered as asked."""
        if not self.connected:
            return []
        body: dict[str, Any] = {"auth": True, "limit": PAGE}
        if account:
            body["acc"] = account
        if user:
            body["user"] = user
        out: list[Connection] = []
        for page in await self._ping(json.dumps(body).encode()):
            out.extend(page.connections)
            offset = page.next_offset
            while offset is not None:
                more = await self._page(page.server_id, body | {"offset": offset})
                if more is None:
                    break
                out.extend(more.connections)
                offset = more.next_offset
        return out

    async def _ping(self, payload: bytes) -> list[ConnzPage]:
        pages = [parse_connz(data) for data in await self.ask_all(PING_CONNZ, payload)]
        return [page for page in pages if page is not None]

    async def ask_all(self, subject: str, payload: bytes) -> list[bytes]:
        """Publish a request and collect every reply until they stop coming."""
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            replies.put_nowait(msg.data)

        inbox = self._client.new_inbox()
        sub = await self._client.subscribe(inbox, cb=collect)
        out: list[bytes] = []
        try:
            await self._client.publish(subject, payload, reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while (left := deadline - loop.time()) > 0:
                wait = min(left, QUIET) if out else left
                try:
                    out.append(await asyncio.wait_for(replies.get(), wait))
                except TimeoutError:
                    break
        except NatsError as exc:
            self._warn(exc)
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        return out

    async def _page(self, server_id: str, body: dict[str, Any]) -> ConnzPage | None:
        try:
            reply = await self._client.request(
                f"$SYS.REQ.SERVER.{server_id}.CONNZ", json.dumps(body).encode(), WAIT
            )
        except (NatsError, TimeoutError) as exc:
            self._warn(exc)
            return None
        return parse_connz(reply.data)

    async def kick(self, conn: Connection) -> str | None:
        """Disconnect one connection; None on success, else why not."""
        subject = f"$SYS.REQ.SERVER.{conn.server_id}.KICK"
        try:
            reply = await self._client.request(
                subject, json.dumps({"cid": conn.cid}).encode(), WAIT
            )
        except (NatsError, TimeoutError) as exc:
            return type(exc).__name__
        return kick_answer(reply.data)

    async def close(self) -> None:
        if not self._client.is_closed:
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await self._client.close()

    def _warn(self, exc: Exception) -> None:
        if self._throttle.allow(type(exc).__name__):
            log.warning("callout.system_error", error=type(exc).__name__)

    async def _on_reconnected(self) -> None:
        self.reconnected.set()

    async def _on_error(self, exc: Exception) -> None:
        if self._throttle.allow(("cb", type(exc).__name__)):
            log.warning(
                "callout.system_error", error=type(exc).__name__, detail=str(exc)[:200]
            )
