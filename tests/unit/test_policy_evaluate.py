# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""evaluate(): every identification path, every reason code, the grant it builds."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.policy import (
    Allow,
    Decision,
    Deny,
    Grant,
    Policy,
    bcrypt_check,
    describe,
    evaluate,
    parse_policy,
)
from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ConnectOpts,
    Permission,
    ResponsePermission,
    ServerId,
    ServerInfo,
    UserNKey,
)
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret

NOW = 1_800_000_000
CONN_NKEY = KeyPair.create(Prefix.USER).public_key  # the server's per-connection key
SENSOR = KeyPair.create(Prefix.USER)
STRANGER = KeyPair.create(Prefix.USER)
NONCE = "kZ3l0bF9ub25jZV9mcm9tX3NlcnZlcg"


def hashed(secret: str) -> str:
    """A fast (cost 4) bcrypt hash for tests."""
    return hash_secret(secret)


POLICY_TEXT = f"""\
version: 1
accounts: {{APP: {{}}, BILLING: {{}}}}
defaults: {{account: APP, expires: 1h}}
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
    responses: {{max: 1, expires: 1m}}
  reader:
    subscribe: {{allow: ["news.>", "users.{{{{user}}}}.>"]}}
  tagged:
    publish: {{allow: ["acct.{{{{account}}}}.>"]}}
  guest:
    subscribe: {{allow: ["public.>", "guests.{{{{user}}}}.>"]}}
users:
  - name: john-doe
    password: "{hashed("john-pw")}"
    roles: [customer]
  - name: billing
    token: "{hashed("billing-token")}"
    roles: [tagged]
    account: BILLING
    expires: 10m
  - name: ops
    token: "{hashed("ops-token")}"
    roles: [customer, reader]
    publish: {{allow: ["ops.>", "users.ops.secret"], deny: ["users.ops.secret"]}}
    responses: {{max: 5}}
  - name: sensor-7
    nkey: {SENSOR.public_key}
    roles: [customer]
    connection_types: [STANDARD, WEBSOCKET]
    source_networks: ["10.0.0.0/8", "2001:db8::/32"]
  - name: listener
    password: "{hashed("listener-pw")}"
    subscribe: {{allow: [news.>]}}
"""
ANONYMOUS = "anonymous:\n  roles: [guest]\n  expires: 5m\n"
POLICY = parse_policy(POLICY_TEXT + ANONYMOUS)
CLOSED = parse_policy(POLICY_TEXT)


def request(
    *,
    host: str = "127.0.0.1",
    type_: str = "nats",
    kind: str = "Client",
    nonce: str = "",
    user_nkey: str = CONN_NKEY,
    **opts: str,
) -> AuthRequest:
    """An AuthRequest as codec.py would build it, with these CONNECT options."""
    return AuthRequest(
        server=ServerInfo(id=ServerId("NSERVER")),
        user_nkey=UserNKey(user_nkey),
        client_info=ClientInfo(host=host, kind=kind, type=type_, nonce=nonce),
        connect_opts=ConnectOpts(**opts),  # type: ignore[arg-type]
    )


def signed(key: KeyPair = SENSOR, nonce: str = NONCE, *, padded: bool = False) -> str:
    """The CONNECT `sig` a client makes: the nonce signed, base64url without padding."""
    sig = key.sign(nonce.encode())
    if padded:
        return base64.b64encode(sig).decode()
    return base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def nkey_request(**kw: str) -> AuthRequest:
    """sensor-7 connecting from its network over TCP, with the given overrides."""
    args = {
        "nkey": SENSOR.public_key,
        "sig": signed(),
        "nonce": NONCE,
        "host": "10.1.2.3",
    }
    return request(**(args | kw))


def allowed(decision: Decision) -> Allow:
    """The decision, which must be an Allow."""
    assert isinstance(decision, Allow), decision
    return decision


def test_password_user_is_allowed_with_rendered_grant() -> None:
    """user/password with the right password gets the role's templated grant."""
    decision = allowed(
        evaluate(POLICY, request(user="john-doe", password="john-pw"), NOW)
    )

    assert (
        Allow(
            user="john-doe",
            account="APP",
            grant=Grant(
                pub=Permission(allow=("users.john-doe.>",)),
                sub=Permission(allow=("users.john-doe.>", "_INBOX.>")),
                resp=ResponsePermission(max=1, ttl_seconds=60.0),
            ),
            expires_at=NOW + 3600,
            connection_types=(),
            source_networks=(),
            identity="password",
        )
        == decision
    )


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({"user": "nobody", "password": "x"}, Deny("unknown_user")),
        (
            {"user": "john-doe", "password": "wrong"},
            Deny("bad_password", user="john-doe"),
        ),
        ({"user": "john-doe", "password": ""}, Deny("bad_password", user="john-doe")),
        (
            {"user": "billing", "password": "billing-token"},
            Deny("bad_password", user="billing"),
        ),
        ({"user": "sensor-7", "password": "x"}, Deny("bad_password", user="sensor-7")),
        ({"auth_token": "not-a-token"}, Deny("unknown_token")),
        ({"nkey": STRANGER.public_key, "sig": "x"}, Deny("unknown_nkey")),
    ],
)
def test_credential_denials(opts: dict[str, str], expected: Deny) -> None:
    """Each wrong credential has its own reason; names are kept only if they exist."""
    assert expected == evaluate(POLICY, request(**opts), NOW)


def test_unknown_user_still_spends_a_bcrypt_check() -> None:
    """A miss costs a hash check too, so timing does not reveal which names exist."""
    calls: list[tuple[str, str]] = []

    def check(hash_: str, secret: str) -> bool:
        calls.append((hash_, secret))
        return True

    assert Deny("unknown_user") == evaluate(
        POLICY, request(user="nobody", password="guess"), NOW, check_secret=check
    )
    assert [(POLICY.timing_hash, "guess")] == calls


def test_timing_decoy_matches_no_secret() -> None:
    """The decoy hash is no user's hash: a user's right password never matches it."""
    john = POLICY.by_name["john-doe"].credential

    assert POLICY.timing_hash != john
    assert POLICY.timing_hash[:29] == john[:29]
    assert not bcrypt_check(POLICY.timing_hash, "john-pw")
    assert bcrypt_check(john, "john-pw")


def test_token_users_are_found_by_their_hash() -> None:
    """auth_token is checked against each token user until one matches."""
    billing = allowed(evaluate(POLICY, request(auth_token="billing-token"), NOW))
    ops = allowed(evaluate(POLICY, request(auth_token="ops-token"), NOW))

    assert ("billing", "token", "BILLING") == (
        billing.user,
        billing.identity,
        billing.account,
    )
    assert ("ops", "token", "APP") == (ops.user, ops.identity, ops.account)


def test_account_template_and_user_expiry() -> None:
    """{{account}} is the target account; a user's expires beats the default."""
    billing = allowed(evaluate(POLICY, request(auth_token="billing-token"), NOW))

    assert ("acct.BILLING.>",) == billing.grant.pub.allow
    assert NOW + 600 == billing.expires_at


def test_roles_merge_dedupe_and_deny_wins() -> None:
    """Roles, then own lists, in order, deduplicated; denied entries leave allow."""
    ops = allowed(evaluate(POLICY, request(auth_token="ops-token"), NOW))

    assert (
        Permission(allow=("users.ops.>", "ops.>"), deny=("users.ops.secret",))
        == ops.grant.pub
    )
    assert ("users.ops.>", "_INBOX.>", "news.>") == ops.grant.sub.allow
    assert ResponsePermission(max=5, ttl_seconds=0.0) == ops.grant.resp


def test_no_publish_allow_and_no_responses_denies_all_publishing() -> None:
    """Without a pub allow list the JWT denies ">" rather than inherit defaults."""
    listener = allowed(
        evaluate(POLICY, request(user="listener", password="listener-pw"), NOW)
    )

    assert Permission(deny=(">",)) == listener.grant.pub
    assert Permission(allow=("news.>",)) == listener.grant.sub
    assert listener.grant.resp is None


def test_responses_without_publish_allow_keep_publish_empty() -> None:
    """With resp set, an empty pub allow list is left empty: only replies pass."""
    text = POLICY_TEXT.replace("subscribe: {allow: [news.>]}", "responses: {}")

    listener = allowed(
        evaluate(
            parse_policy(text), request(user="listener", password="listener-pw"), NOW
        )
    )

    assert Permission() == listener.grant.pub
    assert Permission(deny=(">",)) == listener.grant.sub
    assert ResponsePermission(max=1, ttl_seconds=0.0) == listener.grant.resp


def test_no_expiry_anywhere_means_zero() -> None:
    """Without defaults.expires or a user's, the JWT does not expire."""
    policy = parse_policy(
        POLICY_TEXT.replace("account: APP, expires: 1h", "account: APP")
    )

    assert (
        0
        == allowed(
            evaluate(policy, request(user="john-doe", password="john-pw"), NOW)
        ).expires_at
    )


def test_nkey_user_with_valid_signature() -> None:
    """A signed nonce from a listed network over TCP identifies sensor-7."""
    sensor = allowed(evaluate(POLICY, nkey_request(), NOW))

    assert ("sensor-7", "nkey") == (sensor.user, sensor.identity)
    assert ("STANDARD", "WEBSOCKET") == sensor.connection_types
    assert ("10.0.0.0/8", "2001:db8::/32") == sensor.source_networks


def test_nkey_signature_may_be_padded_standard_base64() -> None:
    """nats-server also accepts std base64 with padding, so do we."""
    assert isinstance(
        evaluate(POLICY, nkey_request(sig=signed(padded=True)), NOW), Allow
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sig": ""}, "missing_nkey_signature"),
        ({"nonce": ""}, "missing_nkey_signature"),
        ({"sig": signed(STRANGER)}, "bad_nkey_signature"),
        ({"sig": signed(nonce="another-nonce")}, "bad_nkey_signature"),
        ({"sig": "!!not base64!!"}, "bad_nkey_signature"),
        ({"sig": "abcde"}, "bad_nkey_signature"),
        ({"sig": "Zm9v\u00e9"}, "bad_nkey_signature"),
        ({"nonce": "\ud800"}, "bad_nkey_signature"),
    ],
)
def test_nkey_signature_denials(overrides: dict[str, str], reason: str) -> None:
    """A missing signature is never a pass; a wrong or garbled one is refused."""
    assert Deny(reason, user="sensor-7") == evaluate(
        POLICY, nkey_request(**overrides), NOW
    )


@pytest.mark.parametrize("host", ["10.200.0.1", "::ffff:10.0.0.9", "2001:db8::42"])
def test_source_networks_allow(host: str) -> None:
    """A client address inside one of the user's CIDRs passes."""
    assert isinstance(evaluate(POLICY, nkey_request(host=host), NOW), Allow)


@pytest.mark.parametrize(
    "host", ["192.168.1.1", "2001:db9::1", "", "not-an-ip", "10.0.0.0/8"]
)
def test_source_networks_deny(host: str) -> None:
    """Any other, missing or unparsable address is refused."""
    assert Deny("source_not_allowed", user="sensor-7") == evaluate(
        POLICY, nkey_request(host=host), NOW
    )


@pytest.mark.parametrize(
    ("type_", "kind", "outcome"),
    [
        ("nats", "Client", Allow),
        ("websocket", "Client", Allow),
        ("mqtt", "Client", Deny),
        ("", "Leafnode", Deny),
        ("", "Client", Deny),
    ],
)
def test_connection_types(type_: str, kind: str, outcome: type[Decision]) -> None:
    """client_info type/kind map to STANDARD, WEBSOCKET, MQTT or LEAFNODE."""
    decision = evaluate(POLICY, nkey_request(type_=type_, kind=kind), NOW)

    assert outcome is type(decision)
    if isinstance(decision, Deny):
        assert Deny("connection_type_not_allowed", user="sensor-7") == decision


def test_leafnode_can_be_allowed() -> None:
    """A Leafnode connection counts as LEAFNODE."""
    text = POLICY_TEXT.replace("[STANDARD, WEBSOCKET]", "[LEAFNODE]")

    assert isinstance(
        evaluate(parse_policy(text), nkey_request(kind="Leafnode", type_=""), NOW),
        Allow,
    )


def test_anonymous_when_configured() -> None:
    """No credentials at all: the anonymous grant, {{user}} = connection nkey."""
    guest = allowed(evaluate(POLICY, request(), NOW))

    assert ("anonymous", "anonymous", "APP") == (
        guest.user,
        guest.identity,
        guest.account,
    )
    assert Permission(deny=(">",)) == guest.grant.pub
    assert ("public.>", f"guests.{CONN_NKEY}.>") == guest.grant.sub.allow
    assert NOW + 300 == guest.expires_at


def test_no_credentials_without_anonymous() -> None:
    """Without an anonymous section, a client with no credentials is refused."""
    assert Deny("no_credentials") == evaluate(CLOSED, request(), NOW)


def test_unsafe_template_value_is_refused() -> None:
    """A value that would widen a subject ("a.>" etc.) refuses the connection."""
    assert Deny("unsafe_template_value", user="anonymous") == evaluate(
        POLICY, request(user_nkey="U.>"), NOW
    )


def test_bcrypt_check() -> None:
    """True only for the right secret; errors are False, never exceptions."""
    hash_ = hashed("right")

    assert bcrypt_check(hash_, "right")
    assert not bcrypt_check(hash_, "wrong")
    assert not bcrypt_check("not-a-hash", "right")
    assert not bcrypt_check(hash_, "x" * 100)
    assert not bcrypt_check(hash_, "\ud800")


def test_describe_allow() -> None:
    """describe() gives the JSON view explain prints, equal to what is issued."""
    view = describe(evaluate(POLICY, request(user="john-doe", password="john-pw"), NOW))

    assert {
        "decision": "allow",
        "user": "john-doe",
        "account": "APP",
        "reason": None,
        "identity": "password",
        "expires_at": NOW + 3600,
        "permissions": {
            "pub": {"allow": ["users.john-doe.>"], "deny": []},
            "sub": {"allow": ["users.john-doe.>", "_INBOX.>"], "deny": []},
            "resp": {"max": 1, "ttl_seconds": 60.0},
        },
        "connection_types": [],
        "source_networks": [],
    } == view
    assert view == json.loads(json.dumps(view))


def test_describe_deny() -> None:
    """A denial shows its reason and no permissions."""
    view = describe(Deny("bad_password", user="john-doe"))

    assert {
        "decision": "deny",
        "user": "john-doe",
        "account": None,
        "reason": "bad_password",
        "identity": None,
        "expires_at": None,
        "permissions": None,
        "connection_types": None,
        "source_networks": None,
    } == view


# The example policy, with its cost-10 hashes swapped for cost-4 hashes of the
# same demo secrets so that real bcrypt stays fast under hypothesis.
EXAMPLE_TEXT = (
    Path(__file__).parents[2] / "config" / "policy.example.yaml"
).read_text()
EXAMPLE_SECRETS = {"john-doe": "john-doe-password", "billing": "billing-token"}
EXAMPLE = parse_policy(EXAMPLE_TEXT)
FAST_EXAMPLE: Policy = parse_policy(
    EXAMPLE_TEXT.replace(
        EXAMPLE.by_name["john-doe"].credential, hashed("john-doe-password")
    ).replace(EXAMPLE.by_name["billing"].credential, hashed("billing-token"))
)
anything = st.text(st.characters(exclude_categories=()), max_size=80)
empty = st.just("")  # listed several times: most clients omit most fields
names = st.one_of(empty, empty, st.sampled_from(sorted(EXAMPLE_SECRETS)), anything)
secrets = st.one_of(empty, st.sampled_from(sorted(EXAMPLE_SECRETS.values())), anything)
nkeys = st.one_of(
    empty, empty, empty, st.just(EXAMPLE.by_name["sensor-7"].credential), anything
)
hosts = st.sampled_from(["", "127.0.0.1", "10.1.2.3", "::1"]) | anything


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    opts=st.builds(
        ConnectOpts,
        jwt=anything,
        nkey=nkeys,
        sig=anything,
        auth_token=secrets,
        user=names,
        password=secrets,
        name=anything,
    ),
    client=st.builds(
        ClientInfo,
        host=hosts,
        kind=st.sampled_from(["Client", "Leafnode"]) | anything,
        type=st.sampled_from(["nats", "websocket", "mqtt"]) | anything,
        nonce=anything,
    ),
    user_nkey=anything,
)
def test_arbitrary_requests_never_raise_or_allow_wrongly(
    opts: ConnectOpts, client: ClientInfo, user_nkey: str
) -> None:
    """Against the example policy, garbage gives a decision; Allow needs the secret."""
    req = AuthRequest(
        server=ServerInfo(id=ServerId("NSERVER")),
        user_nkey=UserNKey(user_nkey),
        client_info=client,
        connect_opts=opts,
    )

    decision = evaluate(FAST_EXAMPLE, req, NOW)

    assert isinstance(decision, Allow | Deny)
    describe(decision)
    if isinstance(decision, Allow):
        match decision.identity:
            case "password":
                assert not opts.nkey
                assert EXAMPLE_SECRETS.get(opts.user) == opts.password
                assert decision.user == opts.user
            case "token":
                assert not opts.nkey
                assert not opts.user
                assert EXAMPLE_SECRETS[decision.user] == opts.auth_token
            case "anonymous":
                assert not opts.nkey
                assert not opts.user
                assert not opts.auth_token
            case _:
                pytest.fail(f"allowed without the seed: {decision}")


def test_nkey_verifier_can_be_injected() -> None:
    """Dry runs (explain) have no seed; they replace the signature check."""
    calls: list[tuple[str, bytes, bytes]] = []

    def verify(key: str, nonce: bytes, sig: bytes) -> bool:
        calls.append((key, nonce, sig))
        return True

    decision = evaluate(
        POLICY, nkey_request(sig="c2ln", nonce="n"), NOW, verify_nkey=verify
    )

    assert "sensor-7" == allowed(decision).user
    assert [(SENSOR.public_key, b"n", b"sig")] == calls
