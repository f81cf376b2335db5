"""Self-checks: first request per server, and the service's own connection."""

from __future__ import annotations

from typing import Any

import pytest

from service.dispatch.selfcheck import FirstRequestChecks, Verdict, connection_findings
from service.handler import HandlerContext, Outcome, handle
from service.policy import parse_policy
from service.protocol.claims import AUTH_SUBJECT
from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.builders import handler_context
from tests.factories import NOW, FakeServer, make_request

ISSUER = KeyPair.create(Prefix.ACCOUNT)
POLICY = parse_policy(
    "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
    "roles: {r: {subscribe: {allow: [a]}}}\nusers: []\n"
)


def _ctx(xkey: CurveKeyPair | None = None) -> HandlerContext:
    return handler_context(POLICY, ISSUER, xkey=xkey, check_secret=lambda _h, _s: False)


def _run(
    checks: FirstRequestChecks,
    ctx: HandlerContext,
    server: FakeServer,
    *,
    sub: str = ISSUER.public_key,
    seal_to: str | None = None,
) -> tuple[str | None, Verdict | None]:
    body, headers = make_request(server, issuer_account=sub, service_xkey=seal_to)
    outcome = handle(body, headers, ctx=ctx, now=NOW)
    key = checks.first_seen(outcome, body, headers)
    if key is None:
        return None, None
    return key, checks.check(body, headers, outcome, ctx, NOW)


def test_a_server_that_agrees_gives_no_finding() -> None:
    """The request's sub is our issuer: nothing to report, readiness clear."""
    checks = FirstRequestChecks(mode="config", issuer_account="")

    key, verdict = _run(checks, _ctx(), FakeServer())

    assert key is not None
    assert Verdict() == verdict


def test_issuer_mismatch_is_an_error_in_config_mode() -> None:
    """Another issuer in the request: error with both keys, readiness problem."""
    checks = FirstRequestChecks(mode="config", issuer_account="")
    theirs = KeyPair.create(Prefix.ACCOUNT).public_key
    server = FakeServer()

    _, verdict = _run(checks, _ctx(), server, sub=theirs)

    assert verdict is not None
    assert verdict.problem == "issuer_mismatch"
    (finding,) = verdict.findings
    assert (finding.event, finding.level) == ("callout.issuer_mismatch", "error")
    assert finding.fields["server_issuer"] == theirs
    assert finding.fields["our_issuer"] == ISSUER.public_key
    assert finding.fields["server_id"] == server.id


def test_operator_mode_without_issuer_account_only_warns() -> None:
    """The issuer may be a signing key of the callout account: a warning only."""
    checks = FirstRequestChecks(mode="operator", issuer_account="")
    callout_account = KeyPair.create(Prefix.ACCOUNT).public_key

    _, verdict = _run(checks, _ctx(), FakeServer(), sub=callout_account)

    assert verdict is not None
    assert verdict.problem is None
    assert verdict.findings[0].level == "warning"


def test_operator_mode_compares_with_issuer_account() -> None:
    """With CALLOUT_ISSUER_ACCOUNT set, the request's sub must be that account."""
    account = KeyPair.create(Prefix.ACCOUNT).public_key
    checks = FirstRequestChecks(mode="operator", issuer_account=account)

    _, same = _run(checks, _ctx(), FakeServer(), sub=account)
    _, other = _run(checks, _ctx(), FakeServer(), sub=ISSUER.public_key)

    assert Verdict() == same
    assert other is not None
    assert other.problem == "issuer_mismatch"


def test_each_server_is_checked_once_and_memory_is_bounded() -> None:
    """A server is checked on its first request only; old ones are forgotten."""
    checks = FirstRequestChecks(mode="config", issuer_account="", limit=2)
    first, second, third = FakeServer(), FakeServer(), FakeServer()

    keys = [
        _run(checks, _ctx(), server)[0]
        for server in (first, first, second, third, first)
    ]

    assert [first.id, None, second.id, third.id, first.id] == keys


def test_other_aborts_are_not_checked() -> None:
    """A malformed or expired request says nothing about the server's setup."""
    checks = FirstRequestChecks(mode="config", issuer_account="")
    outcome = Outcome(decision="abort", reply=None, reason="malformed_request")

    assert checks.first_seen(outcome, b"junk", None) is None


def test_server_xkey_without_ours_is_explained() -> None:
    """A sealed request and no CALLOUT_XKEY_SEED: xkey_mismatch, keyed by its xkey."""
    checks = FirstRequestChecks(mode="config", issuer_account="")
    server = FakeServer(xkey=CurveKeyPair.create())

    key, verdict = _run(
        checks, _ctx(), server, seal_to=CurveKeyPair.create().public_key
    )

    assert server.xkey is not None
    assert key == server.xkey.public_key
    assert verdict is not None
    assert verdict.problem == "xkey_mismatch"
    assert "CALLOUT_XKEY_SEED is not set" in str(verdict.findings[0].fields["hint"])


def test_our_xkey_with_a_plain_server_names_the_server() -> None:
    """A plain request while we have an xkey: the verified server id and our key."""
    checks = FirstRequestChecks(mode="config", issuer_account="")
    ours, server = CurveKeyPair.create(), FakeServer()

    key, verdict = _run(checks, _ctx(ours), server)

    assert key == server.id
    assert verdict is not None
    assert verdict.findings[0].fields["server_id"] == server.id
    assert ours.public_key in str(verdict.findings[0].fields["hint"])


def test_a_seal_for_another_xkey_is_explained() -> None:
    """The server seals to a key that is not ours: decryption fails, explained."""
    checks = FirstRequestChecks(mode="config", issuer_account="")
    ours, server = CurveKeyPair.create(), FakeServer(xkey=CurveKeyPair.create())

    _, verdict = _run(
        checks, _ctx(ours), server, seal_to=CurveKeyPair.create().public_key
    )

    assert verdict is not None
    assert verdict.problem == "xkey_mismatch"
    assert "another xkey" in str(verdict.findings[0].fields["hint"])


def _user_info(account: str, *, deny: bool = True) -> dict[str, Any]:
    publish = {"deny": [AUTH_SUBJECT]} if deny else {}
    return {"user": "svc", "account": account, "permissions": {"publish": publish}}


def test_a_well_placed_service_has_no_findings() -> None:
    """In its own callout account, alone: nothing to say."""
    connz = {"connections": [{"authorized_user": "svc"}, {"authorized_user": "svc"}]}

    assert [] == connection_findings(_user_info("AUTH"), connz)


def test_a_login_outside_the_callout_account_is_an_error() -> None:
    """No automatic publish deny on the request subject: not a callout account."""
    (finding,) = connection_findings(_user_info("OTHER", deny=False), None)

    assert (finding.event, finding.level) == ("callout.not_in_callout_account", "error")
    assert finding.fields["account"] == "OTHER"


def test_a_callout_account_other_than_the_setting_is_an_error() -> None:
    """Config mode: the login's callout account must be CALLOUT_AUTH_ACCOUNT."""
    (finding,) = connection_findings(_user_info("CALLOUT"), None, auth_account="AUTH")
    same = connection_findings(_user_info("AUTH"), None, auth_account="AUTH")

    assert (finding.event, finding.level) == ("callout.auth_account_mismatch", "error")
    assert (finding.fields["account"], finding.fields["setting"]) == ("CALLOUT", "AUTH")
    assert same == []


@pytest.mark.parametrize("connz", [None, {}, {"connections": None}])
def test_global_account_is_a_warning(connz: dict[str, Any] | None) -> None:
    """The callout in $G is reported; a missing CONNZ reply is not an error."""
    findings = connection_findings(_user_info("$G"), connz)

    assert ["callout.global_account_used"] == [f.event for f in findings]


def test_other_users_in_the_callout_account_are_bypass_users() -> None:
    """Everyone else connected in the callout account skipped the callout."""
    connz = {
        "connections": [
            {"authorized_user": "svc"},
            {"authorized_user": "ops"},
            {"authorized_user": "admin"},
            {"authorized_user": "ops"},
            {"name": "no auth info"},
        ]
    }

    (finding,) = connection_findings(_user_info("AUTH"), connz)

    assert finding.event == "callout.bypass_users_connected"
    assert finding.fields["users"] == ["admin", "ops"]
