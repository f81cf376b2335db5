# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""Policy model and subject rules: each field's check, merging and templates."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.policy.model import (
    BCRYPT_HINT,
    Account,
    Defaults,
    PolicyDocument,
    Responses,
    User,
    validate_document,
)
from service.policy.subjects import (
    Grant,
    is_safe_token,
    make_rules,
    normalize,
    render,
    subject_problem,
)
from service.protocol.claims import Permission, ResponsePermission
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret

HASH = hash_secret("pw")
SECRET = "hunter2-plaintext"


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid document, plus `extra` top-level keys."""
    return {
        "version": 1,
        "accounts": {"APP": {}},
        "defaults": {"account": "APP"},
    } | extra


def messages(exc: ValidationError) -> list[str]:
    """Just the messages of a validation error."""
    return [e["msg"] for e in exc.errors()]


def test_minimal_document_validates() -> None:
    """Version, one account and a default account are all a policy needs."""
    doc = validate_document(minimal())

    assert "APP" == doc.defaults.account
    assert () == doc.users
    assert doc.anonymous is None


def test_document_without_reference_context_is_refused() -> None:
    """model_validate() alone would skip the cross-checks, so it refuses to."""
    with pytest.raises(ValidationError) as caught:
        PolicyDocument.model_validate(minimal())

    assert ["validate policies with validate_document()"] == messages(caught.value)


def test_models_are_frozen() -> None:
    """A validated policy can't be changed in place (reloads swap the object)."""
    doc = validate_document(minimal())

    with pytest.raises(ValidationError):
        doc.defaults.account = "OTHER"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("2d", 172800), (45, 45)],
)
def test_durations(value: object, seconds: int) -> None:
    """Durations are seconds, or a number with s, m, h or d."""
    assert (
        seconds == Defaults.model_validate({"account": "A", "expires": value}).expires
    )


@pytest.mark.parametrize(
    "value", ["1w", "1.5h", "", "h", "-1s", True, 1.5, "0s", 0, -3]
)
def test_bad_durations(value: object) -> None:
    """Anything else, and zero or less, is refused."""
    with pytest.raises(ValidationError) as caught:
        Defaults.model_validate({"account": "A", "expires": value})

    assert messages(caught.value)[0] in {
        "bad duration: use seconds or 90s, 10m, 1h, 2d",
        "a duration must be more than zero",
    }


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_variants_are_accepted(prefix: str) -> None:
    """The three bcrypt variants nats-server and htpasswd write are accepted."""
    user = User.model_validate({"name": "a", "password": prefix + HASH[4:]})

    assert prefix + HASH[4:] == user.password


@pytest.mark.parametrize(
    "value",
    [SECRET, "", HASH[:-1], HASH + "x", "$2b$03$" + HASH[7:], "$2x$" + HASH[4:]],
)
def test_plaintext_or_malformed_secrets_are_refused(value: str) -> None:
    """Only a well-formed bcrypt hash may be a password or token."""
    with pytest.raises(ValidationError) as caught:
        User.model_validate({"name": "a", "token": value})

    assert [BCRYPT_HINT] == messages(caught.value)
    assert SECRET not in str(caught.value)


def test_non_string_secret_is_refused_without_echo() -> None:
    """A number where a hash belongs is refused, and not echoed either."""
    with pytest.raises(ValidationError) as caught:
        User.model_validate({"name": "a", "password": 31337})

    assert "31337" not in str(caught.value)


@pytest.mark.parametrize("name", ["john-doe", "a", "A_1", "ops@site", "x" * 64])
def test_safe_names(name: str) -> None:
    """Letters, digits, _, - and @, starting with a letter or digit."""
    assert name == User.model_validate({"name": name, "password": HASH}).name


@pytest.mark.parametrize(
    "name", ["", "-x", "_x", "a.b", "a b", "a*", ">", "x" * 65, "jürgen", "a\n"]
)
def test_unsafe_names(name: str) -> None:
    """Anything that could break out of one subject token is refused."""
    with pytest.raises(ValidationError) as caught:
        User.model_validate({"name": name, "password": HASH})

    assert messages(caught.value)[0].startswith("unsafe name")


def test_account_names_are_subject_tokens() -> None:
    """Account names may be $G or SYS-like, but never contain a dot."""
    assert {"$G", "SYS"} == set(
        validate_document(
            minimal(accounts={"$G": {}, "SYS": {}}) | {"defaults": {"account": "$G"}}
        ).accounts
    )

    with pytest.raises(ValidationError):
        validate_document(minimal(accounts={"A.B": {}, "APP": {}}))


def test_user_nkey_must_be_a_user_public_key() -> None:
    """nkey is a U public key; account keys and seeds are refused."""
    pair = KeyPair.create(Prefix.USER)
    assert (
        pair.public_key
        == User.model_validate({"name": "a", "nkey": pair.public_key}).nkey
    )

    with pytest.raises(ValidationError) as caught:
        User.model_validate({"name": "a", "nkey": pair.export_seed()})

    assert ["this looks like a seed; put only the public key here"] == messages(
        caught.value
    )
    assert pair.export_seed() not in str(caught.value)


def test_operator_mode_account_keys() -> None:
    """An account's public_key must be an A key when given."""
    key = KeyPair.create(Prefix.ACCOUNT).public_key
    assert key == Account.model_validate({"public_key": key}).public_key

    with pytest.raises(ValidationError):
        Account.model_validate({"public_key": KeyPair.create(Prefix.USER).public_key})


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_source_networks(value: str, stored: str) -> None:
    """CIDRs of either family; a bare address is a /32 or /128."""
    user = User.model_validate(
        {"name": "a", "password": HASH, "source_networks": [value]}
    )

    assert (stored,) == user.source_networks


@pytest.mark.parametrize("value", [2, 0, True, "1", 1.0])
def test_version_must_be_the_integer_one(value: object) -> None:
    """`version: true` or `"1"` is not version 1."""
    with pytest.raises(ValidationError) as caught:
        validate_document(minimal(version=value))

    assert ["unsupported policy version; this service reads version 1"] == messages(
        caught.value
    )


def test_responses_defaults_and_limits() -> None:
    """max defaults to 1 and must be a positive integer, not a string or bool."""
    assert 1 == Responses().max
    for bad in (0, "2", True):
        with pytest.raises(ValidationError):
            Responses.model_validate({"max": bad})


@pytest.mark.parametrize(
    ("entry", "direction", "problem"),
    [
        ("users.{{user}}.>", "pub", None),
        ("users.{{ account }}.*.x", "pub", None),
        ("orders.* workers", "sub", None),
        ("orders.> {{user}}", "sub", None),
        ("a-{{user}}-b.c", "pub", None),
        ("", "pub", "empty subject"),
        ("a..b", "pub", "subject has an empty token (..)"),
        (".a", "pub", "subject has a leading or trailing dot"),
        ("a.", "pub", "subject has a leading or trailing dot"),
        (
            "a b",
            False,
            "a queue group (subject queue) is only allowed in subscribe entries",
        ),
        ("a b c", "sub", "queue contains whitespace or a control character"),
        ("a\tb", "sub", "subject contains whitespace or a control character"),
        ("a\x00b", "pub", "subject contains whitespace or a control character"),
        ("a.>.b", "pub", "subject: > must be the last token"),
        ("a.b*", "pub", "subject: wildcards * and > must be a whole token"),
        ("a.>b", "pub", "subject: wildcards * and > must be a whole token"),
        ("a ", "sub", "empty queue"),
        (
            "x.{{who}}",
            False,
            (
                "unknown template variable {{who}};"
                " only {{user}}, {{account}} and {{claim.NAME}} exist"
            ),
        ),
        ("x.{{user}", "pub", "unbalanced template braces"),
    ],
)
def test_subject_rules(entry: str, direction: str, problem: str | None) -> None:
    """NATS subject syntax, templates counted as one literal token."""
    assert problem == subject_problem(entry, queue_allowed=direction == "sub")


@pytest.mark.parametrize("value", ["john-doe", "$G", "a@b", "ü"])
def test_safe_tokens(value: str) -> None:
    """A template value must be exactly one literal token."""
    assert is_safe_token(value)


@pytest.mark.parametrize("value", ["", "a.b", "*", ">", "a b", "a\x7f", "a\u2003b"])
def test_unsafe_tokens(value: str) -> None:
    """Empty values, dots, wildcards, whitespace and controls are not one token."""
    assert not is_safe_token(value)


def test_normalize_template_spacing() -> None:
    """`{{ user }}` is the same template as `{{user}}`."""
    assert "a.{{user}}.{{account}}" == normalize("a.{{ user }}.{{account }}")


def rules(**lists: tuple[str, ...]) -> Any:
    """make_rules with empty defaults."""
    resp = lists.pop("resp", None)
    return make_rules(
        pub_allow=lists.get("pub_allow", ()),
        pub_deny=lists.get("pub_deny", ()),
        sub_allow=lists.get("sub_allow", ()),
        sub_deny=lists.get("sub_deny", ()),
        resp=resp,  # type: ignore[arg-type]
    )


def test_render_substitutes_dedupes_and_deny_wins() -> None:
    """Templates fill in, duplicates go, and an entry in both lists stays in deny."""
    prepared = rules(
        pub_allow=("u.{{user}}.>", "u.{{ user }}.>", "a.{{account}}", "x"),
        pub_deny=("x",),
        sub_allow=("u.{{user}}.>",),
    )

    assert Grant(
        pub=Permission(allow=("u.bob.>", "a.APP"), deny=("x",)),
        sub=Permission(allow=("u.bob.>",)),
        resp=None,
    ) == render(prepared, user="bob", account="APP")


def test_render_safety_defaults() -> None:
    """No allow list means an explicit deny of everything, never the account default."""
    assert Grant(
        pub=Permission(deny=(">",)), sub=Permission(deny=(">",)), resp=None
    ) == render(rules(), user="u", account="A")


def test_render_with_responses_leaves_publish_open_for_replies() -> None:
    """With resp and no pub allow, pub stays empty so replies still work."""
    resp = ResponsePermission(max=1, ttl_seconds=60.0)

    grant = render(rules(resp=resp, sub_allow=("s",)), user="u", account="A")  # type: ignore[arg-type]

    assert Grant(pub=Permission(), sub=Permission(allow=("s",)), resp=resp) == grant


@pytest.mark.parametrize("value", ["a.b", "*", ">", "", "a b"])
def test_render_refuses_unsafe_values(value: str) -> None:
    """A value that is not one safe token gives no grant at all."""
    assert render(rules(pub_allow=("u.{{user}}",)), user=value, account="A") is None
    assert render(rules(sub_deny=("{{account}}.x",)), user="u", account=value) is None


def test_render_ignores_unused_unsafe_values() -> None:
    """Only substituted values must be safe."""
    grant = render(rules(pub_allow=("fixed",)), user="a.b", account="*")

    assert grant is not None
