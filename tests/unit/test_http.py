"""The HTTP endpoint: address parsing, and the three pages on a loopback port."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import aiohttp
import pytest
from structlog.testing import capture_logs

from service.errors import ConfigError
from service.ops.health import Health
from service.ops.http import HttpApi, parse_listen
from service.ops.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from structlog.typing import EventDict


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


async def test_unknown_paths_and_methods_are_404_and_405(
    served: tuple[HttpApi, Health, Metrics],
) -> None:
    """An unknown path is 404, a POST to a page 405; HEAD is answered like GET."""
    api, _, _ = served
    url = f"http://127.0.0.1:{api.port}"

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/nope") as missing:
            missing_status = missing.status
        async with session.post(f"{url}/healthz") as post:
            post_status, allow = post.status, post.headers["Allow"]
        async with session.head(f"{url}/healthz") as head:
            head_status = head.status

    assert (missing_status, post_status, allow, head_status) == (404, 405, "GET", 200)


# --- a hostile client on a raw socket -----------------------------------------

MARKER = "ZQX-client-bytes-7f3a"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
# how much later than its configured timeout a connection may be closed
SLACK = 1.0


@pytest.fixture(name="small")
async def _small() -> AsyncIterator[Callable[..., HttpApi]]:
    """HttpApi on a loopback port with small limits; stopped after the test."""
    started: list[HttpApi] = []

    def make(**limits: float) -> HttpApi:
        health = Health()
        api = HttpApi(
            "127.0.0.1:0",
            metrics=Metrics(),
            not_ready=health.not_ready,
            **limits,  # type: ignore[arg-type]
        )
        started.append(api)
        return api

    yield make
    for api in started:
        await api.stop()


async def _start(api: HttpApi) -> HttpApi:
    with capture_logs():
        await api.start()
    return api


async def _read_to_close(port: int, data: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `data`, read until the server closes; (bytes, seconds it took)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        writer.write(data)
        await writer.drain()
        got = await asyncio.wait_for(reader.read(), timeout)
        return got, time.monotonic() - start
    finally:
        writer.close()


async def test_a_connection_without_a_request_head_is_closed_at_the_header_timeout(
    small: Callable[..., HttpApi],
) -> None:
    """Silence, or a head never finished, is cut off after header_timeout."""
    api = await _start(small(header_timeout=0.3, idle_timeout=30))

    silent, partial = await asyncio.gather(
        _read_to_close(api.port, b"", 0.3 + SLACK),
        _read_to_close(api.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 0.3 + SLACK),
    )

    assert silent[0] == partial[0] == b""
    assert 0.3 <= silent[1] < 0.3 + SLACK
    assert 0.3 <= partial[1] < 0.3 + SLACK


async def test_an_idle_keep_alive_connection_is_closed_at_the_idle_timeout(
    small: Callable[..., HttpApi],
) -> None:
    """After a response, a connection that sends nothing more lasts idle_timeout."""
    api = await _start(small(header_timeout=30, idle_timeout=0.3))

    answer, seconds = await _read_to_close(api.port, HEALTHZ, 0.3 + SLACK)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" not in answer  # it was kept alive, then timed out
    assert 0.3 <= seconds < 0.3 + SLACK


async def test_a_first_request_in_time_is_not_cut_off_by_the_header_timeout(
    small: Callable[..., HttpApi],
) -> None:
    """Once a head arrived, the header deadline no longer applies (idle does)."""
    api = await _start(small(header_timeout=0.2, idle_timeout=0.8))

    answer, seconds = await _read_to_close(api.port, HEALTHZ, 0.8 + SLACK)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert 0.8 <= seconds < 0.8 + SLACK


async def test_an_unread_request_body_closes_the_connection_after_the_response(
    small: Callable[..., HttpApi],
) -> None:
    """A body the pages never read is not waited for (aiohttp would linger 10 s)."""
    api = await _start(small(header_timeout=30, idle_timeout=30))
    request = HEALTHZ.replace(b"\r\n\r\n", b"\r\nContent-Length: 100000\r\n\r\nabc")

    answer, seconds = await _read_to_close(api.port, request, SLACK)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert seconds < SLACK


async def test_connections_beyond_the_cap_are_closed_at_once(
    small: Callable[..., HttpApi],
) -> None:
    """With max_connections open, the next is closed at once; the open ones work."""
    api = await _start(small(max_connections=2, header_timeout=30, idle_timeout=30))
    held = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(2)]
    try:
        with capture_logs() as logs:
            refused = [await _read_to_close(api.port, b"", SLACK) for _ in range(2)]
        reader, writer = held[0]
        writer.write(HEALTHZ)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLACK)
    finally:
        for _, w in held:
            w.close()

    assert [data for data, _ in refused] == [b"", b""]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    # one line for both refusals (rate-limited), naming the limit
    assert logs == [
        {"event": "callout.http_busy", "log_level": "warning", "max_connections": 2}
    ]


def _leaks(logs: list[EventDict]) -> list[EventDict]:
    return [e for e in logs if MARKER in json.dumps(e, default=str)]


async def test_malformed_requests_give_one_warning_per_kind_and_no_stderr(
    small: Callable[..., HttpApi], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad requests log the parser error's class, once per kind, nothing sent."""
    api = await _start(small())
    bad_header = f"GET / HTTP/1.1\r\nHost: x\r\n{MARKER} y\r\n\r\n".encode()
    too_long = f"GET / HTTP/1.1\r\nX-A: {MARKER * 1000}\r\n\r\n".encode()

    with capture_logs() as logs:
        answers = [
            await _read_to_close(api.port, data, SLACK)
            for data in (bad_header, bad_header, too_long, bad_header)
        ]

    assert all(a.startswith(b"HTTP/1.0 400 ") for a, _ in answers)
    assert logs == [
        {
            "event": "callout.http_bad_request",
            "log_level": "warning",
            "kind": "BadHttpMessage",
        },
        {
            "event": "callout.http_bad_request",
            "log_level": "warning",
            "kind": "LineTooLong",
        },
    ]
    assert _leaks(logs) == []
    assert capsys.readouterr() == ("", "")


async def test_a_page_that_raises_is_one_error_line_without_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exception in a page is a 500 and one callout.http_error line, no text."""

    def broken() -> str | None:
        raise RuntimeError(MARKER)

    api = await _start(HttpApi("127.0.0.1:0", metrics=Metrics(), not_ready=broken))
    request = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    try:
        with capture_logs() as logs:
            answers = [await _read_to_close(api.port, request, SLACK) for _ in range(2)]
    finally:
        await api.stop()

    assert all(a.startswith(b"HTTP/1.1 500 ") for a, _ in answers)
    assert logs == [
        {"event": "callout.http_error", "log_level": "error", "kind": "RuntimeError"}
    ]
    assert _leaks(logs) == []
    assert capsys.readouterr() == ("", "")
