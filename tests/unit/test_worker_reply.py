"""The worker's reply path: the reply leaves before the request's log line."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from service.config import Keys, Settings
from service.policy import parse_policy
from service.process.worker import Worker
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import app_signers, hash_secret
from tests.factories import FakeServer, john_doe_policy, make_request

if TYPE_CHECKING:
    from nats.aio.msg import Msg


ISSUER = KeyPair.create(Prefix.ACCOUNT)
PASSWORD = "jd-pw"


class _Msg:
    """Does what nats-py's Msg.respond does: queue, and wake the flusher task."""

    def __init__(self, data: bytes, order: list[str]) -> None:
        self.data, self.headers, self._order = data, None, order

    @classmethod
    def of(cls, data: bytes, order: list[str]) -> Msg:
        return cast("Msg", cls(data, order))

    async def respond(self, reply: bytes) -> None:
        assert reply
        asyncio.get_running_loop().call_soon(self._order.append, "reply written")


class _Backlog:
    """A subscription with messages waiting behind the current one."""

    pending_msgs = 3


@pytest.mark.parametrize(
    ("backlog", "expected"),
    [
        (False, ["reply written", "logged"]),
        (True, ["logged", "reply written"]),
    ],
    ids=["idle: reply first", "backlog: replies batched"],
)
async def test_the_reply_is_written_before_the_log_line_unless_more_wait(
    monkeypatch: pytest.MonkeyPatch, *, backlog: bool, expected: list[str]
) -> None:
    """
    Idle, logging and metrics wait for the flusher: they are not on the
    connect path. With a backlog the worker goes on to the next request,
    so that the flusher writes many replies at once.
    """
    order: list[str] = []
    worker = Worker(
        Settings(),
        Keys(issuer=ISSUER, xkey=None),
        parse_policy(john_doe_policy(hash_secret(PASSWORD))),
        app_signers(ISSUER),
    )
    body, _ = make_request(
        FakeServer(),
        issuer_account=ISSUER.public_key,
        connect_opts={"user": "john-doe", "pass": PASSWORD},
        now=int(time.time()),
    )
    await worker._on_msg(_Msg.of(body, []))  # first: bcrypt, then cached
    await worker.dispatcher.wait()
    recorder = worker.dispatcher._record  # the one place a request is logged
    logged = recorder.outcome

    def outcome(*args: Any, **kwargs: Any) -> None:
        order.append("logged")
        logged(*args, **kwargs)

    monkeypatch.setattr(recorder, "outcome", outcome)
    if backlog:
        monkeypatch.setattr(worker, "_sub", _Backlog())

    await worker._on_msg(_Msg.of(body, order))  # answered inline
    await asyncio.sleep(0)  # the flusher's turn, if it has not had it

    assert order == expected
    worker.dispatcher.close()
