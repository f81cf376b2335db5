"""
`protocol.enforcement` against nats-server 2.15.1: the same subject cases,
through the service's issued JWT and a raw client, get the same answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import pytest

from service.policy import Allow, evaluate, parse_policy
from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)
from service.protocol.enforcement import can_publish, can_subscribe
from tests.builders import hash_secret
from tests.integration import jsenv

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "enforcement-pw"
POLICY = f"""\
version: 1
accounts: {{APP: {{}}}}
defaults: {{account: APP, expires: 1h}}
users:
  - name: wild
    password: "{hash_secret(PASSWORD)}"
    publish: {{allow: ["foo.*", "bar.>"], deny: [bar.secret]}}
    subscribe:
      allow: ["foo.*", "bar.>", "q.sub grp1", "qw.sub grp.*", "d.>"]
      deny: [bar.secret, "d.sub bad"]
  - name: john-doe
    password: "{hash_secret(PASSWORD)}"
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
"""
# each case: user, pub or sub, the subject, the queue group ("" for none)
CASES = [
    ("wild", "pub", "foo.bar", ""),
    ("wild", "pub", "foo.bar.baz", ""),
    ("wild", "pub", "foo", ""),
    ("wild", "pub", "bar", ""),
    ("wild", "pub", "bar.x.y", ""),
    ("wild", "pub", "bar.secret", ""),
    ("wild", "pub", "baz", ""),
    ("wild", "sub", "foo.bar", ""),
    ("wild", "sub", "foo.bar.baz", ""),
    ("wild", "sub", "foo.*", ""),
    ("wild", "sub", "foo.>", ""),
    ("wild", "sub", "foo", ""),
    ("wild", "sub", "bar", ""),
    ("wild", "sub", "bar.>", ""),
    ("wild", "sub", "bar.*", ""),
    ("wild", "sub", "bar.secret", ""),
    ("wild", "sub", ">", ""),
    ("wild", "sub", "q.sub", ""),
    ("wild", "sub", "q.sub", "grp1"),
    ("wild", "sub", "q.sub", "grp2"),
    ("wild", "sub", "qw.sub", "grp.a"),
    ("wild", "sub", "qw.sub", "grpx"),
    ("wild", "sub", "d.sub", ""),
    ("wild", "sub", "d.sub", "bad"),
    ("wild", "sub", "d.sub", "good"),
    ("john-doe", "pub", "users.john-doe.orders", ""),
    ("john-doe", "pub", "users.alice.orders", ""),
    ("john-doe", "sub", "users.john-doe.>", ""),
    ("john-doe", "sub", "users.>", ""),
    ("john-doe", "sub", "users.*.orders", ""),
    ("john-doe", "sub", "_INBOX.x.y", ""),
]


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jsenv.Env]:
    yield from jsenv.start(tmp_path_factory.mktemp("enforcement"), POLICY)


class RawClient:
    """The protocol by hand: one command, then PING; an -ERR before PONG is a no."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.sid = reader, writer, 0

    @classmethod
    async def connect(cls, port: int, user: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()  # INFO
        client = cls(reader, writer)
        connect = {"user": user, "pass": PASSWORD, "verbose": False, "protocol": 1}
        errors = await client.ask(f"CONNECT {json.dumps(connect)}\r\n")
        assert errors == [], errors
        return client

    async def ask(self, command: str) -> list[str]:
        """Send `command` and PING; the -ERR lines the server sent before PONG."""
        self.writer.write(f"{command}PING\r\n".encode())
        await self.writer.drain()
        errors = []
        async with asyncio.timeout(5):
            while (line := (await self.reader.readline()).decode().strip()) != "PONG":
                if line == "PING":
                    self.writer.write(b"PONG\r\n")
                elif line.startswith("-ERR"):
                    errors.append(line)
                elif not line:
                    raise ConnectionError("the server closed the connection")
        return errors

    async def allowed(self, kind: str, subject: str, queue: str) -> bool:
        if kind == "pub":
            errors = await self.ask(f"PUB {subject} 0\r\n\r\n")
        else:
            self.sid += 1
            group = f" {queue}" if queue else ""
            errors = await self.ask(f"SUB {subject}{group} {self.sid}\r\n")
        assert all("permissions violation" in e.lower() for e in errors), errors
        return not errors

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _grant_of(user: str) -> Allow:
    request = AuthRequest(
        server=ServerInfo(id=ServerId("NTEST")),
        user_nkey=UserNKey("UTEST"),
        client_info=ClientInfo(host="127.0.0.1", kind="Client", type="nats"),
        connect_opts=ConnectOpts(user=user, password=PASSWORD),
        client_tls=None,
    )
    decision = evaluate(parse_policy(POLICY), request, int(time.time()))
    assert isinstance(decision, Allow)
    return decision


async def test_the_server_answers_every_case_as_enforcement_predicts(
    env: jsenv.Env,
) -> None:
    """For each subject case, nats-server's verdict equals the predicted one."""
    clients = {
        user: await RawClient.connect(env.server.port, user)
        for user in {case[0] for case in CASES}
    }
    try:
        mismatches = []
        for user, kind, subject, queue in CASES:
            grant = _grant_of(user).grant
            predicted = (
                can_publish(grant.pub, subject)
                if kind == "pub"
                else can_subscribe(grant.sub, subject, queue)
            )
            actual = await clients[user].allowed(kind, subject, queue)
            if actual != predicted:
                mismatches.append((user, kind, subject, queue, actual, predicted))
    finally:
        for client in clients.values():
            await client.close()

    assert mismatches == []


def test_the_cases_cover_both_answers_and_the_quirks() -> None:
    """The case list has allowed and refused cases, and the server's quirks."""
    answers = {}
    for user, kind, subject, queue in CASES:
        grant = _grant_of(user).grant
        answers[(user, kind, subject, queue)] = (
            can_publish(grant.pub, subject)
            if kind == "pub"
            else can_subscribe(grant.sub, subject, queue)
        )

    assert set(answers.values()) == {True, False}
    assert answers[("wild", "sub", "foo.>", "")] is True  # foo.* matches the token >
    assert answers[("wild", "sub", "q.sub", "")] is False  # only a queue entry
    assert answers[("wild", "sub", "q.sub", "grp2")] is False
    assert answers[("wild", "sub", "d.sub", "good")] is True  # deny names a queue
    assert answers[("john-doe", "sub", "users.>", "")] is False
