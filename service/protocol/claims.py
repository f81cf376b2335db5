"""
The values inside NATS JWTs, as frozen dataclasses.

`protocol/request.py` validates what comes in once and builds these; everything after it
trusts their types. Fields that may hold secrets are left out of `repr()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NewType

ServerId = NewType("ServerId", str)  # N…
UserNKey = NewType("UserNKey", str)  # U…
AccountKey = NewType("AccountKey", str)  # A…
CurvePublicKey = NewType("CurvePublicKey", str)  # X…

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
EXPECTED_AUDIENCE = "nats-authorization-request"
SERVER_XKEY_HEADER = "Nats-Server-Xkey"

# jwt v2 types.go ConnectionType values
CONNECTION_TYPES = frozenset(
    {
        "STANDARD",
        "WEBSOCKET",
        "LEAFNODE",
        "LEAFNODE_WS",
        "MQTT",
        "MQTT_WS",
        "IN_PROCESS",
    }
)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """`nats.server_id` of a request: which server asks."""

    id: ServerId
    name: str = ""
    host: str = ""
    version: str = ""
    cluster: str = ""
    tags: tuple[str, ...] = ()
    xkey: CurvePublicKey | None = None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """`nats.client_info`: what the server knows of the connecting client."""

    host: str = ""
    id: int = 0
    user: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    name_tag: str = ""
    kind: str = ""
    type: str = ""
    mqtt_id: str = ""
    nonce: str = ""


@dataclass(frozen=True, slots=True)
class ConnectOpts:
    """
    `nats.connect_opts`: fields of the client's CONNECT.

    Holds the client's secrets; they are kept out of repr() and must never
    be logged.
    """

    jwt: str = field(default="", repr=False)
    nkey: str = ""
    sig: str = field(default="", repr=False)
    auth_token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    name: str = ""
    lang: str = ""
    version: str = ""
    protocol: int = 0


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """`nats.client_tls`: PEM certificates; only `verified_chains` are verified."""

    version: str = ""
    cipher: str = ""
    certs: tuple[str, ...] = ()
    verified_chains: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """
    What the server asked, after the JWT verified.

    Attributes:
        server: The requesting server; `server.id` signed the request.
        user_nkey: Key the server made for this connection attempt; the
            response and the user JWT must both have it as subject.
        account: The request's `sub`: the issuer (config mode) or the
            callout account (operator mode).
        expires: The server's deadline (unix seconds), 0 when none.
        sealed: The request came xkv1-sealed; the response is sealed too.
    """

    server: ServerInfo
    user_nkey: UserNKey
    client_info: ClientInfo
    connect_opts: ConnectOpts
    client_tls: ClientTLS | None = None
    account: str = ""
    issued_at: int = 0
    expires: int = 0
    sealed: bool = False


@dataclass(frozen=True, slots=True)
class Permission:
    """One direction of permissions: subjects allowed and denied."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponsePermission:
    """`resp`: permission to reply to requests received (allow_responses)."""

    max: int = 1
    ttl_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A daily connect window, `HH:MM:SS` to `HH:MM:SS`."""

    start: str
    end: str


@dataclass(frozen=True, slots=True)
class UserClaims:
    """
    The user JWT the service issues (jwt v2 user_claims.go).

    Attributes:
        subject: Must be the request's `user_nkey`.
        audience: Config mode: the target account's name. Unused in
            operator mode.
        expires: Unix seconds, 0 for none.
        issuer_account: Operator mode only, when a signing key signs.
    """

    subject: UserNKey
    audience: str = ""
    name: str = ""
    expires: int = 0
    pub: Permission = Permission()
    sub: Permission = Permission()
    resp: ResponsePermission | None = None
    src: tuple[str, ...] = ()
    times: tuple[TimeRange, ...] = ()
    times_location: str = ""
    subs: int = -1
    data: int = -1
    payload: int = -1
    bearer_token: bool = False
    proxy_required: bool = False
    allowed_connection_types: tuple[str, ...] = ()
    issuer_account: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExternalAuthorization:
    """The `authorization` section of an account JWT (auth callout)."""

    auth_users: tuple[str, ...] = ()
    allowed_accounts: tuple[str, ...] = ()
    xkey: str = ""


@dataclass(frozen=True, slots=True)
class AccountClaims:
    """An account JWT (operator mode); limits default to unlimited (-1)."""

    subject: AccountKey
    name: str = ""
    signing_keys: tuple[str, ...] = ()
    authorization: ExternalAuthorization | None = None
    default_permissions: tuple[Permission, Permission] = (Permission(), Permission())
    jetstream: bool = False


@dataclass(frozen=True, slots=True)
class OperatorClaims:
    """An operator JWT (self-signed)."""

    subject: str
    name: str = ""
    signing_keys: tuple[str, ...] = ()
    system_account: str = ""
