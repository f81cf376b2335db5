"""
Build authorization requests the way nats-server does, with throwaway keys;
and the small policy the handler tests and benchmarks share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.protocol.claims import (
    SERVER_XKEY_HEADER,
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)
from service.protocol.jwt import HEADER, b64encode, compute_jti, go_json
from service.protocol.nkeys import KeyPair, Prefix

if TYPE_CHECKING:
    from service.protocol.xkeys import CurveKeyPair

NOW = 1_800_000_000
COMPACT_HEAD = """\
version: 1
accounts: {APP: {}}
defaults: {account: APP, expires: 1h}
"""


@dataclass
class FakeServer:
    """A server identity: its signing key and (optionally) its ephemeral xkey."""

    key: KeyPair = field(default_factory=lambda: KeyPair.create(Prefix.SERVER))
    xkey: CurveKeyPair | None = None
    name: str = "test"

    @property
    def id(self) -> str:
        return self.key.public_key


def request_claims(
    server: FakeServer,
    *,
    issuer_account: str,
    user_nkey: str | None = None,
    connect_opts: dict[str, Any] | None = None,
    client_info: dict[str, Any] | None = None,
    client_tls: dict[str, Any] | None = None,
    now: int = NOW,
    ttl: int = 2,
) -> dict[str, Any]:
    """The payload of an authorization_request, in the server's key order."""
    server_id: dict[str, Any] = {
        "name": server.name,
        "host": "127.0.0.1",
        "id": server.id,
        "version": "2.15.1",
    }
    if server.xkey is not None:
        server_id["xkey"] = server.xkey.public_key
    nats: dict[str, Any] = {
        "server_id": server_id,
        "user_nkey": user_nkey or KeyPair.create(Prefix.USER).public_key,
        "client_info": {"host": "127.0.0.1", "id": 7, "kind": "Client", "type": "nats"}
        | (client_info or {}),
        "connect_opts": {"lang": "python3", "version": "2.16.0", "protocol": 1}
        | (connect_opts or {}),
    }
    if client_tls is not None:
        nats["client_tls"] = client_tls
    nats |= {"type": "authorization_request", "version": 2}
    data = {
        "aud": "nats-authorization-request",
        "exp": now + ttl,
        "iat": now,
        "iss": server.id,
        "sub": issuer_account,
    }
    return (
        {"aud": data["aud"], "exp": data["exp"], "jti": compute_jti(data)}
        | {k: data[k] for k in ("iat", "iss", "sub")}
        | {"nats": nats}
    )


def sign_token(payload: dict[str, Any], key: KeyPair, *, header: str = HEADER) -> bytes:
    """Sign any payload as a NATS JWT with `key`."""
    signing_input = f"{header}.{b64encode(go_json(payload))}"
    return f"{signing_input}.{b64encode(key.sign(signing_input.encode()))}".encode()


def make_request(
    server: FakeServer,
    *,
    issuer_account: str,
    service_xkey: str | None = None,
    **kw: Any,
) -> tuple[bytes, dict[str, str] | None]:
    """A request as the server would publish it: body and headers."""
    token = sign_token(
        request_claims(server, issuer_account=issuer_account, **kw), server.key
    )
    if server.xkey is None:
        return token, None
    if service_xkey is None:
        raise ValueError("a server with an xkey needs the service's xkey to seal to")
    return server.xkey.seal(token, service_xkey), {
        SERVER_XKEY_HEADER: server.xkey.public_key
    }


def john_doe_policy(password_hash: str, *, head: str = COMPACT_HEAD) -> str:
    """
    Policy YAML: `head` (version, accounts, defaults), then the `customer` role
    (users.{{user}}.> both ways, _INBOX.> to subscribe) and one user, john-doe,
    with that role and `password_hash` (a bcrypt hash) as password.
    """
    return f"""{head}roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
users:
  - name: john-doe
    password: "{password_hash}"
    roles: [customer]
"""


def decoded_request(
    connect_opts: dict[str, Any] | None = None,
    *,
    client_type: str = "nats",
    client_tls: ClientTLS | None = None,
    client_host: str = "127.0.0.1",
) -> AuthRequest:
    """An AuthRequest as decode_request returns it, with these CONNECT options."""
    return AuthRequest(
        server=ServerInfo(id=ServerId("NSERVER")),
        user_nkey=UserNKey("UCONN"),
        client_info=ClientInfo(host=client_host, kind="Client", type=client_type),
        connect_opts=ConnectOpts(**(connect_opts or {})),
        client_tls=client_tls,
    )
