"""
A JetStream-enabled nats-server with the service in front, for the macro tests.

Every policy user logs in with PASSWORD and the inbox prefix `_INBOX_<name>`
(what `explain` tells them to set). `root` may do anything and sets up the
streams and buckets the others are tested against.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.client import Client

from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret
from tests.integration.clients import CONNECT_OPTS
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator
    from pathlib import Path

    from nats.js import JetStreamContext

PASSWORD = "macros-pw"
# A denied JetStream API request gets no reply (the server drops it and
# sends -ERR): keep the client's wait for it short.
DENIED_WAIT = 1.0


def policy_text(users: str, roles: str = "{}") -> str:
    """A policy whose users (YAML list items, `password` added) are `users`."""
    hashed = hash_secret(PASSWORD)
    body = users.replace("PASSWORD", f'password: "{hashed}"')
    return (
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP, expires: 1h}\n"
        f"roles: {roles}\nusers:\n"
        f'  - {{name: root, password: "{hashed}", publish: {{allow: [">"]}},'
        ' subscribe: {allow: [">"]}}\n'
        f"{body}"
    )


@dataclass
class Session:
    """One connected user, with the errors the server sent it."""

    nc: Client
    errors: list[str] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=DENIED_WAIT)

    async def violation(self, subject: str) -> str:
        """The permissions violation naming `subject` or a subject it begins."""
        async with asyncio.timeout(3):
            while True:
                for error in self.errors:
                    if (
                        "permissions violation" in error
                        and f'"{subject.lower()}' in error
                    ):
                        return error
                self.seen.clear()
                await self.seen.wait()

    async def refused(self, call: Awaitable[Any], subject: str) -> str:
        """`call` times out (no reply to a denied request) and `subject` is named."""
        with contextlib.suppress(nats.errors.TimeoutError):
            await call
            raise AssertionError(f"{subject}: the call succeeded")
        return await self.violation(subject)


@dataclass
class Env:
    server: NatsServer
    service: ServiceProcess
    sessions: list[Session] = field(default_factory=list)

    async def login(self, user: str, **kw: Any) -> Session:
        """Connect as `user` with its private inbox prefix; collect its errors."""
        session: Session | None = None

        async def on_error(exc: Exception) -> None:
            assert session is not None
            session.errors.append(str(exc).lower())
            session.seen.set()

        nc = Client()
        session = Session(nc)
        options = CONNECT_OPTS | {"inbox_prefix": f"_INBOX_{user}"} | kw
        await nc.connect(
            self.server.client_url,
            user=user,
            password=PASSWORD,
            error_cb=on_error,
            **options,
        )
        self.sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self.sessions:
            await session.nc.close()
        self.sessions.clear()


def start(directory: Path, policy: str) -> Iterator[Env]:
    """Start nats-server (JetStream on APP) and the service; stop both after."""
    issuer, login = KeyPair.create(Prefix.ACCOUNT), KeyPair.create(Prefix.USER)
    body = config_mode_body(
        issuer=issuer.public_key,
        auth_nkey=login.public_key,
        jetstream_dir=directory / "jetstream",
    )
    server = NatsServer(body, directory / "nats").start()
    (directory / "issuer.nk").write_text(issuer.export_seed())
    (directory / "login.nk").write_text(login.export_seed())
    (directory / "policy.yaml").write_text(policy)
    service = ServiceProcess(
        {
            "CALLOUT_NATS_URL": server.client_url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(directory / "login.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(directory / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(directory / "policy.yaml"),
        },
        directory,
    )
    try:
        service.start()
        yield Env(server, service)
        assert service.stop() == 0
    finally:
        service.stop()
        server.stop()
