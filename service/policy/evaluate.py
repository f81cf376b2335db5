"""
The decision: (Policy, AuthRequest, now) -> Allow | Deny. No IO of its own.

Order: identify the client (below), then the checks nats-server does not do
for callout users (docs/protocol.md §7.10: `source_networks`, `connection_types`),
then the grant, compiled at load time (loader.py) or rendered now from the
connection (anonymous `{{user}}`, token claims). The bcrypt check is injected
so the service can run it off the event loop behind a cache.

Identity precedence: nkey, then user/password, then token, then the TLS
client certificate, then anonymous. The first three are nats-server's own
order. A credential the client chose to send decides alone: a wrong password
or a bad token is denied, never retried as the certificate (no silent
fallback to another identity); a certificate identifies clients that send no
credential, as the transport identity under them. A bearer token that looks
like a JWT goes to the identity providers only (the one whose issuer it
names), an opaque one to the bcrypt token users only: a JWT is never tried
against every bcrypt hash. A JWT sent as a password is verified when the
user name is an identity provider's name (its `sent_as: password`).

Verifying a JWT may wait, bounded by the provider's `unknown_kid_wait`, for
a JWKS refresh on its own thread (service/jwks.py); nothing else waits.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from service.policy import tokens
from service.policy.certs import read_leaf
from service.policy.guard import Gate, Guard
from service.policy.passwords import bcrypt_check, too_long
from service.policy.subjects import Grant, render
from service.protocol.nkeys import verify

if TYPE_CHECKING:
    from service.policy.loader import Policy
    from service.policy.principal import Identity, Network, Principal
    from service.policy.providers import Provider
    from service.protocol.claims import AuthRequest, ClientInfo, ClientTLS

CheckSecret: TypeAlias = Callable[[str, str], bool]
VerifyNKey: TypeAlias = Callable[[str, bytes, bytes], bool]


_RAW_URL_B64 = re.compile(r"[A-Za-z0-9_-]*")
# client_info.type/kind -> jwt ConnectionType (docs/protocol.md §2.5).
_CONNECTION_TYPES = {"nats": "STANDARD", "websocket": "WEBSOCKET", "mqtt": "MQTT"}


@dataclass(frozen=True, slots=True)
class Allow:
    """
    The client may connect with this grant.

    Attributes:
        expires_at: Unix seconds when the user JWT expires, 0 for never;
            never later than the credential's own expiry.
        identity: How the client proved who it is: "password", "token",
            "nkey", "jwt", "certificate" or "anonymous".
        via: `jwt:<provider>` or `certificate:<subject DN>`, else None.
        max_connections: The principal's cap (0: none), for live sessions.
    """

    user: str
    account: str
    grant: Grant
    expires_at: int
    connection_types: tuple[str, ...]
    source_networks: tuple[str, ...]
    identity: Identity
    via: str | None = None
    max_connections: int = 0


@dataclass(frozen=True, slots=True)
class Deny:
    """
    The client is refused.

    Attributes:
        reason: Short code for logs (docs/operations.md "Decisions and logs").
        user: The policy user it was identified as, if any. Names the client
            sent that match no user are not kept: they may be mistyped secrets.
        via: The identity provider (`jwt:<name>`) or certificate subject
            (`certificate:<DN>`) involved, when there was one; never a token.
        paced: Refused without the decoy check its timing needs (the decoy
            budget is spent): to be answered when a check would have ended.
    """

    reason: str
    user: str | None = None
    via: str | None = None
    paced: bool = False


Decision: TypeAlias = Allow | Deny


def evaluate(
    policy: Policy,
    request: AuthRequest,
    now: int,
    *,
    check_secret: CheckSecret = bcrypt_check,
    verify_nkey: VerifyNKey = verify,
    guard: Guard | None = None,
    holds: CheckSecret | None = None,
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
        guard: The login throttle; None: no throttling (dry runs, tests).
        holds: `(bcrypt_hash, secret) -> bool` without bcrypt: whether the
            verification cache already holds this login (with `guard`).

    Returns:
        Allow with the grant, or Deny with a reason code.
    """
    gate = None
    if guard is not None:
        gate = Gate(guard, request.client_info.host, holds or (lambda _h, _s: False))
    found = _identify(policy, request, now, check_secret, verify_nkey, gate=gate)
    if isinstance(found, Deny):
        return found
    return admit(found, request, now)


def admit(found: Principal, request: AuthRequest, now: int) -> Decision:
    """
    The checks after identification: source network, connection type, the
    grant (rendered now when it depends on the connection) and the expiry.
    """
    user, via = found.name, found.via
    if found.networks and not _host_allowed(found.networks, request.client_info.host):
        return Deny("source_not_allowed", user=user, via=via)
    if found.connection_types and (
        _connection_type(request.client_info) not in found.connection_types
    ):
        return Deny("connection_type_not_allowed", user=user, via=via)
    grant = found.grant
    if grant is None:
        # Anonymous {{user}} is the connection's own nkey: unique per client.
        name = request.user_nkey if found.identity == "anonymous" else user
        grant = render(
            found.rules, user=name, account=found.account, claims=found.claims
        )
        if grant is None:
            return Deny("unsafe_template_value", user=user, via=via)
    expires_at = now + found.expires if found.expires else 0
    if found.not_after:
        expires_at = min(expires_at or found.not_after, found.not_after)
    return Allow(
        user=user,
        account=found.account,
        grant=grant,
        expires_at=expires_at,
        connection_types=found.connection_types,
        source_networks=found.source_networks,
        identity=found.identity,
        via=via,
        max_connections=found.max_connections,
    )


def _identify(
    policy: Policy,
    request: AuthRequest,
    now: int,
    check_secret: CheckSecret,
    verify_nkey: VerifyNKey,
    *,
    gate: Gate | None = None,
) -> Principal | Deny:
    opts = request.connect_opts
    # nats-server's own precedence: nkey, then user/password, then token.
    if opts.nkey:
        nonce = request.client_info.nonce
        return _by_nkey(policy, opts.nkey, opts.sig, nonce, verify_nkey)
    if opts.user:
        provider = next((p for p in policy.providers if p.name == opts.user), None)
        if provider is not None and provider.as_password:
            return _by_jwt(policy, opts.password, now, only=provider)
        return _by_password(policy, opts.user, opts.password, check_secret, gate)
    if opts.auth_token:
        return _by_token(policy, opts.auth_token, now, check_secret, gate)
    found = None
    if policy.certificates is not None and (leaf := _verified_leaf(request.client_tls)):
        found = _by_certificate(policy, leaf)
    return found or policy.anonymous or Deny("no_credentials")


def _by_token(
    policy: Policy,
    token: str,
    now: int,
    check_secret: CheckSecret,
    gate: Gate | None = None,
) -> Principal | Deny:
    if policy.providers and tokens.parse(token) is not None:
        return _by_jwt(policy, token, now)
    if too_long(token):
        # Decided here, not by the installed bcrypt (4.x truncates, 5.x raises).
        return Deny("secret_too_long")
    hashes = [candidate.credential for candidate in policy.token_users]
    if gate is not None and gate.refuses(None, hashes, token):
        return Deny("throttled")
    for candidate in policy.token_users:
        if check_secret(candidate.credential, token):
            return candidate
    return Deny("unknown_token")


def _by_jwt(
    policy: Policy, token: str, now: int, *, only: Provider | None = None
) -> Principal | Deny:
    parsed = tokens.parse(token)
    if parsed is None:
        return Deny("token_malformed", via=f"jwt:{only.name}" if only else None)
    candidates = (only,) if only else [p for p in policy.providers if p.as_token]
    provider = tokens.select(candidates, parsed)
    if provider is None:
        return Deny("token_bad_issuer", via=f"jwt:{only.name}" if only else None)
    found = tokens.identify(provider, token, parsed, now)
    if isinstance(found, tuple):
        reason, user = found
        return Deny(reason, user=user, via=f"jwt:{provider.name}")
    return found


def _verified_leaf(tls: ClientTLS | None) -> str:
    # Only what nats-server verified: `certs` is sent exactly when nothing was.
    if tls is None or not tls.verified_chains or not tls.verified_chains[0]:
        return ""
    return tls.verified_chains[0][0]


def _by_certificate(policy: Policy, pem: str) -> Principal | Deny | None:
    """The certificate's principal; None: unknown, and anonymous may have it."""
    leaf = read_leaf(pem)
    if leaf is None or policy.certificates is None:
        found, via = None, None
    else:
        found, via = policy.certificates.find(leaf), f"certificate:{leaf.subject}"
    if found is None or leaf is None:
        # Not in the policy: like a client that sent nothing (anonymous, if any).
        if policy.anonymous is not None:
            return None
        return Deny("unknown_certificate", via=via)
    return dataclasses.replace(found, not_after=leaf.not_after, via=via)


def _by_nkey(
    policy: Policy, nkey: str, sig: str, nonce: str, verify_nkey: VerifyNKey
) -> Principal | Deny:
    user = policy.nkeys.get(nkey)
    if user is None:
        return Deny("unknown_nkey")
    # Without a nonce there is nothing the key proved (docs/protocol.md §7.16).
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
    policy: Policy,
    name: str,
    password: str,
    check_secret: CheckSecret,
    gate: Gate | None = None,
) -> Principal | Deny:
    user = policy.by_name.get(name)
    known = user.name if user is not None and user.identity == "password" else None
    if too_long(password):
        # Before any bcrypt, known name or not (no timing difference between
        # them): bcrypt 4.x would match a truncation, 5.x would raise.
        return Deny("secret_too_long", user=known)
    # an unknown name asks the cache about the decoy hash, which it never
    # holds (a decoy never succeeds): the same lookup as a known name's
    hashed = user.credential if user is not None and known else policy.timing_hash
    hashes = [hashed] if hashed else []
    if gate is not None and password and gate.refuses(known, hashes, password):
        # No secret check: a known name not in the cache is refused exactly
        # like an unknown one (no decoy either), so timing tells nothing.
        return Deny("throttled", user=known)
    if user is None or user.identity != "password" or not password:
        paced = False
        if password and policy.timing_hash:
            # Spend a bcrypt check anyway, so that the response time does not
            # tell which user names exist; the result is ignored. With the
            # budget of decoys spent, the answer is paced like a check instead.
            paced = gate is not None and not gate.decoys()
            if not paced:
                check_secret(policy.timing_hash, password)
        if user is None:
            return Deny("unknown_user", paced=paced)
        return Deny("bad_password", user=user.name, paced=paced)
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
