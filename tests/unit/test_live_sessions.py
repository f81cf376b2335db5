"""Live sessions without IO: CONNZ and KICK replies, who a reload kicks, pacing."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest

from service.policy import parse_policy
from service.process.sessions import Pacer
from service.review.sessions import (
    Connection,
    Revocation,
    Revocations,
    kick_answer,
    of_principal,
    parse_connz,
    to_kick,
)
from tests import idp
from tests.builders import hash_secret

if TYPE_CHECKING:
    from pathlib import Path

    from service.policy import Policy

HASH = hash_secret("pw", 4)


def _policy(users: str, extra: str = "") -> str:
    return f"""version: 1
accounts: {{APP: {{}}, OTHER: {{}}}}
defaults: {{account: APP, expires: 1h}}
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
{extra}users:
{users}"""


def _user(name: str, *, account: str = "APP", role: str = "customer") -> str:
    return (
        f'  - name: {name}\n    password: "{HASH}"\n    roles: [{role}]\n'
        f"    account: {account}\n"
    )


def _conn(user: str, cid: int, account: str = "APP") -> Connection:
    return Connection("NSERVER", cid, account, user, "nats")


def test_parse_connz_reads_authorized_user_and_pages() -> None:
    """The principal is `authorized_user` (the JWT's name); a partial page says so."""
    payload = json.dumps(
        {
            "server": {"id": "NSERVER"},
            "data": {
                "server_id": "NSERVER",
                "offset": 0,
                "total": 3,
                "connections": [
                    {"cid": 8, "type": "websocket", "account": "APP",
                     "authorized_user": "alice"},
                    {"cid": 9, "type": "nats", "account": "APP"},
                ],
            },
        }
    ).encode()  # fmt: skip

    page = parse_connz(payload)

    assert page is not None
    assert page.connections == (
        Connection("NSERVER", 8, "APP", "alice", "websocket"),
        Connection("NSERVER", 9, "APP", "", "nats"),
    )
    assert page.next_offset == 2
    assert parse_connz(b'{"error": {"code": 500}}') is None
    assert parse_connz(b"not json") is None


def test_kick_answer_success_and_error() -> None:
    """A reply without `error` is a kick done; an unknown cid is the server's text."""
    unknown = b'{"server": {}, "error": {"code": 500, "description": "no such client"}}'

    assert kick_answer(b'{"server": {"id": "N"}}') is None
    assert kick_answer(unknown) == "no such client"
    assert kick_answer(b"[") == "unreadable reply"


def test_to_kick_removed_changed_and_untouched() -> None:
    """Gone and changed principals are kicked; unchanged, unknown, others' are not."""
    old = parse_policy(_policy(_user("alice") + _user("bob") + _user("carol")))
    new = parse_policy(
        _policy(_user("bob", account="OTHER") + _user("carol"))  # alice gone
    )
    live = [
        _conn("alice", 1),
        _conn("alice", 2),
        _conn("bob", 3),
        _conn("carol", 4),
        _conn("stranger", 5),
        _conn("alice", 6, account="SYS"),  # a static user of that name elsewhere
    ]

    kicks = to_kick(live, old, new)

    assert [(c.cid, cause) for c, cause in kicks] == [
        (1, "removed"),
        (2, "removed"),
        (3, "changed"),
    ]


def test_to_kick_sees_a_role_change_through_the_grant() -> None:
    """A role whose subjects changed changes every holder's facts."""
    wide = 'publish: {allow: ["users.{{user}}.>"]}'
    narrow = 'publish: {allow: ["users.{{user}}.narrow.>"]}'
    text = _policy(_user("alice"), extra=f"  other:\n    {wide}\n")
    old = parse_policy(text)
    new = parse_policy(text.replace(wide, narrow, 1))

    kicks = to_kick([_conn("alice", 1)], old, new)

    assert [(c.cid, cause) for c, cause in kicks] == [(1, "changed")]


@pytest.mark.parametrize("rate", [50.0])
async def test_pacer_spaces_events(rate: float) -> None:
    """Eleven events at 50/s take at least 10 gaps of 20 ms."""
    pacer = Pacer(rate)
    loop = asyncio.get_running_loop()
    started = loop.time()

    for _ in range(11):
        await pacer.wait()

    assert loop.time() - started >= 10 / rate * 0.95


def test_revocation_round_trips_and_refuses_malformed() -> None:
    """A revocation survives the wire; a wrong shape is no revocation."""
    sent = Revocation("alice", "stolen laptop", 1_900_000_000.0)

    assert Revocation.decode(sent.encode()) == sent
    assert Revocation.decode(b'{"user": "", "until": 0}') is None
    assert Revocation.decode(b'{"user": "alice", "until": -1}') is None
    assert Revocation.decode(b'{"user": ["alice"], "until": 0}') is None
    assert Revocation.decode(b"nope") is None


def test_revocations_last_until_their_time_or_a_clear() -> None:
    """Refused before `until` (or forever with 0), not after, nor once cleared."""
    revocations = Revocations()
    revocations.add(Revocation("alice", "", 100.0))
    revocations.add(Revocation("bob", "", 0.0))

    assert revocations.refused("alice", 99.0)
    assert not revocations.refused("alice", 100.0)
    assert revocations.refused("bob", 1e12)
    assert not revocations.refused("carol", 0.0)
    revocations.clear()
    assert not revocations.refused("bob", 0.0)


def test_of_principal_keeps_its_own_account_only() -> None:
    """A revocation kicks the principal's connections in its account, no others."""
    policy = parse_policy(_policy(_user("alice")))
    live = [_conn("alice", 1), _conn("alice", 2, account="OTHER"), _conn("bob", 3)]

    assert [c.cid for c in of_principal(live, policy, "alice")] == [1]


def _provider_policy(directory: Path, role_map: str) -> Policy:
    (directory / "jwks.json").write_text(json.dumps(idp.jwks(idp.SigningKey.ec("k"))))
    provider = (
        "identity_providers:\n"
        "  - {name: keycloak, issuer: https://idp.example, audiences: [nats],\n"
        "     algorithms: [ES256], jwks_file: jwks.json, roles_claim: roles,\n"
        f"     role_map: {role_map}, account_claim: tenant}}\n"
    )
    text = _policy(_user("alice"), extra="") + provider
    return parse_policy(text, base_dir=directory)


def test_an_identity_providers_users_go_with_its_facts(tmp_path: Path) -> None:
    """A provider's changed role map kicks its users, in any account it places."""
    old = _provider_policy(tmp_path, "{nats-customer: customer}")
    new = _provider_policy(tmp_path, "{nats-other: customer}")
    conns = [
        _conn("keycloak:alice", 1),
        _conn("keycloak:bob", 2, account="OTHER"),  # placed by the tenant claim
        _conn("keycloak:carol", 3, account="SYS"),  # not an account it places
        _conn("alice", 4),  # the local user, unchanged
    ]

    kicked = to_kick(conns, old, new)

    assert [(c.cid, cause) for c, cause in kicked] == [(1, "changed"), (2, "changed")]
    assert to_kick(conns, old, old) == []


def test_a_provider_user_can_be_revoked(tmp_path: Path) -> None:
    """of_principal finds a provider user's connections in its provider's accounts."""
    policy = _provider_policy(tmp_path, "{nats-customer: customer}")
    conns = [_conn("keycloak:alice", 1), _conn("keycloak:alice", 2, account="SYS")]

    assert [c.cid for c in of_principal(conns, policy, "keycloak:alice")] == [1]
