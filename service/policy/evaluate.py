"""
The decision: (Policy, AuthRequest, now) -> Allow | Deny. Pure, no IO.

Order: identify the client from its credentials (nkey, then user/password,
then token, then anonymous), then the checks nats-server does not do for
callout users (protocol.md §9.10: `source_networks`, `connection_types`),
then the grant, compiled at load time (loader.py). The bcrypt check is
injected so the service can run it off the event loop behind a cache.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from service import keys
from service.policy.subjects import Grant, render
from service.secretcache import bcrypt_check

if TYPE_CHECKING:
    from service.claims import AuthRequest, ClientInfo, Permission
    from service.policy.loader import Identity, Network, Policy, Principal

CheckSecret: TypeAlias = Callable[[str, str], bool]
VerifyNKey: TypeAlias = Callable[[str, bytes, bytes], bool]

_RAW_URL_B64 = re.compile(r"[A-Za-z0-9_-]*")
# client_info.type/kind -> jwt ConnectionType (protocol.md §2.5).
_CONNECTION_TYPES = {"nats": "STANDARD", "websocket": "WEBSOCKET", "mqtt": "MQTT"}


@dataclass(frozen=True, slots=True)
class Allow:
    """
    The client may connect with this grant.

    Attributes:
        expires_at: Unix seconds when the user JWT expires, 0 for never.
        identity: How the client proved who it is: "password", "token",
            "nkey" or "anonymous".
    """

    user: str
    account: str
    grant: Grant
    expires_at: int
    connection_types: tuple[str, ...]
    source_networks: tuple[str, ...]
    identity: Identity


@dataclass(frozen=True, slots=True)
class Deny:
    """
    The client is refused.

    Attributes:
        reason: Short code for logs (docs/design.md §6).
        user: The policy user it was identified as, if any. Names the client
            sent that match no user are not kept: they may be mistyped secrets.
    """

    reason: str
    user: str | None = None


Decision: TypeAlias = Allow | Deny


def evaluate(
    policy: Policy,
    request: AuthRequest,
    now: int,
    *,
    check_secret: CheckSecret = bcrypt_check,
    verify_nkey: VerifyNKey = keys.verify,
) -> Decision:
    """
    Decide whether a client may connect, and with which permissions.

    Args:
        policy: The loaded policy.
        request: The verified authorization request.
        now: Unix seconds; the user JWT's expiry counts from it.
        check_secret: `(bcrypt_hash, secret) -> bool`.
        verify_nkey: `(public_key, nonce, signature) -> bool`; replaced
            only by dry runs (`explain`), which have no client seed.

    Returns:
        Allow with the grant, or Deny with a reason code.
    """
    found = _identify(policy, request, check_secret, verify_nkey)
    if isinstance(found, Deny):
        return found
    if found.networks and not _host_allowed(found.networks, request.client_info.host):
        return Deny("source_not_allowed", user=found.name)
    if found.connection_types and (
        _connection_type(request.client_info) not in found.connection_types
    ):
        return Deny("connection_type_not_allowed", user=found.name)
    grant = found.grant
    if grant is None:
        # Anonymous {{user}} is the connection's own nkey: unique per client.
        user = request.user_nkey if found.identity == "anonymous" else found.name
        grant = render(found.rules, user=user, account=found.account)
        if grant is None:
            return Deny("unsafe_template_value", user=found.name)
    return Allow(
        user=found.name,
        account=found.account,
        grant=grant,
        expires_at=now + found.expires if found.expires else 0,
        connection_types=found.connection_types,
        source_networks=found.source_networks,
        identity=found.identity,
    )


def _identify(
    policy: Policy,
    request: AuthRequest,
    check_secret: CheckSecret,
    verify_nkey: VerifyNKey,
) -> Principal | Deny:
    opts = request.connect_opts
    # nats-server's own precedence: nkey, then user/password, then token.
    if opts.nkey:
        nonce = request.client_info.nonce
        return _by_nkey(policy, opts.nkey, opts.sig, nonce, verify_nkey)
    if opts.user:
        return _by_password(policy, opts.user, opts.password, check_secret)
    if opts.auth_token:
        for candidate in policy.token_users:
            if check_secret(candidate.credential, opts.auth_token):
                return candidate
        return Deny("unknown_token")
    if policy.anonymous is None:
        return Deny("no_credentials")
    return policy.anonymous


def _by_nkey(
    policy: Policy, nkey: str, sig: str, nonce: str, verify_nkey: VerifyNKey
) -> Principal | Deny:
    user = policy.nkeys.get(nkey)
    if user is None:
        return Deny("unknown_nkey")
    # Without a nonce there is nothing the key proved (protocol.md §9.16).
    if not sig or not nonce:
        return Deny("missing_nkey_signature", user=user.name)
    raw = _decode_sig(sig)
    try:
        ok = raw is not None and verify_nkey(
            user.credential, nonce.encode("utf-8"), raw
        )
    except UnicodeEncodeError:
        ok = False
    return user if ok else Deny("bad_nkey_signature", user=user.name)


def _decode_sig(sig: str) -> bytes | None:
    # nats-server (client.go): RawURLEncoding first, then StdEncoding.
    try:
        raw = sig.encode("ascii")
        if _RAW_URL_B64.fullmatch(sig):
            return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None


def _by_password(
    policy: Policy, name: str, password: str, check_secret: CheckSecret
) -> Principal | Deny:
    user = policy.by_name.get(name)
    if user is None or user.identity != "password" or not password:
        if password and policy.timing_hash:
            # Spend a bcrypt check anyway, so that the response time does not
            # tell which user names exist; the result is ignored.
            check_secret(policy.timing_hash, password)
        if user is None:
            return Deny("unknown_user")
        return Deny("bad_password", user=user.name)
    if not check_secret(user.credential, password):
        return Deny("bad_password", user=user.name)
    return user


def _host_allowed(networks: tuple[Network, ...], host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        # ::ffff:10.1.2.3 is an IPv4 client on a dual-stack listener.
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _connection_type(client: ClientInfo) -> str:
    if client.kind == "Leafnode":
        return "LEAFNODE"
    return _CONNECTION_TYPES.get(client.type, "")


def _permission(permission: Permission) -> dict[str, list[str]]:
    return {"allow": list(permission.allow), "deny": list(permission.deny)}


def describe(decision: Decision) -> dict[str, object]:
    """
    A JSON-able view of a decision, as `explain` prints it.

    Returns:
        `decision`, `user`, `account`, `reason`, `identity`, `expires_at`,
        `permissions` (`pub`, `sub`, `resp`; None for a denial),
        `connection_types` and `source_networks`.
    """
    match decision:
        case Allow(grant=grant):
            resp = grant.resp
            return {
                "decision": "allow",
                "user": decision.user,
                "account": decision.account,
                "reason": None,
                "identity": decision.identity,
                "expires_at": decision.expires_at,
                "permissions": {
                    "pub": _permission(grant.pub),
                    "sub": _permission(grant.sub),
                    "resp": None
                    if resp is None
                    else {"max": resp.max, "ttl_seconds": resp.ttl_seconds},
                },
                "connection_types": list(decision.connection_types),
                "source_networks": list(decision.source_networks),
            }
        case Deny():
            return {
                "decision": "deny",
                "user": decision.user,
                "account": None,
                "reason": decision.reason,
                "identity": None,
                "expires_at": None,
                "permissions": None,
                "connection_types": None,
                "source_networks": None,
            }
