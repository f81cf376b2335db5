"""Connection caps without IO: the policy key, the live view, its events."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import pytest

from service.config import Settings
from service.errors import PolicyError
from service.policy import Allow, describe, parse_policy
from service.policy.tokens import from_claims
from service.process.connections import LiveConnections
from service.protocol.nkeys import KeyPair, Prefix
from service.review.liveview import PENDING_FOR, Event, LiveView, keys_of, parse_event
from service.review.sessions import Connection
from service.setup.oneshot import startup_warnings
from tests.builders import hash_secret
from tests.factories import decoded_request

if TYPE_CHECKING:
    from pathlib import Path

HASH = hash_secret("pw", 4)
ALICE = frozenset({("APP", "alice")})
# a CONNECT event as nats-server 2.15.1 sends it for a callout user
CONNECT = {
    "type": "io.nats.server.advisory.v1.client_connect",
    "server": {"name": "n1", "id": "NSERVER"},
    "client": {"id": 10, "acc": "APP", "user": "alice", "client_type": "nats"},
}


def _policy(extra_user: str = "", roles: str = "", accounts: str = "APP: {}") -> str:
    return f"""version: 1
accounts: {{{accounts}}}
defaults: {{account: APP}}
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
  kiosk:
    publish: {{allow: ["kiosk.>"]}}
    max_connections: 3
  desk:
    publish: {{allow: ["desk.>"]}}
    max_connections: 2
{roles}users:
  - name: alice
    password: "{HASH}"
    roles: [customer]
{extra_user}"""


def _conn(cid: int, user: str = "alice", account: str = "APP") -> Connection:
    return Connection("NSERVER", cid, account, user, "nats")


def _event(kind: str, cid: int, user: str = "alice") -> Event:
    return Event("connect" if kind == "connect" else "disconnect", _conn(cid, user))


def test_parse_event_reads_server_cid_account_and_principal() -> None:
    """A CONNECT/DISCONNECT event names the seat and the issued JWT's name."""
    gone = CONNECT | {"type": "io.nats.server.advisory.v1.client_disconnect"}

    assert parse_event(json.dumps(CONNECT).encode()) == Event(
        "connect", Connection("NSERVER", 10, "APP", "alice", "nats")
    )
    parsed = parse_event(json.dumps(gone).encode())
    assert parsed is not None
    assert parsed.kind == "disconnect"
    assert (
        parse_event(b'{"type": "io.nats.server.advisory.v1.account_connections"}')
        is None
    )
    assert parse_event(b"[") is None


def test_take_counts_admitted_connections_before_the_servers_report_them() -> None:
    """Two admitted seats fill a cap of 2 at once; their events do not count twice."""
    view = LiveView()

    first, second = (
        view.take(ALICE, ("NSERVER", 1), 2, 0.0),
        view.take(ALICE, ("NSERVER", 2), 2, 0.0),
    )
    third = view.take(ALICE, ("NSERVER", 3), 2, 0.0)
    view.apply(_event("connect", 1))
    view.apply(_event("connect", 2))
    still_full = view.take(ALICE, ("NSERVER", 4), 2, 0.0)
    view.apply(_event("disconnect", 1))
    freed = view.take(ALICE, ("NSERVER", 5), 2, 0.0)

    assert (first, second, third, still_full, freed) == (True, True, False, False, True)
    assert view.held(ALICE, 0.0) == 2


def test_pending_seats_expire_when_the_server_never_reports_them() -> None:
    """An admitted connection that never shows up stops counting after PENDING_FOR."""
    view = LiveView()
    view.take(ALICE, ("NSERVER", 1), 1, 100.0)

    assert not view.take(ALICE, ("NSERVER", 2), 1, 100.0 + PENDING_FOR - 0.1)
    assert view.take(ALICE, ("NSERVER", 3), 1, 100.0 + PENDING_FOR)


def test_refresh_replays_the_events_that_came_while_it_was_asked() -> None:
    """A close heard during a CONNZ is not undone by it; an open is not lost."""
    view = LiveView()
    view.apply(_event("connect", 9, "stale"))  # gone from the servers' reports

    view.begin_refresh()
    view.apply(_event("disconnect", 1))  # closed after their server answered
    view.apply(_event("disconnect", 2))
    view.apply(_event("connect", 3))  # opened after its server answered
    view.finish_refresh([_conn(1), _conn(2), _conn(7, "bob", "OTHER")])

    assert view.held(ALICE, 0.0) == 1  # seat 3 only
    assert view.held(frozenset({("APP", "stale")}), 0.0) == 0
    assert view.per_account() == {"APP": 1, "OTHER": 1}
    assert view.refreshes == 1


def test_a_failed_refresh_keeps_the_view() -> None:
    """Without a CONNZ answer the view stays what the events made it."""
    view = LiveView()
    view.apply(_event("connect", 1))

    view.begin_refresh()
    view.abandon_refresh()
    view.apply(_event("connect", 2))

    assert view.held(ALICE, 0.0) == 2
    assert view.refreshes == 0


def test_own_cap_wins_else_the_lowest_role_cap() -> None:
    """A user's own max_connections beats its roles'; else the lowest role's counts."""
    text = _policy(
        f'  - name: bob\n    password: "{HASH}"\n    roles: [kiosk, desk]\n'
        f'  - name: carol\n    password: "{HASH}"\n    roles: [desk]\n'
        "    max_connections: 5\n"
        "certificates:\n  - name: door\n    match: {cn: door}\n"
        "    max_connections: 1\n"
        "anonymous: {max_connections: 4}\n"
    )
    policy = parse_policy(text)

    assert policy.by_name["alice"].max_connections == 0
    assert policy.by_name["bob"].max_connections == 2
    assert policy.by_name["carol"].max_connections == 5
    assert policy.anonymous is not None
    assert policy.anonymous.max_connections == 4
    assert policy.certificates is not None
    assert {e.max_connections for _, e in policy.certificates.entries.values()} == {1}


def test_a_provider_caps_each_of_its_users(tmp_path: Path) -> None:
    """A provider's token users get its cap, else their mapped roles' lowest."""
    (tmp_path / "hs.key").write_bytes(b"k" * 40)
    provider = (
        "identity_providers:\n  - name: sso\n    issuer: https://sso.example\n"
        "    audiences: [nats]\n    algorithms: [HS256]\n"
        "    hs256_secret_file: hs.key\n    roles: [kiosk, desk]\n"
    )
    plain = parse_policy(_policy() + provider, base_dir=tmp_path)
    own = parse_policy(
        _policy() + provider + "    max_connections: 7\n", base_dir=tmp_path
    )

    by_roles = from_claims(plain.providers[0], {"sub": "u1"})
    by_own = from_claims(own.providers[0], {"sub": "u1"})

    assert not isinstance(by_roles, tuple)
    assert not isinstance(by_own, tuple)
    assert (by_roles.name, by_roles.max_connections) == ("sso:u1", 2)
    assert by_own.max_connections == 7


@pytest.mark.parametrize("value", ["0", '"2"', "true", "-1"])
def test_max_connections_must_be_a_positive_integer(value: str) -> None:
    """Zero, text, a boolean or a negative number is refused at its line."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(_policy(f"    max_connections: {value}\n"), source="p.yaml")

    assert caught.value.problems[0].startswith("p.yaml:")
    assert "users[0].max_connections" in caught.value.problems[0]


def test_explain_shows_the_cap_only_when_there_is_one() -> None:
    """`explain` names max_connections for a capped principal, nothing otherwise."""
    policy = parse_policy(_policy(roles="", extra_user=""))
    allow = Allow(
        user="alice",
        account="APP",
        grant=policy.by_name["alice"].grant,  # type: ignore[arg-type]
        expires_at=0,
        connection_types=(),
        source_networks=(),
        identity="password",
    )
    capped = dataclasses.replace(allow, max_connections=2)

    assert "max_connections" not in describe(allow)
    assert describe(capped)["max_connections"] == 2


def test_keys_name_the_account_as_the_servers_do() -> None:
    """In operator mode the servers name an account by its public key."""
    key = KeyPair.create(Prefix.ACCOUNT).public_key
    policy = parse_policy(_policy(accounts=f"APP: {{public_key: {key}}}"))
    allow = Allow("alice", "APP", policy.by_name["alice"].grant, 0, (), (), "password")  # type: ignore[arg-type]

    assert keys_of(policy, allow) == frozenset({("APP", "alice"), (key, "alice")})


class _Link:
    """Only what LiveConnections.admit touches of the system link."""

    reconnected = None


def test_admit_refuses_at_the_cap_and_ignores_uncapped() -> None:
    """The hook says too_many_connections at the cap, nothing without a cap."""
    policy = parse_policy(_policy())
    live = LiveConnections(_Link(), lambda: policy)  # type: ignore[arg-type]
    grant = policy.by_name["alice"].grant
    capped = Allow("alice", "APP", grant, 0, (), (), "password", max_connections=1)  # type: ignore[arg-type]
    free = Allow("alice", "APP", grant, 0, (), (), "password")  # type: ignore[arg-type]
    base = decoded_request({"user": "alice"})
    first, second = (
        dataclasses.replace(
            base, client_info=dataclasses.replace(base.client_info, id=cid)
        )
        for cid in (1, 2)
    )

    assert live.admit(capped, first, 0.0) is None
    assert live.admit(capped, second, 0.0) == "too_many_connections"
    assert live.admit(free, second, 0.0) is None


def test_startup_warns_when_caps_cannot_be_enforced() -> None:
    """max_connections without the system login: a warning that no cap is enforced."""
    plain_text = (
        f"version: 1\naccounts: {{APP: {{}}}}\ndefaults: {{account: APP}}\n"
        f'users:\n  - name: alice\n    password: "{HASH}"\n'
    )
    capped = parse_policy(plain_text + "    max_connections: 2\n")
    plain = parse_policy(plain_text)

    def warned(policy: object, **settings: str) -> bool:
        found = startup_warnings(Settings(**settings), policy)  # type: ignore[arg-type]
        return any("no connection cap is enforced" in w for w in found)

    assert warned(capped)
    assert not warned(plain)
    assert not warned(capped, system_user="sys", system_password="pw")
