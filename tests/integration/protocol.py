"""What the two protocol test modules share: their fixture matrix, one message.

Both run every test over encryption (plain, xkey) x transport (tcp,
websocket); a module takes the matrix by importing the two fixtures.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg


@pytest.fixture(name="encryption", params=["plain", "xkey"])
def encryption_fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="transport", params=["tcp", "websocket"])
def transport_fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def publish_and_receive(
    nc: Client, subscription: str, subject: str, payload: bytes
) -> Msg:
    """Subscribe to `subscription`, publish to `subject`: the first message back."""
    received: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Msg) -> None:
        if not received.done():
            received.set_result(msg)

    await nc.subscribe(subscription, cb=on_msg)
    await nc.publish(subject, payload)
    return await received
