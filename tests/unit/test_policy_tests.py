"""`nats-auth-callout test`: policy test files, their runner and their output."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from service.cli import main
from service.errors import PolicyError
from service.review.cases import load_cases
from tests import idp

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "config" / "policy.example.yaml"
EXAMPLE_TESTS = ROOT / "config" / "policy.example.tests.yaml"


def _run(
    capsys: pytest.CaptureFixture[str],
    policy: Path,
    *tests: Path,
    extra: tuple[str, ...] = (),
) -> tuple[int, str, str]:
    code = main(["test", str(policy), *map(str, tests), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _mutated(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def _cases(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_policy_passes_its_shipped_tests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """config/policy.example.tests.yaml passes against the example policy."""
    code, out, _ = _run(capsys, EXAMPLE, EXAMPLE_TESTS)

    assert code == 0
    assert out.splitlines()[-1] == "8 passed, 0 failed"
    assert all(line.startswith("ok") for line in out.splitlines()[:-1])


def test_removing_a_deny_fails_the_case_that_relies_on_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Without sensor-7's deny, its named case fails on the admin subject."""
    policy = _mutated(tmp_path, '    publish: {deny: ["users.sensor-7.admin.>"]}', "")

    code, out, _ = _run(capsys, policy, EXAMPLE_TESTS)

    assert code == 1
    assert f"FAIL {EXAMPLE_TESTS}:36: sensor-7 may not reach its admin subjects" in out
    assert "cannot_publish users.sensor-7.admin.reset: the grant allows it" in out
    assert out.splitlines()[-1] == "7 passed, 1 failed"


def test_widening_a_template_fails_the_case_that_relies_on_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """users.{{user}}.> widened to users.> fails john-doe's isolation case."""
    policy = _mutated(
        tmp_path,
        'subscribe: {allow: ["users.{{user}}.>", "_INBOX.>"]}',
        'subscribe: {allow: ["users.>", "_INBOX.>"]}',
    )

    code, out, _ = _run(capsys, policy, EXAMPLE_TESTS)

    assert code == 1
    assert "FAIL" in out
    assert "john-doe uses his own subjects only" in out
    assert "cannot_subscribe users.>: the grant allows it" in out


def test_secrets_come_from_the_environment_or_a_file(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """env:NAME and file:PATH secrets log in; an unset variable fails the case."""
    monkeypatch.setenv("JOHN_PW", "john-doe-password")
    (tmp_path / "billing.secret").write_text("billing-token\n")
    monkeypatch.delenv("UNSET_PW", raising=False)
    cases = _cases(
        tmp_path,
        "- login: {user: john-doe, password: 'env:JOHN_PW'}\n"
        "  expect: {decision: allow, account: APP}\n"
        "- login: {token: 'file:billing.secret'}\n"
        "  expect: {decision: allow, account: BILLING}\n"
        "- name: missing\n"
        "  login: {user: john-doe, password: 'env:UNSET_PW'}\n"
        "  expect: {decision: allow}\n",
    )

    code, out, _ = _run(capsys, EXAMPLE, cases)

    assert code == 1
    assert out.splitlines()[-1] == "2 passed, 1 failed"
    assert "environment variable UNSET_PW is not set" in out


def test_an_inline_real_secret_is_refused_and_never_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A password written in the file that is the real one fails its case."""
    cases = _cases(
        tmp_path,
        "- login: {user: john-doe, password: john-doe-password}\n"
        "  expect: {decision: allow}\n",
    )

    code, out, err = _run(capsys, EXAMPLE, cases)

    assert code == 1
    assert "the inline password is the real one" in out
    assert "john-doe-password" not in out + err


def test_a_wrong_expectation_names_what_differs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Decision, reason and account mismatches each say expected and got."""
    cases = _cases(
        tmp_path,
        "- login: {user: john-doe, verified: true}\n"
        "  expect: {decision: deny}\n"
        "- login: {user: john-doe, password: nope}\n"
        "  expect: {decision: deny, reason: unknown_user}\n"
        "- login: {user: john-doe, verified: true}\n"
        "  expect: {decision: allow, account: BILLING}\n",
    )

    code, out, _ = _run(capsys, EXAMPLE, cases)

    assert code == 1
    assert "decision: expected deny, got allow" in out
    assert "reason: expected unknown_user, got bad_password" in out
    assert "account: expected BILLING, got APP" in out


def test_a_bad_test_file_is_a_usage_error_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Unknown keys and inconsistent expectations are `file:line` problems, exit 2."""
    cases = _cases(
        tmp_path,
        "- login: {user: a, verified: true}\n"
        "  expect: {decision: allow}\n"
        "- login: {user: a}\n"
        "  expect: {decision: deny, can_publish: [x]}\n"
        "- expect: {decision: allow, cannot_publish: ['a.*']}\n"
        "  colour: blue\n",
    )

    code, _, err = _run(capsys, EXAMPLE, cases)

    assert code == 2
    assert f"{cases}:4: [1].expect: value error, a denial has no account" in err
    assert f"{cases}:6: [2].colour: unknown key" in err
    assert f"{cases}:5: [2].expect: value error, publish subjects are literal" in err


def test_a_test_file_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    """The top level must be a list of cases."""
    path = _cases(tmp_path, "login: {user: a}\n")

    with pytest.raises(PolicyError, match=r"cases.yaml:1: a test file is a list"):
        load_cases(path)


def test_junit_output_lists_every_case(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--junit writes one testcase per case and a failure for each failed one."""
    shutil.copy(EXAMPLE_TESTS, tmp_path / "tests.yaml")
    broken = _cases(
        tmp_path,
        "- name: wrong on purpose\n"
        "  login: {user: john-doe, verified: true}\n"
        "  expect: {decision: deny}\n",
        "broken.yaml",
    )
    report = tmp_path / "report.xml"

    code, _, _ = _run(
        capsys, EXAMPLE, tmp_path / "tests.yaml", broken, extra=("--junit", str(report))
    )

    suite = ET.parse(report).getroot().find("testsuite")  # noqa: S314 - our own file
    assert code == 1
    assert suite is not None
    assert suite.get("tests") == "9"
    assert suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["wrong on purpose"]


def test_an_invalid_policy_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The policy's own problems are printed and the exit code is 2."""
    policy = _mutated(tmp_path, "roles: [customer]", "roles: [custmer]")

    code, _, err = _run(capsys, policy, EXAMPLE_TESTS)

    assert code == 2
    assert "custmer" in err


def test_provider_claims_are_taken_as_verified(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A provider case gives claims directly: roles, account and subjects follow."""
    (tmp_path / "jwks.json").write_text(json.dumps(idp.jwks(idp.SigningKey.ec("k1"))))
    provider = {
        "name": "keycloak",
        "issuer": idp.ISSUER,
        "audiences": ["nats"],
        "algorithms": ["ES256"],
        "jwks_file": "jwks.json",
        "user_claim": "preferred_username",
        "roles_claim": "realm_access.roles",
        "role_map": {"nats-customer": "customer", "nats-admin": "admin"},
        "account_claim": "tenant_account",
    }
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\naccounts: {APP: {}, BILLING: {}}\ndefaults: {account: APP}\n"
        "roles:\n  customer:\n"
        '    publish: {allow: ["users.{{user}}.>", "t.{{claim.tenant}}.>"]}\n'
        '  admin: {publish: {allow: [">"]}}\n'
        f"users: []\nidentity_providers:\n  - {json.dumps(provider)}\n",
        encoding="utf-8",
    )
    customer = {
        "preferred_username": "alice",
        "realm_access": {"roles": ["nats-customer"]},
        "tenant": "acme",
    }
    cases = _cases(
        tmp_path,
        "- name: alice the customer\n"
        f"  login: {{provider: keycloak, claims: {json.dumps(customer)}}}\n"
        "  from: {type: WEBSOCKET}\n"
        "  expect:\n"
        "    decision: allow\n"
        "    user: 'keycloak:alice'\n"
        "    account: APP\n"
        "    can_publish: ['users.keycloak:alice.x', t.acme.orders]\n"
        "    cannot_publish: [users.alice.x, t.other.orders]\n"
        "- name: no mapped role\n"
        "  login: {provider: keycloak, claims: {preferred_username: bob}}\n"
        "  expect: {decision: deny, reason: token_no_roles}\n"
        "- name: a tenant account that is not listed\n"
        "  login:\n"
        "    provider: keycloak\n"
        "    claims: {preferred_username: eve, tenant_account: SYS,\n"
        "             realm_access: {roles: [nats-admin]}}\n"
        "  expect: {decision: deny, reason: token_bad_account}\n",
    )

    code, out, _ = _run(capsys, policy, cases)

    assert out.splitlines()[-1] == "3 passed, 0 failed", out
    assert code == 0


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ("{user: a, verified: true, password: x}", "verified: true takes a user"),
        ("{password: x}", "a password needs a user"),
        ("{cert: device.pem}", "cert is a PEM file: file:PATH"),
        ("{provider: keycloak}", "provider and claims go together"),
        ("{provider: k, claims: {}, user: a}", "a provider login gives claims"),
    ],
)
def test_inconsistent_logins_are_refused_at_load(
    tmp_path: Path, login: str, message: str
) -> None:
    """Each login that cannot be one client is a located problem."""
    path = _cases(tmp_path, f"- login: {login}\n  expect: {{decision: deny}}\n")

    with pytest.raises(PolicyError) as caught:
        load_cases(path)

    assert f"{path}:1: [0].login: value error, {message}" in caught.value.problems[0]


def test_a_certificate_login_reads_its_pem_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """cert: file:PEM is taken as a verified client certificate."""
    idp.CA(tmp_path).issue("device", cn="device-7")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        "roles: {r: {subscribe: {allow: [devices.>]}}}\n"
        "certificates:\n  - {name: device-7, match: {cn: device-7}, roles: [r]}\n",
        encoding="utf-8",
    )
    cases = _cases(
        tmp_path,
        "- login: {cert: 'file:device.pem'}\n"
        "  expect: {decision: allow, user: device-7, can_subscribe: [devices.x]}\n"
        "- name: unreadable\n"
        "  login: {cert: 'file:absent.pem'}\n"
        "  expect: {decision: allow}\n",
    )

    code, out, _ = _run(capsys, policy, cases)

    assert code == 1
    assert out.splitlines()[-1] == "1 passed, 1 failed"
    assert "cannot read: FileNotFoundError" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "secret file pw.txt is empty"), (None, "secret file pw.txt: cannot read")],
)
def test_an_unusable_secret_file_fails_its_case(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str | None,
    message: str,
) -> None:
    """An empty or missing file: the case fails and says why, naming no secret."""
    if content is not None:
        (tmp_path / "pw.txt").write_text(content)
    cases = _cases(
        tmp_path,
        "- login: {user: john-doe, password: 'file:pw.txt'}\n"
        "  expect: {decision: allow}\n",
    )

    code, out, _ = _run(capsys, EXAMPLE, cases)

    assert code == 1
    assert message in out
