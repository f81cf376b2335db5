"""
Live sessions: acting on connections after connect time, over the
system-account link (process/syslink.py). Off without CALLOUT_SYSTEM_*:
startup warns once (setup/oneshot.py) and nothing here runs.

Kick on reload: `installer` wraps the worker's install, so every policy put
in force is compared with the one before it (review/sessions.py: the facts
`diff` compares), and the connections of principals that are gone or
changed are kicked, paced to the new policy's `sessions.kicks_per_second`.
A reload that comes while an earlier one is still kicking cancels it and
compares the earlier one's *old* policy with the newest, so a connection
that run had not reached yet is still judged against what it holds.

Revocations (`nats-auth-callout revoke`, process/revoke.py) arrive on the
link, in the system account, where only a system-account login can publish
(one that could KICK anyone directly anyway): every replica and worker hears
`REVOKE` and refuses the principal from then on (`admit`), until the given
time or until a different policy is put in force; one of them (a queue
group) hears `REVOKE_KICK` and kicks the principal's connections.

Connection caps (`max_connections`) read the live view that
process/connections.py keeps; `admit` asks it after the revocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import structlog

from service.process.connections import LiveConnections
from service.process.syslink import SystemLink
from service.review.sessions import Revocation, Revocations, of_principal, to_kick

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    from nats.aio.msg import Msg

    from service.config import Settings
    from service.ops.metrics import Metrics
    from service.policy import Allow, Policy
    from service.protocol.claims import AuthRequest
    from service.review.sessions import Connection
    from service.signers import Loaded

log = structlog.get_logger("callout")

REVOKE = "nats-auth-callout.revoke"  # system account: every instance
REVOKE_KICK = "nats-auth-callout.revoke.kick"  # one instance (queue group)
REVOKE_QUEUE = "nats-auth-callout-revoke"


class Pacer:
    """Spaces events at most `rate` per second (no burst: a steady trickle)."""

    def __init__(self, rate: float) -> None:
        self._gap = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next > now:
            await asyncio.sleep(self._next - now)  # pacing, not synchronisation
        # from when it really goes: a late wake-up never makes the next closer
        self._next = loop.time() + self._gap


class LiveSessions:
    """Kicks on reload (and, later, revocations) over the system link."""

    def __init__(
        self, settings: Settings, metrics: Metrics, current: Callable[[], Policy]
    ) -> None:
        self._metrics = metrics
        self._current = current
        self.link = SystemLink(settings) if settings.system_login else None
        self.connections = (
            LiveConnections(self.link, current) if self.link is not None else None
        )
        if self.connections is not None:
            metrics.track_live(self.connections.view.per_account)
        self.revocations = Revocations()
        self._tasks: set[asyncio.Task[None]] = set()
        self._review: asyncio.Task[None] | None = None
        self._baseline: Policy | None = None  # old policy of the review running

    def start(self) -> None:
        """Open the system link in the background (it retries by itself)."""
        if self.link is not None:
            self._spawn(self._link_up(self.link))

    async def _link_up(self, link: SystemLink) -> None:
        await link.connect()
        # nats-py replays these subscriptions after a reconnect
        await link.subscribe(REVOKE, self._on_revoke)
        await link.subscribe(REVOKE_KICK, self._on_revoke_kick, queue=REVOKE_QUEUE)
        if self.connections is not None:
            await self.connections.follow()  # until close() cancels it

    def admit(self, allow: Allow, request: AuthRequest, now: float) -> str | None:
        """
        The handler's `admit`: `revoked` for a principal revoked now, else
        `too_many_connections` for one at its cap (a revoked one takes no seat).
        """
        if self.revocations.refused(allow.user, now):
            return "revoked"
        if self.connections is not None:
            return self.connections.admit(allow, request, now)
        return None

    def installer(self, install: Callable[[Loaded], None]) -> Callable[[Loaded], None]:
        """`install`, followed by a review of live connections."""

        def install_and_review(loaded: Loaded) -> None:
            old = self._current()
            install(loaded)
            if old.version_hash != loaded.policy.version_hash:
                self.revocations.clear()  # "until the policy changes"
            self.policy_changed(old, loaded.policy)

        return install_and_review

    async def _on_revoke(self, msg: Msg) -> None:
        revocation = Revocation.decode(msg.data)
        if revocation is None:
            await msg.respond(b'{"error": "malformed revocation"}')
            return
        self.revocations.add(revocation)
        log.warning(
            "callout.user_revoked",
            principal=revocation.user,
            reason=revocation.reason,
            until=revocation.until or None,
        )
        await msg.respond(b'{"revoked": true}')

    async def _on_revoke_kick(self, msg: Msg) -> None:
        revocation = Revocation.decode(msg.data)
        if revocation is None or self.link is None:
            await msg.respond(b'{"error": "malformed revocation"}')
            return
        policy = self._current()
        live = await self.link.connz(user=revocation.user)
        theirs = of_principal(live, policy, revocation.user)
        rate = policy.document.sessions.kicks_per_second
        kicked = await self.kick(((c, "revoked") for c in theirs), rate)
        await msg.respond(json.dumps({"found": len(theirs), "kicked": kicked}).encode())

    def policy_changed(self, old: Policy, new: Policy) -> None:
        """Kick, in the background, what the change from `old` to `new` made stale."""
        if self.link is None or old.version_hash == new.version_hash:
            return
        if self._review is not None and not self._review.done():
            self._review.cancel()  # superseded: judge from its baseline
            old = self._baseline or old
        self._baseline = old
        self._review = self._spawn(self._kick_stale(old, new))

    async def _kick_stale(self, old: Policy, new: Policy) -> None:
        assert self.link is not None  # noqa: S101 - policy_changed checks
        rules = new.document.sessions
        live = await self.link.connz()
        stale = to_kick(live, old, new)
        kicked = 0
        if rules.kick_on_reload:
            kicked = await self.kick(stale, rules.kicks_per_second)
        log.info(
            "callout.sessions_reviewed",
            trigger="reload",
            connections=len(live),
            stale=len(stale),
            kicked=kicked,
            kick_on_reload=rules.kick_on_reload,
            policy_version=new.version_hash,
        )

    async def kick(self, targets: Iterable[tuple[Connection, str]], rate: float) -> int:
        """Kick each (connection, cause), paced; how many the servers closed."""
        assert self.link is not None  # noqa: S101 - callers check
        pacer = Pacer(rate)
        pending = []
        for conn, cause in targets:
            await pacer.wait()
            pending.append(asyncio.create_task(self._kick_one(conn, cause)))
        done = await asyncio.gather(*pending)
        return sum(done)

    async def _kick_one(self, conn: Connection, cause: str) -> bool:
        assert self.link is not None  # noqa: S101 - callers check
        error = await self.link.kick(conn)
        fields = {
            "principal": conn.user,
            "account": conn.account,
            "server": conn.server_id,
            "cid": conn.cid,
            "client_type": conn.kind,
            "cause": cause,
        }
        if error is not None:
            # gone meanwhile ("no such client") is the usual reason: no harm
            log.info("callout.kick_failed", error=error, **fields)
            return False
        self._metrics.kicks.labels(cause).inc()
        log.info("callout.session_kicked", **fields)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop what runs and close the link (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.link is not None:
            await self.link.close()
