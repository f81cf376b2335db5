"""
Bearer JWTs from identity providers: is it one, whose, is it valid, who is it.

Checks in order, each failure its reason code (docs/operations.md "Decisions and logs"):
1. shape: at most 16 KiB, three base64url parts, a JSON header with `alg`
   and a JSON object payload. Not JWT-shaped: `parse()` returns None and
   the caller treats it as an ordinary token (bcrypt token users).
2. the provider whose `issuer` is exactly the unverified `iss`
   (token_bad_issuer); nothing else is read before the signature verifies.
3. `alg` on the provider's list (token_bad_algorithm: `none` never is, and
   HS256 is verified only with the provider's secret file, never with a JWKS
   key, so an RSA public key can't be used as an HMAC secret); `crit` and
   `b64` headers are refused (token_malformed).
4. the key: the JWKS key for `kid` (token_unknown_kid, jwks_unavailable,
   token_bad_algorithm when the key is of another type).
5. the signature, by PyJWT (token_bad_signature).
6. the verified claims: `iss`; `exp` required and checked without leeway
   (the user JWT must not outlive the token, and one that is already past
   its exp cannot be issued); `nbf`/`iat` with the provider's leeway
   (token_expired, token_not_yet_valid); `aud` (token_bad_audience).
7. the user claim (token_no_user), the roles (token_no_roles), the account
   claim (token_bad_account), and the `{{claim.…}}` values.

The principal is named `<provider>:<user claim>`: a provider's users live in
a namespace of their own. Policy names (users, certificates, providers) have
no `:`, so a token whose `sub` is `john-doe` or `admin` can never take the
name, and so the `{{user}}` subjects, of a local user, nor of another
provider's user of the same name.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jwt import PyJWS
from jwt.exceptions import (
    DecodeError,
    InvalidAlgorithmError,
    InvalidKeyError,
    InvalidSignatureError,
    PyJWTError,
)

from service.policy.fields import Role
from service.policy.merging import connection_cap, merge_rules
from service.policy.principal import Principal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from jwt import PyJWK

    from service.policy.providers import Provider

MAX_TOKEN = 16 * 1024
MAX_USER = 256
MAX_DATE = 2**53  # NaN and Infinity fail the range check too
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JWS = PyJWS()
_NO_OWN_RULES = Role()
# Not in SAFE_NAME, so no policy name contains it; legal in a subject token.
NAMESPACE_SEPARATOR = ":"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A JWT-shaped token's unverified header and payload: for routing only."""

    header: Mapping[str, object]
    payload: Mapping[str, object]


def _segment(text: str) -> object:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return json.loads(raw)


def parse(token: str) -> Parsed | None:
    """The unverified parts of a JWT-shaped token, else None."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN or len(parts) != 3:  # noqa: PLR2004 - JWS compact form
        return None
    # The signature may be empty: `alg: none` must reach the algorithm check
    # (and its reason code), not pass for an opaque token.
    if not (_SEGMENT.fullmatch(parts[0]) and _SEGMENT.fullmatch(parts[1])):
        return None
    if parts[2] and not _SEGMENT.fullmatch(parts[2]):
        return None
    try:
        header, payload = _segment(parts[0]), _segment(parts[1])
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return None
    return Parsed(header, payload) if isinstance(payload, dict) else None


def select(providers: Iterable[Provider], parsed: Parsed) -> Provider | None:
    """The provider whose issuer is the token's (unverified) `iss`."""
    issuer = parsed.payload.get("iss")
    return next((p for p in providers if p.issuer == issuer), None)


def identify(
    provider: Provider, token: str, parsed: Parsed, now: int
) -> Principal | tuple[str, str | None]:
    """
    Verify the token and map its claims onto the policy.

    Returns:
        The principal, or `(reason, user)`: the user claim once known.
    """
    claims = _verify(provider, token, parsed, now)
    if isinstance(claims, str):
        return claims, None
    return from_claims(provider, claims)


def from_claims(
    provider: Provider, claims: Mapping[str, object]
) -> Principal | tuple[str, str | None]:
    """
    Map verified claims onto the policy: user, roles, account, claim values.

    `identify` calls it once the token verified; a policy test gives the
    claims directly (`nats-auth-callout test`), with no key or signature.

    Returns:
        The principal, or `(reason, user)`: the user claim once known.
    """
    user = lookup(claims, provider.user_claim)
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user or len(user) > MAX_USER:
        return "token_no_user", None
    if _CONTROL.search(user):
        return "token_no_user", None
    roles = _roles(provider, claims)
    if not roles:
        return "token_no_roles", namespaced(provider, user)
    account = provider.account
    if provider.account_claim is not None:
        value = lookup(claims, provider.account_claim)
        if value is not None:
            if not isinstance(value, str) or value not in provider.accounts:
                return "token_bad_account", namespaced(provider, user)
            account = value
    specs = [provider.role_specs[r] for r in roles]
    rules = merge_rules([*specs, _NO_OWN_RULES])
    return Principal(
        name=namespaced(provider, user),
        identity="jwt",
        credential="",
        account=account,
        expires=provider.expires,
        rules=rules,
        grant=None,
        connection_types=provider.connection_types,
        source_networks=provider.source_networks,
        networks=provider.networks,
        claims={path: _text(lookup(claims, path)) for path in rules.claim_paths},
        not_after=_expiry(claims),
        via=f"jwt:{provider.name}",
        max_connections=connection_cap(provider.max_connections, specs),
    )


def _expiry(claims: Mapping[str, object]) -> int:
    # `_verify` requires a numeric `exp`; claims given by a test may lack one
    exp = claims.get("exp")
    return int(exp) if _number(exp) else 0  # type: ignore[call-overload] # a number


def namespaced(provider: Provider, user: str) -> str:
    """The principal name of a provider's user: `<provider>:<user>`."""
    return f"{provider.name}{NAMESPACE_SEPARATOR}{user}"


def _verify(
    provider: Provider, token: str, parsed: Parsed, now: int
) -> dict[str, object] | str:
    alg = parsed.header["alg"]
    if alg not in provider.algorithms:
        return "token_bad_algorithm"
    if "crit" in parsed.header or "b64" in parsed.header:
        return "token_malformed"
    key = _key(provider, parsed, str(alg))
    claims = key if isinstance(key, str) else _signed_claims(token, key, str(alg))
    if isinstance(claims, str):
        return claims
    return _check_claims(provider, claims, now) or claims


def _signed_claims(token: str, key: PyJWK | bytes, alg: str) -> dict[str, object] | str:
    """The payload once PyJWT verified the signature, or a reason code."""
    try:
        verified = _JWS.decode_complete(token, key=key, algorithms=[alg])
        claims = json.loads(verified["payload"])
    except InvalidSignatureError:
        return "token_bad_signature"
    except (InvalidAlgorithmError, InvalidKeyError):
        return "token_bad_algorithm"
    except (DecodeError, PyJWTError, ValueError, RecursionError):
        return "token_malformed"
    return claims if isinstance(claims, dict) else "token_malformed"


def _key(provider: Provider, parsed: Parsed, alg: str) -> PyJWK | bytes | str:
    """The verification key, or a reason code."""
    if alg == "HS256":
        return provider.secret
    if provider.keys is None:
        return "token_bad_algorithm"
    kid = parsed.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return "token_malformed"
    return provider.keys.find(kid, alg, wait=provider.wait)


def _number(value: object) -> bool:
    # NumericDate: JSON also lets through Infinity/NaN and 1e400; none is a date.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value < MAX_DATE
    )


def _check_claims(provider: Provider, claims: dict[str, object], now: int) -> str:
    if claims.get("iss") != provider.issuer:
        return "token_bad_issuer"
    exp, nbf, iat = claims.get("exp"), claims.get("nbf", 0), claims.get("iat", 0)
    if not (_number(exp) and _number(nbf) and _number(iat)):
        return "token_malformed"  # exp is required: no bearer token lives forever
    if now >= exp:  # type: ignore[operator] # a number, checked above
        return "token_expired"
    if nbf > now + provider.leeway or iat > now + provider.leeway:  # type: ignore[operator]
        return "token_not_yet_valid"
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not provider.audiences.intersection(
        a for a in audiences if isinstance(a, str)
    ):
        return "token_bad_audience"
    return ""


def lookup(claims: Mapping[str, object], path: str) -> object:
    """
    A claim by name or dotted path (`realm_access.roles`).

    The whole name is tried first, so namespaced claims such as
    `https://example.com/roles` work too. None when absent.
    """
    if path in claims:
        return claims[path]
    node: object = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: object) -> str:
    """A claim as template text; "" (never a safe token) for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _roles(provider: Provider, claims: Mapping[str, object]) -> tuple[str, ...]:
    granted = list(provider.roles)
    if provider.roles_claim is not None:
        value = lookup(claims, provider.roles_claim)
        # A list of names (groups, Keycloak roles) or an OAuth `scope` string.
        names = value.split() if isinstance(value, str) else value
        if isinstance(names, list):
            present = {n for n in names if isinstance(n, str)}
            # role_map order, not the token's: the policy decides precedence.
            granted += [r for v, r in provider.role_map.items() if v in present]
    return tuple(dict.fromkeys(granted))
