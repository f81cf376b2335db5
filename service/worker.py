"""
The only NATS IO: connect, queue-subscribe, dispatch, drain, signals.

Strategy: nats-py awaits a subscription's callback before it delivers the
next message, so the callback only starts a task and returns. Tasks are
bounded (`max_inflight`; beyond it a request is dropped and logged, like
callout.go's ErrWorkerChannelFull) and the handler runs on a thread pool
sized to the cores, so bcrypt never blocks the event loop. A reply that
would arrive after the server's deadline is dropped, not sent late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import nats
import structlog
from nats.errors import Error as NatsError

from service.claims import AUTH_SUBJECT
from service.handler import HandlerContext, Outcome, handle
from service.secretcache import SecretCache

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from service.config import Keys, Settings
    from service.policy import Policy
    from service.signers import AccountSigner

log = structlog.get_logger("callout")

_EVENTS = {
    "allow": "callout.request_authorized",
    "deny": "callout.request_rejected",
    "abort": "callout.request_aborted",
}


class Worker:
    """Answers auth callout requests on one NATS connection."""

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        policy: Policy,
        signers: Mapping[str, AccountSigner],
    ) -> None:
        self.settings = settings
        self.secret_cache = SecretCache()
        self._ctx = HandlerContext(
            issuer=keys.issuer,
            xkey=keys.xkey,
            policy=policy,
            check_secret=self.secret_cache,
            signers=signers,
            issuer_account=settings.issuer_account or "",
        )
        self._pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="callout")
        self._tasks: set[asyncio.Task[None]] = set()
        self._nc: Client | None = None
        self.subscribed = asyncio.Event()

    @property
    def policy(self) -> Policy:
        return self._ctx.policy

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        opts: dict[str, Any] = {
            "servers": s.servers,
            "name": "nats-auth-callout",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if s.nats_user is not None:
            opts["user"] = s.nats_user
            opts["password"] = (
                s.nats_password.get_secret_value() if s.nats_password else ""
            )
        if s.nats_nkey_seed_file is not None:
            opts["nkeys_seed"] = str(s.nats_nkey_seed_file)
        if s.nats_creds is not None:
            opts["user_credentials"] = str(s.nats_creds)
        return opts

    async def _connect(self, stop: asyncio.Event) -> Client | None:
        # nats-py retries only after a first success; keep trying until stopped,
        # so the sidecar may start before its nats-server.
        delay = 0.2
        while not stop.is_set():
            try:
                return await nats.connect(**self._connect_options())
            except (OSError, NatsError, TimeoutError) as exc:
                log.warning(
                    "callout.nats_connect_failed",
                    error=type(exc).__name__,
                    retry_s=delay,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, 5.0)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain within `shutdown_grace`."""
        nc = await self._connect(stop)
        if nc is None:
            return
        self._nc = nc
        sub = await nc.subscribe(
            AUTH_SUBJECT, queue=self.settings.queue_group, cb=self._on_msg
        )
        await nc.flush()
        self.subscribed.set()
        log.info(
            "callout.started",
            queue_group=self.settings.queue_group,
            mode=self.settings.mode,
            issuer=self._ctx.issuer.public_key,
            xkey=self._ctx.xkey.public_key if self._ctx.xkey else None,
            policy_version=self.policy.version_hash,
        )
        await stop.wait()
        await self._shutdown(sub)

    async def _shutdown(self, sub: Any) -> None:
        cut = 0
        try:
            async with asyncio.timeout(self.settings.shutdown_grace):
                with contextlib.suppress(NatsError):
                    await sub.drain()
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            cut = len(self._tasks)
            for task in self._tasks:
                task.cancel()
        if self._nc is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._nc.drain()
        self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("callout.stopped", cut_off=cut)

    async def _on_msg(self, msg: Msg) -> None:
        if len(self._tasks) >= self.settings.max_inflight:
            log.warning(
                "callout.request_dropped", reason="overload", inflight=len(self._tasks)
            )
            return
        task = asyncio.create_task(self._process(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, msg: Msg) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._pool,
                functools.partial(
                    handle, msg.data, msg.headers, ctx=self._ctx, now=time.time()
                ),
            )
        except Exception:
            log.exception(
                "callout.request_aborted", decision="abort", reason="internal_error"
            )
            return
        reply = outcome.reply
        if reply is not None:
            # exp is whole seconds (see codec.decode_request): past exp + 1 the
            # server has certainly given up, so a reply would only be noise.
            if outcome.expires and math.floor(time.time()) > outcome.expires:
                outcome = Outcome(
                    decision="abort",
                    reply=None,
                    reason="deadline_passed",
                    server_id=outcome.server_id,
                    client_host=outcome.client_host,
                    client_type=outcome.client_type,
                    user=outcome.user,
                )
            else:
                try:
                    await msg.respond(reply)
                except NatsError as exc:
                    log.warning("callout.reply_failed", error=type(exc).__name__)
        self._log(outcome, started)

    def _log(self, outcome: Outcome, started: float) -> None:
        fields = outcome.log_fields()
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        fields["policy_version"] = self.policy.version_hash
        event = _EVENTS[outcome.decision]
        if outcome.decision == "abort":
            log.warning(event, **fields)
        else:
            log.info(event, **fields)

    async def _on_error(self, exc: Exception) -> None:
        log.warning(
            "callout.nats_error", error=type(exc).__name__, detail=str(exc)[:200]
        )

    async def _on_disconnected(self) -> None:
        log.warning("callout.nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("callout.nats_reconnected")


async def serve(
    settings: Settings,
    keys: Keys,
    policy: Policy,
    signers: Mapping[str, AccountSigner],
) -> None:
    """Run a worker until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Worker(settings, keys, policy, signers).run(stop)
