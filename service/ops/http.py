"""
The operations endpoint: `/healthz`, `/readyz`, `/metrics` (aiohttp).

It runs on the worker's event loop, so an answer from `/healthz` is itself
the proof that the loop is alive; a blocked loop makes the probe time out,
which is what a liveness probe should see. `/readyz` asks the worker, which
knows whether it can authorize right now (connected, subscription confirmed
by the server, policy loaded, keys agreeing with the server).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from service.errors import ConfigError
from service.ops.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.ops.metrics import Metrics

log = structlog.get_logger("callout")


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


class HttpApi:
    """
    The HTTP server; `start()` binds, `stop()` closes.

    Args:
        not_ready: Returns None when ready, else a short reason code.
    """

    def __init__(
        self, listen: str, *, metrics: Metrics, not_ready: Callable[[], str | None]
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self._metrics = metrics
        self._not_ready = not_ready
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        # access logs would be unstructured lines on stderr; probes hit these
        # endpoints every few seconds, so they are off
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockname = self._runner.addresses[0]
        self.port = int(sockname[1])
        log.info("callout.http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop serving (probes then fail, which is right during shutdown)."""
        await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = self._not_ready()
        if reason is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": reason}, status=503)

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )
