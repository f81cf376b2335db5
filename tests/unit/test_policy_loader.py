# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""Policy loader: the example loads, each problem has its file:line, no leaks."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.errors import PolicyError
from service.policy import Policy, load_policy, parse_policy
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret
from tests.factories import john_doe_policy

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet

EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"
HASH = hash_secret("pw")
OTHER_HASH = hash_secret("other")
NKEY = KeyPair.create(Prefix.USER).public_key
HINT = "plaintext or malformed bcrypt hash; make one with `nats-auth-callout hash`"
PLAINTEXT = "hunter2-plaintext"

# Lines 1-15; cases append users from line 16 on or replace a fragment.
BASE = john_doe_policy(
    HASH,
    head="""\
version: 1
accounts:
  APP: {}
  BILLING: {}
defaults:
  account: APP
  expires: 1h
""",
)


def problems(text: str) -> list[str]:
    """The problems parse_policy reports for `text`, as policy.yaml."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policy.yaml")
    return caught.value.problems


def test_example_policy_loads() -> None:
    """config/policy.example.yaml is valid, so the documented example can't rot."""
    policy = load_policy(EXAMPLE)

    assert isinstance(policy, Policy)
    assert ["john-doe", "billing", "sensor-7"] == [u.name for u in policy.users]
    assert "BILLING" == policy.by_name["billing"].account
    assert policy.anonymous is not None
    assert str(EXAMPLE) == policy.source
    expected = "sha256:" + hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert expected == policy.version_hash


def test_base_document_is_valid() -> None:
    """The fixture every error case starts from loads without problems."""
    policy = parse_policy(BASE)

    assert "<policy>" == policy.source
    expected = "sha256:" + hashlib.sha256(BASE.encode()).hexdigest()
    assert expected == policy.version_hash
    assert ("users.john-doe.>",) == policy.by_name["john-doe"].grant.pub.allow  # type: ignore[union-attr]


def user(*lines: str) -> str:
    """BASE plus one more user (starting at line 16) made of `lines`."""
    first, *rest = lines
    return BASE + f"  - {first}\n" + "".join(f"    {line}\n" for line in rest)


def user_line(line: str, problem: str, case_id: str) -> ParameterSet:
    """A case: user `a` with a password and `line` (line 18), `problem` there."""
    return pytest.param(
        user("name: a", f'password: "{HASH}"', line),
        f"policy.yaml:18: {problem}",
        id=case_id,
    )


CASES = [
    pytest.param(
        BASE.replace("version: 1", "version: 2"),
        "policy.yaml:1: version:"
        " unsupported policy version; this service reads version 1",
        id="version",
    ),
    pytest.param(
        BASE + "colour: red\n",
        "policy.yaml:16: colour: unknown key",
        id="unknown-root-key",
    ),
    user_line("rolez: [customer]", "users[1].rolez: unknown key", "unknown-user-key"),
    user_line(
        "roles: [customer, nope]",
        "users[1].roles[1]: unknown role 'nope'; declare it under roles",
        "unknown-role",
    ),
    pytest.param(
        BASE.replace("account: APP", "account: NOPE"),
        "policy.yaml:6: defaults.account:"
        " account 'NOPE' is not declared under accounts",
        id="undeclared-default-account",
    ),
    user_line(
        "account: SYS",
        "users[1].account: account 'SYS' is not declared under accounts",
        "undeclared-user-account",
    ),
    pytest.param(
        BASE + "anonymous:\n  roles: [customer]\n  account: SYS\n",
        "policy.yaml:18: anonymous.account:"
        " account 'SYS' is not declared under accounts",
        id="undeclared-anonymous-account",
    ),
    pytest.param(
        BASE.replace('"users.{{user}}.>"]}', '"users..x"]}', 1),
        "policy.yaml:10: roles.customer.publish.allow[0]:"
        " subject has an empty token (..)",
        id="empty-token",
    ),
    user_line(
        'publish: {allow: [".a"]}',
        "users[1].publish.allow[0]: subject has a leading or trailing dot",
        "leading-dot",
    ),
    user_line(
        'publish: {deny: ["a."]}',
        "users[1].publish.deny[0]: subject has a leading or trailing dot",
        "trailing-dot",
    ),
    user_line(
        'subscribe: {allow: ["a\\tb"]}',
        "users[1].subscribe.allow[0]:"
        " subject contains whitespace or a control character",
        "whitespace",
    ),
    user_line(
        'subscribe: {allow: [">.a"]}',
        "users[1].subscribe.allow[0]: subject: > must be the last token",
        "gt-not-last",
    ),
    user_line(
        'subscribe: {deny: ["a.b*"]}',
        "users[1].subscribe.deny[0]: subject: wildcards * and > must be a whole token",
        "partial-wildcard",
    ),
    user_line(
        'publish: {allow: ["jobs workers"]}',
        "users[1].publish.allow[0]:"
        " a queue group (subject queue) is only allowed in subscribe entries",
        "queue-in-publish",
    ),
    user_line(
        'subscribe: {allow: ["a.{{name}}"]}',
        "users[1].subscribe.allow[0]: unknown template variable"
        " {{name}}; only {{user}}, {{account}} and {{claim.NAME}} exist",
        "unknown-template",
    ),
    pytest.param(
        user("name: a", "password: plain-and-simple"),
        f"policy.yaml:17: users[1].password: {HINT}",
        id="plaintext-password",
    ),
    pytest.param(
        user("name: a", f'token: "{HASH[:-1]}"'),
        f"policy.yaml:17: users[1].token: {HINT}",
        id="malformed-token-hash",
    ),
    pytest.param(
        user("name: a", f'password: "$2x${HASH[4:]}"'),
        f"policy.yaml:17: users[1].password: {HINT}",
        id="unknown-bcrypt-variant",
    ),
    pytest.param(
        user("name: john-doe", f'password: "{HASH}"'),
        "policy.yaml:16: users[1].name: duplicate user name 'john-doe'",
        id="duplicate-name",
    ),
    pytest.param(
        BASE
        + f'  - {{name: t1, token: "{OTHER_HASH}"}}\n'
        + f'  - {{name: t2, token: "{OTHER_HASH}"}}\n',
        "policy.yaml:17: users[2].token: duplicate token hash",
        id="duplicate-token-hash",
    ),
    pytest.param(
        BASE
        + f"  - {{name: n1, nkey: {NKEY}}}\n"
        + f"  - {{name: n2, nkey: {NKEY}}}\n",
        f"policy.yaml:17: users[2].nkey: duplicate nkey {NKEY!r}",
        id="duplicate-nkey",
    ),
    pytest.param(
        user("name: a", f"nkey: {KeyPair.create(Prefix.ACCOUNT).public_key}"),
        "policy.yaml:17: users[1].nkey: not a valid user public nkey:"
        " expected user, got account key",
        id="account-key-as-nkey",
    ),
    pytest.param(
        user("name: a.b", f'password: "{HASH}"'),
        "policy.yaml:16: users[1].name: unsafe name; a name is 1-64 characters:"
        " a letter or digit, then letters, digits, '_', '-' or '@'",
        id="unsafe-user-name",
    ),
    pytest.param(
        BASE.replace("  BILLING: {}", "  BILL.ING: {}"),
        'policy.yaml:4: accounts["BILL.ING"]: an account name must be one subject token'
        " of at most 64 characters: no '.', '*', '>', whitespace or control"
        " characters",
        id="unsafe-account-name",
    ),
    pytest.param(
        BASE.replace("expires: 1h", "expires: 1w"),
        "policy.yaml:7: defaults.expires:"
        " bad duration: use seconds or 90s, 10m, 1h, 2d",
        id="bad-duration",
    ),
    user_line(
        "expires: 0",
        "users[1].expires: a duration must be more than zero",
        "zero-duration",
    ),
    user_line(
        'source_networks: ["10.0.0.1/8"]',
        "users[1].source_networks[0]: not a CIDR network: 10.0.0.1/8 has host bits set",
        "bad-cidr",
    ),
    user_line(
        "connection_types: [STANDARD, TCP]",
        "users[1].connection_types[1]: input should be 'STANDARD',"
        " 'WEBSOCKET', 'LEAFNODE', 'LEAFNODE_WS', 'MQTT' or 'MQTT_WS'",
        "bad-connection-type",
    ),
    pytest.param(
        user("name: a", "roles: [customer]"),
        "policy.yaml:16: users[1]: a user needs exactly one of password, token, nkey"
        " (found: none)",
        id="no-credential",
    ),
    pytest.param(
        user("name: a", f'password: "{HASH}"', f"nkey: {NKEY}"),
        "policy.yaml:16: users[1]: a user needs exactly one of password, token, nkey"
        " (found: password, nkey)",
        id="two-credentials",
    ),
    pytest.param(
        user("password: " + HASH),
        "policy.yaml:16: users[1].name: required key is missing",
        id="missing-name",
    ),
    pytest.param(
        BASE.replace("accounts:\n  APP: {}\n  BILLING: {}\n", "accounts: [APP]\n"),
        "policy.yaml:2: accounts: expected a mapping",
        id="accounts-not-a-mapping",
    ),
    pytest.param(
        "- version: 1\n",
        "policy.yaml:1: expected a mapping",
        id="not-a-mapping",
    ),
    pytest.param(
        BASE + "  - name: [\n",
        "policy.yaml:17: invalid YAML: expected the node content, but found"
        " '<stream end>'",
        id="yaml-syntax",
    ),
    pytest.param("", "policy.yaml:1: the policy is empty", id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_reports_problem_with_line(text: str, expected: str) -> None:
    """Each kind of mistake is reported once, as file:line: where: message."""
    assert [expected] == problems(text)


def test_no_accounts_and_the_reference_to_them() -> None:
    """An empty accounts section is an error, and so is naming an account in it."""
    text = "version: 1\naccounts: {}\ndefaults: {account: APP}\n"

    assert [
        (
            "policy.yaml:2: accounts: dictionary should have at least 1 item after"
            " validation, not 0"
        ),
        "policy.yaml:3: defaults.account: account 'APP' is not declared under accounts",
    ] == problems(text)


def test_duplicate_password_hashes_are_allowed() -> None:
    """Two users may share a password hash (only tokens and nkeys identify)."""
    policy = parse_policy(user("name: twin", f'password: "{HASH}"'))

    assert {"john-doe", "twin"} == {u.name for u in policy.users}


def test_reports_every_problem_at_once_in_line_order() -> None:
    """Problems from different sections all come back together, sorted by line."""
    text = user("name: a", "password: nope", "roles: [ghost]").replace(
        "expires: 1h", "expires: soon"
    )

    assert [
        (
            "policy.yaml:7: defaults.expires:"
            " bad duration: use seconds or 90s, 10m, 1h, 2d"
        ),
        f"policy.yaml:17: users[1].password: {HINT}",
        (
            "policy.yaml:18: users[1].roles[0]:"
            " unknown role 'ghost'; declare it under roles"
        ),
    ] == problems(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(user("name: a", f"password: {PLAINTEXT}"), id="password"),
        pytest.param(user("name: a", f'token: "{PLAINTEXT}"'), id="token"),
        pytest.param(user("name: a", f"nkey: S{PLAINTEXT}"), id="seed-as-nkey"),
        pytest.param(
            user("name: a", f"password: {PLAINTEXT}", f"password: {PLAINTEXT}x"),
            id="duplicate-yaml-key",
        ),
        pytest.param(
            user("name: a", f'password: "{PLAINTEXT}'), id="unterminated-quote"
        ),
    ],
)
def test_errors_never_contain_the_secret(text: str) -> None:
    """No message, traceback or chained exception shows a secret from the file."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policy.yaml")

    rendered = "".join(traceback.format_exception(caught.value))
    assert PLAINTEXT not in rendered
    assert PLAINTEXT not in str(caught.value)
    assert caught.value.__cause__ is None


def test_duplicate_yaml_key_names_the_key_and_line() -> None:
    """A key given twice is a YAML error at the second key, naming only the key."""
    text = user("name: a", f"password: {PLAINTEXT}", f"password: {PLAINTEXT}")

    assert ["policy.yaml:18: duplicate key 'password'"] == problems(text)


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that cannot be read is one problem: file: cannot read: strerror."""
    missing = tmp_path / "nope.yaml"

    with pytest.raises(PolicyError) as caught:
        load_policy(missing)

    assert [
        f"{missing}: cannot read: No such file or directory"
    ] == caught.value.problems


def test_not_utf8_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported at their line."""
    path = tmp_path / "policy.yaml"
    path.write_bytes(BASE.encode() + b"  - name: \xff\n")

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert [f"{path}:16: not UTF-8 text"] == caught.value.problems


def test_load_policy_reports_the_path(tmp_path: Path) -> None:
    """Errors from a file carry its path as given."""
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.replace("version: 1", "version: 0"))

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert [
        f"{path}:1: version: unsupported policy version; this service reads version 1"
    ] == caught.value.problems


def test_merge_keys_do_not_break_line_lookup() -> None:
    """Keys that arrive through a YAML merge (<<) still get a line, not a crash."""
    text = (
        "version: 1\n"
        "accounts: {APP: {}}\n"
        "defaults: {account: APP}\n"
        "users:\n"
        "  - &base {name: a, password: plain, roles: []}\n"
        "  - <<: *base\n"
        "    name: b\n"
        "    bogus: 1\n"
    )

    assert [
        f"policy.yaml:5: users[0].password: {HINT}",
        f"policy.yaml:6: users[1].password: {HINT}",
        "policy.yaml:8: users[1].bogus: unknown key",
    ] == problems(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "version: 1\nkey: \x07\n",
            "policy.yaml:2: invalid YAML: non-printable character",
            id="control-character",
        ),
        pytest.param(
            "[" * 600 + "]" * 600,
            "policy.yaml:1: YAML nested too deeply",
            id="deep-nesting",
        ),
        pytest.param(
            "version: 1\n---\nversion: 1\n",
            "policy.yaml:2: invalid YAML: but found another document",
            id="two-documents",
        ),
    ],
)
def test_yaml_problems(text: str, expected: str) -> None:
    """Unparsable YAML is one problem at its line, never a raw exception."""
    assert [expected] == problems(text)


def test_reused_anchor_is_not_a_warning() -> None:
    """ruamel warnings quote the document (maybe a secret), so they stay quiet."""
    text = BASE.replace("APP: {}", "APP: &same {}").replace(
        "BILLING: {}", "BILLING: &same {}"
    )

    assert {"APP", "BILLING"} == set(parse_policy(text).accounts)


def test_policy_exposes_declared_names() -> None:
    """accounts and roles are the document's, for `check` and startup warnings."""
    policy = parse_policy(BASE)

    assert ["APP", "BILLING"] == list(policy.accounts)
    assert ["customer"] == list(policy.roles)
    assert policy.by_name["john-doe"] is policy.users[0]


def test_roles_without_a_roles_section_are_unknown() -> None:
    """With no roles section at all, every role a user names is unknown."""
    text = (
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        f"users:\n  - name: a\n    roles: [nope]\n    password: {PLAINTEXT}\n"
    )

    assert [
        "policy.yaml:6: users[0].roles[0]: unknown role 'nope'; declare it under roles",
        f"policy.yaml:7: users[0].password: {HINT}",
    ] == problems(text)
