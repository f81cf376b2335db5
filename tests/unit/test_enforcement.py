"""NATS subject semantics of a grant, as nats-server 2.15.1 applies them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.protocol.claims import Permission
from service.protocol.enforcement import (
    can_publish,
    can_subscribe,
    has_wildcard,
    subject_matches,
)

TOKEN = st.text(alphabet="abcxyz019_-", min_size=1, max_size=6)
SUBJECT = st.lists(TOKEN, min_size=1, max_size=5).map(".".join)


@pytest.mark.parametrize(
    ("entry", "subject", "expected"),
    [
        ("foo.*", "foo.bar", True),
        ("foo.*", "foo.bar.baz", False),
        ("foo.*", "foo", False),
        ("foo.>", "foo", False),
        ("foo.>", "foo.bar.baz", True),
        (">", "a", True),
        ("*", "a.b", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
        ("foo.*", "foo.>", True),  # the server's sublist: * matches the token >
        ("foo.bar", "foo.*", False),  # a literal entry never matches a wildcard
        ("foo.bar", "foo.bar", True),
    ],
)
def test_subject_matching_known_answers(
    entry: str,
    subject: str,
    expected: bool,  # noqa: FBT001 - a parametrize column
) -> None:
    """Token-wise matching, with the subject's own wildcards taken literally."""
    assert subject_matches(entry, subject) is expected


def test_deny_inside_allow_wins_for_publish() -> None:
    """deny foo.bar inside allow foo.>: foo.bar is refused, foo.baz is not."""
    perm = Permission(allow=("foo.>",), deny=("foo.bar",))

    assert can_publish(perm, "foo.baz")
    assert not can_publish(perm, "foo.bar")


def test_an_empty_allow_list_allows_everything_but_the_denied() -> None:
    """No allow list means everything, as in nats-server; deny still applies."""
    perm = Permission(deny=("secret.>",))

    assert can_publish(perm, "anything")
    assert can_subscribe(perm, "any.>")
    assert not can_subscribe(perm, "secret.x")


@pytest.mark.parametrize(
    ("subject", "queue", "expected"),
    [
        ("q.sub", "", False),  # only a queue entry: a plain sub is refused
        ("q.sub", "grp1", True),
        ("q.sub", "grp2", False),
        ("plain.x", "any", True),  # no queue entry matches: the plain one decides
        ("qw.sub", "grp.a", True),  # a queue group entry with a wildcard
        ("qw.sub", "other", False),
    ],
)
def test_queue_subscriptions(
    subject: str,
    queue: str,
    expected: bool,  # noqa: FBT001 - a parametrize column
) -> None:
    """Queue entries ("subject group") decide queue subscriptions."""
    perm = Permission(allow=("q.sub grp1", "plain.>", "qw.sub grp.*"))

    assert can_subscribe(perm, subject, queue) is expected


def test_a_deny_naming_a_queue_refuses_only_that_queue() -> None:
    """deny "d.sub bad" refuses queue bad, not a plain sub or another queue."""
    perm = Permission(allow=("d.>",), deny=("d.sub bad",))

    assert not can_subscribe(perm, "d.sub", "bad")
    assert can_subscribe(perm, "d.sub", "good")
    assert can_subscribe(perm, "d.sub")


@given(SUBJECT)
def test_a_literal_subject_matches_itself_and_full_wildcard(subject: str) -> None:
    """Every literal subject matches itself and `>`, and has no wildcard."""
    assert subject_matches(subject, subject)
    assert subject_matches(">", subject)
    assert not has_wildcard(subject)


@given(SUBJECT, SUBJECT)
def test_deny_always_wins(allowed: str, subject: str) -> None:
    """A subject matched by a deny entry is refused whatever the allow list."""
    perm = Permission(allow=(allowed, ">"), deny=(subject,))

    assert not can_publish(perm, subject)
    assert not can_subscribe(perm, subject)


@given(SUBJECT, SUBJECT)
def test_star_matches_exactly_one_token(prefix: str, rest: str) -> None:
    """prefix.* matches prefix.<one token> only; prefix.> matches any depth."""
    one = rest.split(".", maxsplit=1)[0]

    assert subject_matches(f"{prefix}.*", f"{prefix}.{one}")
    assert subject_matches(f"{prefix}.*", f"{prefix}.{rest}") is ("." not in rest)
    assert subject_matches(f"{prefix}.>", f"{prefix}.{rest}")
