"""Subscribe allows ending in `*` get the deny that stops `>` reaching deeper."""

from __future__ import annotations

import itertools

import pytest

from service.policy import Allow, describe, evaluate, parse_policy
from service.policy.subjects import deeper_denies, make_rules, overlaps, render
from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)


def _denies(*allow: str, deny: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    rules = make_rules(
        pub_allow=(), pub_deny=(), sub_allow=allow, sub_deny=deny, resp=None
    )
    grant = render(rules, user="u", account="A")
    assert grant is not None
    return grant.sub.deny, grant.implied_sub_deny


@pytest.mark.parametrize(
    ("allow", "implied"),
    [
        (("one.*",), ("one.*.>",)),
        (("a.*.*",), ("a.*.*.>",)),
        (("*",), ("*.>",)),
        (("one.* workers",), ("one.*.>",)),
        (("one.*", "two.>", "_INBOX.>"), ("one.*.>",)),
        (("a.*.c",), ()),  # a literal after the `*`: a `>` there matches nothing
        (("one.>",), ()),
    ],
)
def test_last_token_star_gets_a_deeper_deny(
    allow: tuple[str, ...], implied: tuple[str, ...]
) -> None:
    """Each allow ending in `*` gets `<allow>.>` denied, and only those."""
    deny, added = _denies(*allow)

    assert implied == added
    assert implied == deny


@pytest.mark.parametrize(
    "allow",
    [
        ("one.*", "one.>"),
        ("one.*", "one.a.>"),
        ("one.*", "one.a.b"),
        ("one.*", "*.x.y"),
        ("one.*", "one.*.z queue"),
        ("*", "_INBOX.>"),
    ],
)
def test_no_deny_that_would_take_away_another_allow(allow: tuple[str, ...]) -> None:
    """A deny wins in NATS, so none is added where another allow grants deeper."""
    deny, added = _denies(*allow)

    assert added == ()
    assert deny == ()


def test_an_explicit_deny_is_not_repeated() -> None:
    """When the policy already denies `one.*.>`, the service adds nothing."""
    deny, added = _denies("one.*", deny=("one.*.>",))

    assert deny == ("one.*.>",)
    assert added == ()


def _matches(pattern: list[str], subject: tuple[str, ...]) -> bool:
    for index, token in enumerate(pattern):
        if token == ">":
            return len(subject) > index
        if index >= len(subject) or token not in ("*", subject[index]):
            return False
    return len(subject) == len(pattern)


PATTERNS = [
    list(p)
    for n in range(1, 4)
    for p in itertools.product(("a", "b", "*", ">"), repeat=n)
    if ">" not in p[:-1]
]
SUBJECTS = [
    s for n in range(1, 6) for s in itertools.product(("a", "b", "c"), repeat=n)
]


def test_overlaps_agrees_with_brute_force() -> None:
    """`overlaps` is true exactly when some literal subject matches both patterns."""
    wrong = [
        (a, b)
        for a in PATTERNS
        for b in PATTERNS
        if overlaps(a, b) != any(_matches(a, s) and _matches(b, s) for s in SUBJECTS)
    ]

    assert wrong == []


def test_explain_lists_the_added_deny() -> None:
    """`explain` shows the deny the service added, in deny and as implied_deny."""
    policy = parse_policy("""\
version: 1
accounts: {APP: {}}
defaults: {account: APP}
users:
  - name: reader
    nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4
    subscribe: {allow: ["feed.{{user}}.*", "_INBOX.>"]}
""")
    request = AuthRequest(
        server=ServerInfo(id=ServerId("NSERVER")),
        user_nkey=UserNKey("UCONN"),
        client_info=ClientInfo(host="127.0.0.1", type="nats", nonce="n"),
        connect_opts=ConnectOpts(
            nkey="UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", sig="c2ln"
        ),
    )
    decision = evaluate(policy, request, 0, verify_nkey=lambda *_: True)
    assert isinstance(decision, Allow)

    view = describe(decision)

    assert view["permissions"]["sub"] == {  # type: ignore[index]
        "allow": ["feed.reader.*", "_INBOX.>"],
        "deny": ["feed.reader.*.>"],
        "implied_deny": ["feed.reader.*.>"],
    }


def test_deeper_denies_reads_only_the_subject_of_queue_entries() -> None:
    """`"subject queue"` entries are judged by their subject; the deny has no queue."""
    assert deeper_denies(["one.* q", "two.x q"]) == ("one.*.>",)
