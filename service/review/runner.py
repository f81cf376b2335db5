"""
Run policy test cases: the service's own decision, the server's own rules.

Each case becomes the authorization request nats-server would send, goes
through `evaluate` (the code the service runs), and its grant is checked
with `protocol.enforcement` (the rules nats-server applies to the JWT the
service would issue). Nothing here prints or returns a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.policy import Allow, Deny, evaluate, tokens
from service.policy.evaluate import admit
from service.policy.passwords import bcrypt_check
from service.protocol.enforcement import can_publish, can_subscribe
from service.review.cases import SecretUnavailable, resolve_secret
from service.review.dryrun import dry_request

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from service.policy import Decision, Grant, Policy
    from service.protocol.claims import (
        AuthRequest,
    )
    from service.review.cases import Expect, LoadedCase, Login, Source

_TYPES = {
    "STANDARD": "nats",
    "WEBSOCKET": "websocket",
    "MQTT": "mqtt",
    "LEAFNODE": "leafnode",
}
_PLACEHOLDER = "verified-by-the-test"  # stands for a credential taken as checked


@dataclass(frozen=True, slots=True)
class Result:
    """One case's outcome: `failures` is empty when it passed."""

    title: str
    where: str
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class _Attempt:
    request: AuthRequest
    check_secret: Callable[[str, str], bool]
    inline: tuple[tuple[str, str], ...]  # (what, secret) written in the file


def run_case(policy: Policy, loaded: LoadedCase, now: int) -> Result:
    """Decide the case's login with `policy` and compare with its `expect`."""
    where = f"{loaded.source}:{loaded.line}"
    try:
        attempt = _attempt(policy, loaded)
    except SecretUnavailable as exc:
        return Result(loaded.title, where, (str(exc),))
    except OSError as exc:
        return Result(loaded.title, where, (f"cannot read: {type(exc).__name__}",))
    leaked = _real_inline_secret(policy, loaded.case.login, attempt.inline)
    if leaked:
        return Result(loaded.title, where, (leaked,))
    login = loaded.case.login
    if login.provider is not None:
        decision = _by_claims(policy, login.provider, login.claims or {}, attempt, now)
    else:
        decision = evaluate(
            policy,
            attempt.request,
            now,
            check_secret=attempt.check_secret,
            verify_nkey=lambda _key, _nonce, _sig: True,  # public keys: no seed here
        )
    return Result(loaded.title, where, tuple(compare(decision, loaded.case.expect)))


def _by_claims(
    policy: Policy,
    name: str,
    claims: Mapping[str, object],
    attempt: _Attempt,
    now: int,
) -> Decision:
    """A provider's token taken as verified: its claims, then the usual checks."""
    provider = next((p for p in policy.providers if p.name == name), None)
    if provider is None:
        return Deny("token_bad_issuer")
    found = tokens.from_claims(provider, claims)
    if isinstance(found, tuple):
        reason, user = found
        return Deny(reason, user=user, via=f"jwt:{provider.name}")
    return admit(found, attempt.request, now)


def compare(decision: Decision, expect: Expect) -> list[str]:
    """What differs between a decision and the expectation (empty: none)."""
    got = "allow" if isinstance(decision, Allow) else "deny"
    if got != expect.decision:
        why = "" if isinstance(decision, Allow) else f" ({decision.reason})"
        return [f"decision: expected {expect.decision}, got {got}{why}"]
    if not isinstance(decision, Allow):
        if expect.reason is not None and expect.reason != decision.reason:
            return [f"reason: expected {expect.reason}, got {decision.reason}"]
        return []
    failures = [
        f"{what}: expected {wanted}, got {actual}"
        for what, wanted, actual in (
            ("account", expect.account, decision.account),
            ("user", expect.user, decision.user),
        )
        if wanted is not None and wanted != actual
    ]
    return failures + _subject_failures(decision.grant, expect)


def _subject_failures(grant: Grant, expect: Expect) -> list[str]:
    checks: list[tuple[str, tuple[str, ...], bool, Callable[[str], bool]]] = [
        ("can_publish", expect.can_publish, True, lambda s: can_publish(grant.pub, s)),
        (
            "cannot_publish",
            expect.cannot_publish,
            False,
            lambda s: can_publish(grant.pub, s),
        ),
        ("can_subscribe", expect.can_subscribe, True, lambda e: _subscribe(grant, e)),
        (
            "cannot_subscribe",
            expect.cannot_subscribe,
            False,
            lambda e: _subscribe(grant, e),
        ),
    ]
    return [
        f"{what} {entry}: the grant {'refuses' if wanted else 'allows'} it"
        for what, entries, wanted, allowed in checks
        for entry in entries
        if allowed(entry) != wanted
    ]


def _subscribe(grant: Grant, entry: str) -> bool:
    subject, _, queue = entry.partition(" ")
    return can_subscribe(grant.sub, subject, queue)


def _attempt(policy: Policy, loaded: LoadedCase) -> _Attempt:
    login, base = loaded.case.login, loaded.base_dir
    inline: list[tuple[str, str]] = []
    password = token = ""
    check_secret: Callable[[str, str], bool] = bcrypt_check
    if login.password is not None:
        password, written = resolve_secret(login.password, base)
        if written:
            inline.append(("password", password))
    if login.token is not None:
        token, written = resolve_secret(login.token, base)
        if written:
            inline.append(("token", token))
    if login.verified:
        principal = policy.by_name.get(login.user or "")
        expected = principal.credential if principal is not None else None
        # only the named principal's own hash counts as checked
        check_secret = lambda hashed, _secret: hashed == expected  # noqa: E731
        if principal is not None and principal.identity == "token":
            token = _PLACEHOLDER
        else:
            password = _PLACEHOLDER
    pem = None
    if login.cert is not None:
        pem = (base / login.cert.removeprefix("file:")).read_text(encoding="ascii")
    return _Attempt(
        request=_request(login, loaded.case.source, password, token, pem),
        check_secret=check_secret,
        inline=tuple(inline),
    )


def _request(
    login: Login, source: Source, password: str, token: str, tls_pem: str | None
) -> AuthRequest:
    user = "" if token and login.verified else (login.user or "")
    return dry_request(
        user=user,
        password=password,
        token=token,
        nkey=login.nkey or "",
        cert_pem=tls_pem,
        host=source.host,
        client_type=_TYPES[source.type],
        label="POLICYTEST",
    )


def _real_inline_secret(
    policy: Policy, login: Login, inline: tuple[tuple[str, str], ...]
) -> str:
    """A refusal when a secret written in the file is a principal's real one."""
    for what, secret in inline:
        if what == "password":
            principal = policy.by_name.get(login.user or "")
            hashes = [principal.credential] if principal is not None else []
        else:
            hashes = [p.credential for p in policy.token_users]
        if any(bcrypt_check(hashed, secret) for hashed in hashes if hashed):
            return (
                f"the inline {what} is the real one: keep secrets out of test "
                "files (use env:NAME or file:PATH)"
            )
    return ""
