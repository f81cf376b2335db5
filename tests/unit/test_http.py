"""The HTTP endpoint: address parsing, and the three pages on a loopback port."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp
import pytest
from structlog.testing import capture_logs

from service.errors import ConfigError
from service.ops.health import Health
from service.ops.http import HttpApi, parse_listen
from service.ops.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9090", ("0.0.0.0", 9090)),  # noqa: S104 - what ":port" means
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen_accepts_host_port(text: str, expected: tuple[str, int]) -> None:
    """host:port, :port (every interface), [v6]:port and port 0 are accepted."""
    assert expected == parse_listen(text)


@pytest.mark.parametrize(
    "text", ["8080", "host:", "host:http", "host:65536", "::1:8080", "[nope]:80"]
)
def test_parse_listen_refuses_anything_else(text: str) -> None:
    """A missing or bad port, or a bare IPv6 address, is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="CALLOUT_HTTP_LISTEN"):
        parse_listen(text)


@pytest.fixture(name="served")
async def _served() -> AsyncIterator[tuple[HttpApi, Health, Metrics]]:
    health, metrics = Health(), Metrics()
    metrics.track(inflight=lambda: 0, connected=lambda: float(health.connected))
    api = HttpApi("127.0.0.1:0", metrics=metrics, not_ready=health.not_ready)
    with capture_logs() as logs:  # whatever logging an earlier test configured
        await api.start()
    assert [e["event"] for e in logs] == ["callout.http_listening"]
    yield api, health, metrics
    await api.stop()


async def _get(api: HttpApi, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{api.port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthz_answers_while_the_loop_runs(
    served: tuple[HttpApi, Health, Metrics],
) -> None:
    """/healthz is 200 whatever the readiness."""
    api, _, _ = served

    status, _, body = await _get(api, "/healthz")

    assert (200, {"alive": True}) == (status, json.loads(body))


async def test_readyz_follows_health(served: tuple[HttpApi, Health, Metrics]) -> None:
    """/readyz is 503 with the reason until every condition holds, then 200."""
    api, health, _ = served

    before = await _get(api, "/readyz")
    health.connected = health.subscribed = True
    after = await _get(api, "/readyz")

    assert before[0] == 503
    assert {"ready": False, "reason": "nats_disconnected"} == json.loads(before[2])
    assert (200, {"ready": True}) == (after[0], json.loads(after[2]))


async def test_metrics_page_is_the_prometheus_text_format(
    served: tuple[HttpApi, Health, Metrics],
) -> None:
    """/metrics serves the registry with Prometheus' content type."""
    api, _, metrics = served
    metrics.observe("allow", None, 0.001)

    status, content_type, body = await _get(api, "/metrics")

    assert status == 200
    assert content_type == CONTENT_TYPE
    assert 'callout_requests_total{decision="allow",reason="none"} 1.0' in body


async def test_port_zero_reports_the_port_bound(
    served: tuple[HttpApi, Health, Metrics],
) -> None:
    """With port 0 the chosen port is known after start()."""
    api, _, _ = served

    assert api.port > 0
