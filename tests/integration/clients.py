"""nats-py client helpers for integration tests: connect, expect failure, raw nkey."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import nats
from nats.aio.client import Client

CONNECT_OPTS: dict[str, Any] = {
    "allow_reconnect": False,
    "max_reconnect_attempts": 0,
    "connect_timeout": 5,
}


async def connect(url: str, **kw: Any) -> Client:
    """Connect without reconnects; raise on failure."""
    return await nats.connect(url, **(CONNECT_OPTS | kw))


async def connect_fails(url: str, **kw: Any) -> tuple[str, float]:
    """
    Connect, expecting a refusal.

    Returns:
        Every error text seen (exception and error callback), and the
        seconds the attempt took.
    """
    seen: list[str] = []

    async def on_error(exc: Exception) -> None:
        seen.append(str(exc))

    started = time.perf_counter()
    nc = Client()
    try:
        await nc.connect(url, error_cb=on_error, **(CONNECT_OPTS | kw))
    except Exception as exc:  # noqa: BLE001 - any failure is what we want here
        seen.append(f"{type(exc).__name__}: {exc}")
        # nats-py leaves the socket of a refused connect open
        await nc.close()
        if nc._transport is not None:
            nc._transport.close()  # type: ignore[no-untyped-call]
            with contextlib.suppress(OSError):
                await nc._transport.wait_closed()  # type: ignore[no-untyped-call]
    else:
        if not nc.is_connected:
            # nats-py 2.16 returns from connect() when the line after its PING
            # is neither PONG nor -ERR (the server closed the socket at once):
            # not connected, and no error to quote
            seen.append("connection closed without an answer")
            await nc.close()
        else:
            await nc.close()
            raise AssertionError("connect unexpectedly succeeded")
    # nats-py lower-cases some server errors: compare in lower case
    return " | ".join(seen).lower(), time.perf_counter() - started


async def user_info(nc: Client) -> dict[str, Any]:
    """What the server says about this connection ($SYS.REQ.USER.INFO)."""
    msg = await nc.request("$SYS.REQ.USER.INFO", b"", timeout=2)
    data: dict[str, Any] = json.loads(msg.data)["data"]
    return data


async def round_trip(nc: Client, subject: str) -> bytes:
    """Subscribe, publish, and return the payload that came back."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Any) -> None:
        if not got.done():
            got.set_result(msg.data)

    sub = await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    await nc.publish(subject, b"ping")
    async with asyncio.timeout(3):
        data = await got
    await sub.unsubscribe()
    return data


async def permission_violation(url: str, subject: str, **kw: Any) -> str:
    """Publish to `subject` and return the permissions violation the server sends."""
    violation: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower() and not violation.done():
            violation.set_result(str(exc))

    nc = await connect(url, error_cb=on_error, **kw)
    try:
        await nc.publish(subject, b"x")
        await nc.flush()
        async with asyncio.timeout(3):
            return await violation
    finally:
        await nc.close()


async def raw_nkey_connect(host: str, port: int, nkey: str, sign: Any) -> str:
    """
    Speak the protocol by hand: CONNECT with `nkey` and `sign(nonce)` as sig.

    Returns:
        The server's first answer line after CONNECT+PING.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        info = json.loads((await reader.readline()).decode().removeprefix("INFO "))
        nonce = info.get("nonce", "")
        sig = base64.urlsafe_b64encode(sign(nonce.encode())).rstrip(b"=").decode()
        connect = {"verbose": False, "pedantic": False, "protocol": 1, "nkey": nkey}
        if nonce:
            connect["sig"] = sig
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(5):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def raw_login(port: int, user: str, password: str, *, source: str) -> str:
    """
    CONNECT by hand from `source` (127.0.0.x: the server reports it as the
    client's host) with user and password: `ok`, `refused` or `timeout`.
    """
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0)
    )
    try:
        await reader.readline()  # INFO
        connect = {"user": user, "pass": password, "verbose": False, "protocol": 1}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        try:
            async with asyncio.timeout(5):
                line = (await reader.readline()).decode()
        except TimeoutError:
            return "timeout"
        return "ok" if line.startswith("PONG") else "refused"
    finally:
        writer.close()
        await writer.wait_closed()
