"""
The only NATS IO: connect, queue-subscribe, hand over, self-check, drain;
and `serve()`, which adds signals, policy reload and the HTTP endpoint.

nats-py awaits a subscription's callback before it delivers the next
message, so the callback only hands the message to the `Dispatcher` (which
starts a bounded task) and returns. Replicas share one queue group: the
server gives each request to one of them, on any node of the cluster (seen
on nats-server 2.15.1: not necessarily the replica on the client's node).

Shutdown: UNSUB and process every message the server already sent (nats-py
`Subscription.drain`), wait for the requests in flight up to
`shutdown_grace`, then drain and close the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Any

import structlog
from nats.aio.client import Client
from nats.errors import Error as NatsError

from service.dispatch.cachepeers import Link
from service.dispatch.dispatcher import Dispatcher
from service.errors import ConfigError
from service.log import Throttle
from service.ops.health import Health
from service.ops.metrics import Metrics
from service.process.admin import http_api
from service.process.citizen import Citizen
from service.process.login import login_options, login_refused
from service.process.reload import Reloader
from service.process.sessions import LiveSessions
from service.process.statelink import state_link
from service.protocol.claims import AUTH_SUBJECT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from service.config import Keys, Settings
    from service.dispatch.logincache import LoginCache
    from service.dispatch.throttle import LoginThrottle
    from service.policy import Policy
    from service.signers import AccountSigner, Loaded

log = structlog.get_logger("callout")

_ERROR_LOG_EVERY = 5.0
# after a server restart every client reconnects at once, and one that gets
# in before we re-subscribe waits out the whole auth timeout (2 s) and
# retries: measured with benchmarks/storms.py, 0.5 s cost half of 2 000
# clients a failed attempt, 0.1 s none
_RETRY_WAIT = 0.1
# a refused login will not succeed by hammering: back off up to this
_RETRY_WAIT_REFUSED_MAX = 10.0


class Worker:
    """Answers auth callout requests on one NATS connection."""

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        policy: Policy,
        signers: Mapping[str, AccountSigner],
        *,
        metrics: Metrics | None = None,
        peers: Link | None = None,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self.health = Health()
        self.metrics = metrics or Metrics()
        self.citizen = Citizen(settings, self.metrics)  # $SRV answers, audit events
        self.dispatcher = Dispatcher(
            settings,
            keys,
            policy,
            signers,
            metrics=self.metrics,
            health=self.health,
            peers=peers,
            audit=self.citizen.audit,
        )
        self.state = state_link(
            settings, self.dispatcher.login_cache, self.dispatcher.throttle
        )
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._client = Client()
        self._throttle = Throttle(_ERROR_LOG_EVERY)
        self._error_count = 0

    @property
    def policy(self) -> Policy:
        return self.dispatcher.policy

    @property
    def login_cache(self) -> LoginCache:
        """The verification cache, for sharing with sibling workers."""
        return self.dispatcher.login_cache

    @property
    def login_throttle(self) -> LoginThrottle:
        """The login throttle, for sharing with sibling workers."""
        return self.dispatcher.throttle

    def install(self, loaded: Loaded) -> None:
        """Put a reloaded policy in force."""
        self.dispatcher.install(loaded)

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        opts: dict[str, Any] = {
            "servers": s.servers,
            "name": "nats-auth-callout",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": _RETRY_WAIT,
            "connect_timeout": 2,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        return opts | login_options(s)

    async def _connect(self, stop: asyncio.Event) -> Client | None:
        # With max_reconnect_attempts=-1 nats-py retries the first connect
        # itself (so the sidecar may start before its nats-server, reporting
        # each failure to error_cb); race it against `stop` so that SIGTERM
        # still ends a service that never reached its server.
        connecting = asyncio.ensure_future(
            self._client.connect(**self._connect_options())
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, NatsError, OSError):
                await connecting
            return None
        connecting.result()
        self._set_retry_wait(_RETRY_WAIT)
        return self._client

    def _set_retry_wait(self, seconds: float) -> None:
        # nats-py reads this option before each attempt (initial connect and
        # reconnect alike) and offers no other way to back off per failure
        self._client.options["reconnect_time_wait"] = seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain within `shutdown_grace`."""
        nc = await self._connect(stop)
        if nc is None:
            return
        self._nc = nc
        if self.state is not None:  # before requests: a restarted replica starts warm
            await self.state.start(nc)
        self.health.connected = True
        sub = self._sub = await nc.subscribe(
            AUTH_SUBJECT, queue=self.settings.queue_group, cb=self._on_msg
        )
        await self.citizen.start(nc)
        try:
            # the PONG comes after the server processed our SUB (or its -ERR)
            await nc.flush()
        except (NatsError, TimeoutError) as exc:
            log.warning("callout.subscribe_unconfirmed", error=type(exc).__name__)
        else:
            self.health.subscribed = not self.health.subscribe_denied
        xkey = self._keys.xkey
        log.info(
            "callout.started",
            queue_group=self.settings.queue_group,
            mode=self.settings.mode,
            issuer=self._keys.issuer.public_key,
            xkey=xkey.public_key if xkey else None,
            policy_version=self.policy.version_hash,
            instance=self.citizen.micro.id,
        )
        task = asyncio.create_task(self._check_connection(nc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await stop.wait()
        await self._shutdown(sub)

    async def _check_connection(self, nc: Client) -> None:
        verdict = await self.citizen.check_connection(nc)
        if verdict is not None:
            self.dispatcher.report(verdict)

    async def _shutdown(self, sub: Any) -> None:
        self.health.draining = True
        cut = 0
        try:
            async with asyncio.timeout(self.settings.shutdown_grace):
                with contextlib.suppress(NatsError):
                    await sub.drain()  # UNSUB, then every message already sent
                await self.dispatcher.wait()
        except TimeoutError:
            cut = self.dispatcher.cut_off()
        if self.state is not None:
            await self.state.stop()
        await self.citizen.stop()
        if self._nc is not None:
            # with the server down, nats-py's drain and close still flush what
            # is pending to the dead socket and raise ConnectionResetError:
            # nothing is left to save then, and the service must still stop
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await self._nc.drain()
            if not self._nc.is_closed:
                with contextlib.suppress(NatsError, TimeoutError, OSError):
                    await self._nc.close()
        for task in self._background:
            task.cancel()
        self.dispatcher.close()
        log.info("callout.stopped", cut_off=cut, received=self.dispatcher.received)

    async def _on_msg(self, msg: Msg) -> None:
        async def respond(reply: bytes) -> None:
            try:
                await msg.respond(reply)
            except NatsError as exc:
                log.warning("callout.reply_failed", error=type(exc).__name__)
                return
            # nats-py only queues the reply and wakes its flusher task. With
            # nothing else waiting, give way once, so the reply is on the wire
            # before the log line and metrics (~0.1 ms of every connect);
            # with a backlog, go on, so that replies leave in batches (one
            # write for many: ~40 % more decisions/s under saturation)
            if self._sub is None or self._sub.pending_msgs == 0:
                await asyncio.sleep(0)

        # awaited: a decision without bcrypt is made and answered before
        # nats-py hands us the next message (back-pressure, see dispatch/dispatcher.py)
        await self.dispatcher.dispatch(msg.data, msg.headers, respond)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        lowered = text.lower()
        if "permissions violation for subscription" in lowered and (
            AUTH_SUBJECT.lower() in lowered  # not the inbox of a self-check request
        ):
            self.health.subscribe_denied = True
            log.error("callout.subscribe_denied", detail=text[:200])
            return
        self._error_count += 1
        if login_refused(exc):
            wait = self._client.options.get("reconnect_time_wait", _RETRY_WAIT)
            wait = min(max(wait, _RETRY_WAIT) * 2, _RETRY_WAIT_REFUSED_MAX)
            self._set_retry_wait(wait)
            if self._throttle.allow("callout.nats_login_refused"):
                log.error(
                    "callout.nats_login_refused",
                    detail=text[:200],
                    retry_in=wait,
                    errors_so_far=self._error_count,
                )
            return
        event = (
            "callout.nats_connect_failed" if self._nc is None else "callout.nats_error"
        )
        # nats-py retries every 0.1 s while a server is down: one line per
        # kind of error every few seconds is enough to see what is going on
        key = (event, type(exc).__name__)
        if self._throttle.allow(key):
            log.warning(
                event, error=key[1], detail=text[:200], errors_so_far=self._error_count
            )

    async def _on_disconnected(self) -> None:
        self.health.connected = self.health.subscribed = False
        self.health.subscribe_denied = False
        if not self.health.draining:  # closing at shutdown is no news
            log.warning("callout.nats_disconnected")

    async def _on_reconnected(self) -> None:
        # nats-py replays our SUB and flushes before calling this
        self._set_retry_wait(_RETRY_WAIT)
        self.health.connected = True
        self.health.subscribed = not self.health.subscribe_denied
        log.info("callout.nats_reconnected")


async def serve(
    settings: Settings,
    keys: Keys,
    policy: Policy,
    signers: Mapping[str, AccountSigner],
) -> None:
    """
    Run a worker until SIGINT/SIGTERM; SIGHUP or a file change reloads the policy.

    Raises:
        SystemExit: 2 when CALLOUT_HTTP_LISTEN is invalid or cannot be bound.
    """
    peers = Link.from_env()  # under `run --workers N`: one cache for all
    worker = Worker(settings, keys, policy, signers, peers=peers)
    # off without CALLOUT_SYSTEM_*
    sessions = LiveSessions(settings, worker.metrics, lambda: worker.policy)
    worker.dispatcher.set_admit(sessions.admit)
    reloader = Reloader(
        settings,
        keys,
        current=lambda: worker.policy,
        install=sessions.installer(worker.install),
        metrics=worker.metrics,
    )
    http = None
    try:
        http = http_api(settings, worker.metrics, worker.health, sessions)
        if http is not None:
            await http.start()
    except (ConfigError, OSError) as exc:
        log.error("callout.startup_failed", error=str(exc))  # noqa: TRY400 - explained
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloader.request, "sighup")
    watcher = asyncio.create_task(reloader.watch(stop))
    sessions.start()
    sharing = None
    if peers is not None:
        sharing = asyncio.create_task(
            peers.listen(worker.login_cache, worker.login_throttle)
        )
    try:
        await worker.run(stop)
    finally:
        stop.set()
        if sharing is not None:
            sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sharing  # off the selector before its socket closes
        if peers is not None:
            peers.close()
        await watcher
        await reloader.close()
        await sessions.close()
        if http is not None:
            await http.stop()
