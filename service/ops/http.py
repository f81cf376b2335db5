"""
The operations endpoint: `/healthz`, `/readyz`, `/metrics` (aiohttp), and
`POST /admin/revoke` when CALLOUT_ADMIN_TOKEN_FILE turns it on (ops/admin.py).

It runs on the worker's event loop, so an answer from `/healthz` is itself
the proof that the loop is alive; a blocked loop makes the probe time out,
which is what a liveness probe should see. `/readyz` asks the worker, which
knows whether it can authorize right now (connected, subscription confirmed
by the server, policy loaded, keys agreeing with the server).

The port may be reached by anything on the network, so it defends itself:
a connection must send its first request head within `HEADER_TIMEOUT`, may
then sit idle between requests for `IDLE_TIMEOUT`, and beyond
`MAX_CONNECTIONS` open at once a new one is closed as soon as it is
accepted. aiohttp's own log lines (multi-line tracebacks quoting the
client's bytes) never reach stderr: a malformed request becomes at most one
`callout.http_bad_request` line per kind of parser error per `LOG_EVERY`
seconds, naming the error class and nothing the client sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from service.errors import ConfigError
from service.log import Throttle
from service.ops import admin
from service.ops.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from service.ops.admin import Revoke
    from service.ops.metrics import Metrics

log = structlog.get_logger("callout")

# Seconds a new connection has to deliver its first complete request head.
HEADER_TIMEOUT = 3.0
# Seconds a keep-alive connection may wait after a response for the next
# request head to be complete (aiohttp's keepalive_timeout).
IDLE_TIMEOUT = 5.0
# Connections open at once; the next one is closed as soon as it is accepted.
MAX_CONNECTIONS = 64
# At most one log line per kind of HTTP trouble per this many seconds.
LOG_EVERY = 5.0
_SHUTDOWN_TIMEOUT = 1.0


def parse_listen(text: str) -> tuple[str, int]:
    """
    `host:port`, `:port` (every interface) or `[v6]:port` -> (host, port).

    Port 0 picks a free port; `callout.http_listening` logs the one chosen.

    Raises:
        ConfigError: Not of that form, or the port is out of range.
    """
    host, sep, port_text = text.rpartition(":")
    problem = f"CALLOUT_HTTP_LISTEN {text!r}: expected host:port, e.g. 127.0.0.1:8080"
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:  # noqa: PLR2004
        raise ConfigError(problem)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(problem) from None
    elif ":" in host:
        raise ConfigError(problem + " (write an IPv6 address as [addr]:port)")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ":port" means all


class _Refuse(asyncio.Protocol):
    """A connection beyond the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _AiohttpLog(logging.Handler):
    """
    Turns aiohttp's server log records into throttled structlog lines.

    A record carries the parser's exception, whose text quotes what the
    client sent; only the exception's class name is logged. Debug chatter
    (a client that went away) is dropped.
    """

    def __init__(self, throttle: Throttle) -> None:
        super().__init__()
        self._throttle = throttle

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            event, level, kind = (
                "callout.http_bad_request",
                "warning",
                type(exc).__name__,
            )
        elif record.levelno >= logging.WARNING:
            # a handler that raised, or aiohttp refusing its settings (the
            # message is aiohttp's own format string, never client bytes)
            event, level = "callout.http_error", "error"
            kind = type(exc).__name__ if exc is not None else str(record.msg)[:80]
        else:
            return
        if self._throttle.allow((event, kind)):
            getattr(log, level)(event, kind=kind)


class _Server(web.Server):
    """aiohttp's low-level server, telling `lost` when a connection ends."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        lost: Callable[[web.RequestHandler], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._lost = lost

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._lost(handler)


class HttpApi:
    """
    The HTTP server; `start()` binds, `stop()` closes.

    Args:
        not_ready: Returns None when ready, else a short reason code.
        header_timeout, idle_timeout, max_connections: The defences above
            (tests make them small).
        admin_token: The bearer token of `POST /admin/revoke` (ops/admin.py);
            None: that path is off (404).
        revoke: Does the revocation: (status, JSON answer); None: 503.
    """

    def __init__(
        self,
        listen: str,
        *,
        metrics: Metrics,
        not_ready: Callable[[], str | None],
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        admin_token: bytes | None = None,
        revoke: Revoke | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self._metrics = metrics
        self._not_ready = not_ready
        self._header_timeout = header_timeout
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._pages: dict[str, Callable[[], web.Response]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics_page,
        }
        self._throttle = Throttle(LOG_EVERY)
        self._admin = (
            None
            if admin_token is None
            else admin.AdminRevoke(admin_token, revoke, self._throttle)
        )
        # Not logging.getLogger(): a logger of its own, outside the tree, so
        # no other configuration (or the last-resort stderr handler) sees it.
        self._aiohttp_log = logging.Logger("nats-auth-callout.http")  # noqa: LOG001
        self._aiohttp_log.addHandler(_AiohttpLog(self._throttle))
        # every open connection, with its first-head deadline until it has one
        self._open: dict[web.RequestHandler, asyncio.TimerHandle | None] = {}
        self._server: _Server | None = None
        self._listener: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        self._server = _Server(
            self._handle,
            lost=self._forget,
            keepalive_timeout=self._idle_timeout,
            # a request body nobody reads closes the connection at once
            # instead of being drained for up to 10 s
            lingering_time=0,
            logger=self._aiohttp_log,
            # access logs would be unstructured lines on stderr; probes hit
            # these endpoints every few seconds, so they are off
            access_log=None,
        )
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._accept, self.host, self.port)
        self.port = int(self._listener.sockets[0].getsockname()[1])
        log.info("callout.http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop serving (probes then fail, which is right during shutdown)."""
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            self._server.pre_shutdown()
            await self._server.shutdown(_SHUTDOWN_TIMEOUT)
        for deadline in self._open.values():
            if deadline is not None:
                deadline.cancel()
        self._open.clear()

    def _accept(self) -> asyncio.Protocol:
        """The listener's protocol factory: a request handler, or a refusal."""
        assert self._server is not None  # noqa: S101 - start() made it
        if len(self._open) >= self._max_connections:
            if self._throttle.allow("callout.http_busy"):
                log.warning("callout.http_busy", max_connections=self._max_connections)
            return _Refuse()
        handler = self._server()
        self._open[handler] = asyncio.get_running_loop().call_later(
            self._header_timeout, self._head_overdue, handler
        )
        return handler

    def _head_overdue(self, handler: web.RequestHandler) -> None:
        self._open[handler] = None
        if handler.transport is None:  # never connected: nothing will end it
            self._open.pop(handler, None)
        else:
            handler.transport.close()

    def _forget(self, handler: web.RequestHandler) -> None:
        deadline = self._open.pop(handler, None)
        if deadline is not None:
            deadline.cancel()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # A head arrived: from now on aiohttp's keep-alive timer bounds the
        # wait for the next one.
        deadline = self._open.get(request.protocol)
        if deadline is not None:
            deadline.cancel()
            self._open[request.protocol] = None
        if request.path == admin.PATH and self._admin is not None:
            return await self._admin.handle(request)
        page = self._pages.get(request.path)
        if page is None:
            return web.Response(status=404, text="404: Not Found")
        if request.method not in {"GET", "HEAD"}:
            return web.Response(
                status=405, text="405: Method Not Allowed", headers={"Allow": "GET"}
            )
        return page()

    def _healthz(self) -> web.Response:
        return web.json_response({"alive": True})

    def _readyz(self) -> web.Response:
        reason = self._not_ready()
        if reason is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": reason}, status=503)

    def _metrics_page(self) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )
