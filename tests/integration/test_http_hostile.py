"""The service's HTTP port against hostile raw-socket clients (a real process)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from service.ops.http import HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS
from tests.integration.opsenv import (
    PASSWORDS,
    Keys,
    bcrypt_hash,
    free_port,
    http_port,
    policy_yaml,
    start_service,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.service_process import ServiceProcess

MARKER = "ZQX-client-bytes-7f3a"
# How much later than its configured timeout a connection may be closed.
SLACK = 2.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
GARBAGE = {
    # no HTTP at all (aiohttp logs a first-request BadHttpMethod at debug only)
    "not_http": f"\x16\x03\x01{MARKER}\r\n\r\n".encode(),
    # a request line that is not one (a space in the target, no version)
    "bad_request_line": f"GET /{MARKER} {MARKER}\r\n\r\n".encode(),
    # a header line without a colon after a good request line
    "bad_header": f"GET /healthz HTTP/1.1\r\nHost: x\r\n{MARKER} y\r\n\r\n".encode(),
    # a header longer than the parser's line limit
    "long_header": (
        f"GET /healthz HTTP/1.1\r\nX-{MARKER}: {MARKER * 1000}\r\n\r\n".encode()
    ),
    # a bad request after a good one on the same connection
    "second_request": HEALTHZ + f"{MARKER}\r\n\r\n".encode(),
}


def _service(tmp_path: Path) -> ServiceProcess:
    """The service with its HTTP port, its nats-server never up (not needed)."""
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    return start_service(
        keys.env(f"nats://127.0.0.1:{free_port()}", policy),
        tmp_path,
        wait="callout.nats_connect_failed",
    )


async def _send_and_read_to_close(
    port: int, data: bytes, limit: float = HEADER_TIMEOUT + SLACK
) -> bytes:
    """Send `data`, then read until the server closes (bounded by `limit`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), limit)
    finally:
        writer.close()


async def test_malformed_requests_log_one_json_line_per_kind_and_no_client_bytes(
    tmp_path: Path,
) -> None:
    """Each kind of garbage, sent three times, gives one JSON line and no echo."""
    service = _service(tmp_path)
    try:
        port = http_port(service)
        answers = [
            await _send_and_read_to_close(port, data)
            for data in GARBAGE.values()
            for _ in range(3)
        ]
    finally:
        code = service.stop()

    bad = [r for r in service.records if r.get("event") == "callout.http_bad_request"]
    not_json = [line for line in service.lines if not line.startswith("{")]
    assert not_json == []
    assert [line for line in service.lines if MARKER in line] == []
    assert [line for line in service.lines if "Traceback" in line] == []
    # one line per kind of parser error, however many requests of that kind
    kinds = [r["kind"] for r in bad]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) == {
        "BadHttpMethod",
        "BadStatusLine",
        "BadHttpMessage",
        "LineTooLong",
    }
    assert all(r["level"] == "warning" for r in bad)
    # each is answered with a 400, then the connection is closed
    assert all(a.startswith(b"HTTP/1.0 400 Bad Request\r\n") for a in answers)
    assert code == 0


async def test_silent_idle_and_trickling_connections_are_closed(
    tmp_path: Path,
) -> None:
    """A silent client, an idle keep-alive one and a slow header are all closed."""
    service = _service(tmp_path)
    try:
        port = http_port(service)

        async def silent() -> tuple[bytes, float]:
            start = time.monotonic()
            data = await _send_and_read_to_close(port, b"")
            return data, time.monotonic() - start

        async def idle() -> tuple[bytes, float]:
            start = time.monotonic()
            # the idle timeout is the longer one: wait for it, not the header's
            data = await _send_and_read_to_close(port, HEALTHZ, IDLE_TIMEOUT + SLACK)
            return data, time.monotonic() - start

        async def trickle() -> tuple[bytes, float]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.monotonic()
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\n")
                # one header line each time the server has not closed yet
                while True:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    try:
                        data = await asyncio.wait_for(reader.read(), 0.5)
                    except TimeoutError:
                        if time.monotonic() - start > HEADER_TIMEOUT + SLACK:
                            return b"still open", time.monotonic() - start
                        continue
                    return data, time.monotonic() - start
            finally:
                writer.close()

        results = await asyncio.gather(silent(), idle(), trickle())
    finally:
        service.stop()

    (silent_data, silent_s), (idle_data, idle_s), (trickle_data, trickle_s) = results
    assert silent_data == b""
    assert HEADER_TIMEOUT - 0.5 <= silent_s < HEADER_TIMEOUT + SLACK
    assert idle_data.startswith(b"HTTP/1.1 200 ")
    assert IDLE_TIMEOUT - 0.5 <= idle_s < IDLE_TIMEOUT + SLACK
    assert trickle_data == b""
    assert trickle_s < HEADER_TIMEOUT + SLACK


async def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    """With MAX_CONNECTIONS open, the next is closed at once and one line says so."""
    service = _service(tmp_path)
    held = []
    try:
        port = http_port(service)
        held = [
            await asyncio.open_connection("127.0.0.1", port)
            for _ in range(MAX_CONNECTIONS)
        ]
        start = time.monotonic()
        # sending nothing: a refused client that did send gets a reset instead
        extra = [await _send_and_read_to_close(port, b"") for _ in range(3)]
        refused_s = time.monotonic() - start
        # the held connections were still open: the first still gets answers
        reader, writer = held[0]
        writer.write(HEALTHZ.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        answer = await asyncio.wait_for(reader.read(), 5)
        service.wait_for_event("callout.http_busy")
    finally:
        for _, writer in held:
            writer.close()
        service.stop()

    assert extra == [b"", b"", b""]
    assert refused_s < HEADER_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 200 ")
    busy = [r for r in service.records if r.get("event") == "callout.http_busy"]
    assert len(busy) == 1
    assert busy[0]["max_connections"] == MAX_CONNECTIONS
