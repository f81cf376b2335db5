"""
TLS client certificates, end to end: a test CA, nats-server 2.15.1 with
`tls { verify: true }` on the client port (so the callout request carries
`client_tls.verified_chains`), and the service subprocess.

The service itself logs in over the plain loopback WebSocket listener (a
separate listener: `verify: true` asks every client-port connection for a
certificate); test_service_tls.py covers the other way, a client
certificate of its own (CALLOUT_NATS_TLS_*).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from service.protocol.nkeys import KeyPair, Prefix
from tests.idp import CA
from tests.integration.clients import connect, connect_fails, round_trip, user_info
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FAST = 1.0


@dataclass
class Env:
    """Server, service and the client TLS contexts."""

    server: NatsServer
    service: ServiceProcess
    tls: dict[str, ssl.SSLContext]
    ca_file: Path

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.server.port}"


def client_context(ca_file: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(cert), str(key))
    return context


POLICY = """version: 1
accounts: {APP: {}, DEVICES: {}}
defaults: {account: APP, expires: 1h}
roles:
  device:
    publish: {allow: ["dev.{{user}}.>", "$SYS.REQ.USER.INFO"]}
    subscribe: {allow: ["dev.{{user}}.>", "_INBOX.>"]}
certificates:
  - name: device-7
    match: {cn: device-7}
    roles: [device]
    account: DEVICES
  - name: worker
    match: {san_uri: "spiffe://example.org/ns/app/sa/worker"}
    roles: [device]
"""


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("mtls")
    ca = CA(directory)
    server_cert, server_key, _ = ca.issue(
        "server", cn="127.0.0.1", ips=("127.0.0.1",), dns=("localhost",), server=True
    )
    contexts = {}
    for name, kwargs in {
        "device-7": {"cn": "device-7"},
        "worker": {"cn": "w-1", "uris": ("spiffe://example.org/ns/app/sa/worker",)},
        "stranger": {"cn": "stranger"},
    }.items():
        cert, key, _ = ca.issue(name, **kwargs)  # type: ignore[arg-type]
        contexts[name] = client_context(ca.cert_file, cert, key)
    issuer, login = KeyPair.create(Prefix.ACCOUNT), KeyPair.create(Prefix.USER)
    tls = (
        f"tls {{ cert_file: {json.dumps(str(server_cert))},"
        f" key_file: {json.dumps(str(server_key))},"
        f" ca_file: {json.dumps(str(ca.cert_file))}, verify: true, timeout: 2 }}\n"
    )
    body = tls + config_mode_body(
        issuer=issuer.public_key,
        auth_nkey=login.public_key,
        accounts=("APP", "DEVICES"),
    )
    server = NatsServer(body, directory / "nats").start()
    (directory / "issuer.nk").write_text(issuer.export_seed())
    (directory / "login.nk").write_text(login.export_seed())
    (directory / "policy.yaml").write_text(POLICY)
    service = ServiceProcess(
        {
            "CALLOUT_NATS_URL": server.ws_url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(directory / "login.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(directory / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(directory / "policy.yaml"),
        },
        directory,
    ).start()
    yield Env(server, service, contexts, ca.cert_file)
    assert service.stop() == 0
    server.stop()


@pytest.mark.parametrize(
    ("cert", "user", "account"),
    [("device-7", "device-7", "DEVICES"), ("worker", "worker", "APP")],
)
async def test_verified_certificate_maps_to_its_user(
    env: Env, cert: str, user: str, account: str
) -> None:
    """CN and SPIFFE URI SAN select the entry, its account and permissions."""
    before = len(env.service.events())

    nc = await connect(env.url, tls=env.tls[cert])
    try:
        info = await user_info(nc)
        echoed = await round_trip(nc, f"dev.{user}.ping")
    finally:
        await nc.close()
    env.service.wait_for(lambda _: len(env.service.events()) > before)
    line = env.service.events()[before]

    assert echoed == b"ping"
    assert info["account"] == account
    assert info["user"] == user
    assert f"dev.{user}.>" in info["permissions"]["publish"]["allow"]
    assert line["decision"] == "allow"
    assert line["user"] == user


async def test_unknown_certificate_is_denied(env: Env) -> None:
    """Signed by the trusted CA but in no entry: unknown_certificate, fast."""
    before = len(env.service.events())

    error, elapsed = await connect_fails(env.url, tls=env.tls["stranger"])
    env.service.wait_for(lambda _: len(env.service.events()) > before)
    line = env.service.events()[before]

    assert "authorization violation" in error
    assert elapsed < FAST
    assert line["decision"] == "deny"
    assert line["reason"] == "unknown_certificate"
    env.server.wait_for_log(
        "Auth callout service returned an error: unknown_certificate"
    )
