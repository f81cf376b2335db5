"""identity_providers: the model, each reason code, claims, templates, expiry."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cli import main
from service.errors import PolicyError
from service.policy import Allow, Deny, describe, evaluate, parse_policy
from service.policy.subjects import make_rules, name_problem, render
from service.policy.tokens import lookup, parse
from tests import idp
from tests.builders import hash_secret
from tests.factories import decoded_request

if TYPE_CHECKING:
    from service.policy import Decision, Policy
    from service.protocol.claims import AuthRequest

NOW = int(time.time())
RSA = idp.SigningKey.rsa("rsa-1")
EC = idp.SigningKey.ec("ec-1")
ED = idp.SigningKey.ed25519("ed-1")
STRANGER = idp.SigningKey.rsa("rsa-1")  # same kid, other key
SECRET = b"0123456789abcdef0123456789abcdef-hs256"
TOKEN = "opaque-token-7d1c"
TOKEN_HASH = hash_secret(TOKEN)
EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"


def policy_text(directory: Path, extra_users: str = "", **provider: Any) -> str:
    (directory / "jwks.json").write_text(json.dumps(idp.jwks(RSA, EC, ED)))
    (directory / "secret.bin").write_bytes(SECRET)
    spec = {
        "name": "keycloak",
        "issuer": idp.ISSUER,
        "audiences": ["nats", "other"],
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "jwks_file": "jwks.json",
        "user_claim": "preferred_username",
        "roles_claim": "realm_access.roles",
        "role_map": {"nats-customer": "customer", "nats-admin": "admin"},
        "account_claim": "tenant_account",
        "expires": "1h",
    } | provider
    return f"""
version: 1
accounts: {{APP: {{}}, BILLING: {{}}}}
defaults: {{account: APP, expires: 2h}}
roles:
  customer:
    publish: {{allow: ["users.{{{{user}}}}.>", "t.{{{{claim.tenant}}}}.>"]}}
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
  admin:
    publish: {{allow: [">"]}}
  base:
    subscribe: {{allow: ["public.>"]}}
users:
  - name: billing
    token: "{TOKEN_HASH}"
    roles: [base]
{extra_users}identity_providers:
  - {json.dumps({k: v for k, v in spec.items() if v is not None})}
"""


@pytest.fixture(name="policy", scope="module")
def _policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    directory = tmp_path_factory.mktemp("idp")
    return parse_policy(policy_text(directory), base_dir=directory)


def request(**opts: str) -> AuthRequest:
    return decoded_request(opts, client_type="websocket")


def good(**extra: Any) -> dict[str, Any]:
    return (
        idp.claims(
            NOW,
            preferred_username="alice",
            realm_access={"roles": ["nats-customer", "unmapped"]},
            tenant="acme",
        )
        | extra
    )


def decide(policy: Policy, token: str, **opts: str) -> Decision:
    def no_bcrypt(_hash: str, _secret: str) -> bool:
        raise AssertionError("a JWT must never be tried against bcrypt hashes")

    return evaluate(
        policy, request(auth_token=token, **opts), NOW, check_secret=no_bcrypt
    )


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
def test_valid_token_gets_mapped_roles_and_claims(policy: Policy, key: Any) -> None:
    """Roles from role_map, {{user}} from user_claim, {{claim.tenant}}."""
    decision = decide(policy, idp.mint(key, good()))

    assert isinstance(decision, Allow)
    assert decision.user == "keycloak:alice"
    assert decision.identity == "jwt"
    assert decision.via == "jwt:keycloak"
    assert decision.account == "APP"
    assert decision.grant.pub.allow == ("users.keycloak:alice.>", "t.acme.>")
    assert decision.grant.sub.allow == ("users.keycloak:alice.>", "_INBOX.>")


def test_user_jwt_never_outlives_the_token(policy: Policy) -> None:
    """expires_at = min(token exp, now + provider expires)."""
    short = decide(policy, idp.mint(RSA, good(exp=NOW + 90)))
    long = decide(policy, idp.mint(RSA, good(exp=NOW + 86400)))
    fraction = decide(policy, idp.mint(RSA, good(exp=NOW + 90.9)))

    assert isinstance(short, Allow)
    assert isinstance(long, Allow)
    assert isinstance(fraction, Allow)
    assert short.expires_at == NOW + 90
    assert long.expires_at == NOW + 3600
    assert fraction.expires_at == NOW + 90


def test_account_claim_must_name_a_declared_account(policy: Policy) -> None:
    """A declared account is used; anything else is denied."""
    billing = decide(policy, idp.mint(RSA, good(tenant_account="BILLING")))
    other = decide(policy, idp.mint(RSA, good(tenant_account="SYS")))

    assert isinstance(billing, Allow)
    assert billing.account == "BILLING"
    assert other == Deny("token_bad_account", user="keycloak:alice", via="jwt:keycloak")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (idp.mint(RSA, good(exp=NOW - 1)), "token_expired"),
        (idp.mint(RSA, good(exp=NOW)), "token_expired"),
        (idp.mint(RSA, good(nbf=NOW + 300)), "token_not_yet_valid"),
        (idp.mint(RSA, good(iat=NOW + 300)), "token_not_yet_valid"),
        (idp.mint(RSA, good(aud="someone-else")), "token_bad_audience"),
        (idp.mint(RSA, good(aud=["a", "b"])), "token_bad_audience"),
        (idp.mint(RSA, good(), kid="no-such-kid"), "token_unknown_kid"),
        (idp.mint(STRANGER, good()), "token_bad_signature"),
        (idp.unsigned(good(), kid="rsa-1"), "token_bad_algorithm"),
        (idp.hs256(RSA.public_pem(), good(), kid="rsa-1"), "token_bad_algorithm"),
        (idp.mint(RSA, good(), kid="ec-1"), "token_bad_algorithm"),
        (idp.mint(RSA, good(), crit=["exp"]), "token_malformed"),
        (
            idp.mint(RSA, {k: v for k, v in good().items() if k != "exp"}),
            "token_malformed",
        ),
        (idp.mint(RSA, good(exp="tomorrow")), "token_malformed"),
        (idp.mint(RSA, good(preferred_username=["a"])), "token_no_user"),
        (idp.mint(RSA, good(realm_access={"roles": ["x"]})), "token_no_roles"),
        (idp.mint(RSA, good(tenant="a.b")), "unsafe_template_value"),
        (idp.mint(RSA, good(tenant="*")), "unsafe_template_value"),
        (idp.mint(RSA, good(tenant=">")), "unsafe_template_value"),
        (idp.mint(RSA, good(tenant="a b")), "unsafe_template_value"),
        (idp.mint(RSA, good(tenant={"x": 1})), "unsafe_template_value"),
        (idp.mint(RSA, good(preferred_username="a.b")), "unsafe_template_value"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith(("token", "unsafe")) else "",
)
def test_each_bad_token_has_its_reason(policy: Policy, token: str, reason: str) -> None:
    """Every failure is a denial with its own reason code, naming the provider."""
    decision = decide(policy, token)

    assert isinstance(decision, Deny)
    assert decision.reason == reason
    assert decision.via == "jwt:keycloak"


def test_unknown_issuer_names_no_provider(policy: Policy) -> None:
    """A JWT from an issuer no provider has is token_bad_issuer."""
    assert decide(policy, idp.mint(RSA, good(iss="https://evil"))) == Deny(
        "token_bad_issuer"
    )


def test_opaque_tokens_still_go_to_bcrypt_users(policy: Policy) -> None:
    """A token that is not JWT-shaped is an ordinary bearer token."""
    decision = evaluate(policy, request(auth_token=TOKEN), NOW)

    assert isinstance(decision, Allow)
    assert decision.user == "billing"
    assert decision.identity == "token"


def test_hs256_needs_its_own_secret_and_rejects_key_confusion(tmp_path: Path) -> None:
    """With HS256 and RS256 allowed, an HS256 token signed with the RSA public
    key is still refused: HS256 is verified with the secret file only."""
    text = policy_text(
        tmp_path, algorithms=["RS256", "HS256"], hs256_secret_file="secret.bin"
    )
    policy = parse_policy(text, base_dir=tmp_path)

    good_hs = decide(policy, idp.hs256(SECRET, good()))
    confused = decide(policy, idp.hs256(RSA.public_pem(), good(), kid="rsa-1"))

    assert isinstance(good_hs, Allow)
    assert confused == Deny("token_bad_signature", via="jwt:keycloak")


def test_token_as_password_of_the_provider_name(tmp_path: Path) -> None:
    """sent_as: password -> user name = provider name, password = the JWT."""
    text = policy_text(tmp_path, sent_as="password")
    policy = parse_policy(text, base_dir=tmp_path)
    token = idp.mint(EC, good())

    as_password = evaluate(policy, request(user="keycloak", password=token), NOW)
    as_token = decide(policy, token)
    garbage = evaluate(policy, request(user="keycloak", password="x"), NOW)

    assert isinstance(as_password, Allow)
    assert as_password.user == "keycloak:alice"
    assert as_token == Deny("token_bad_issuer")
    assert garbage == Deny("token_malformed", via="jwt:keycloak")


def test_static_roles_and_scope_strings(tmp_path: Path) -> None:
    """`roles` for every token; a space-separated claim (OAuth scope) maps too."""
    text = policy_text(
        tmp_path,
        roles=["base"],
        roles_claim="scope",
        role_map={"nats:admin": "admin"},
        account_claim=None,
    )
    policy = parse_policy(text, base_dir=tmp_path)

    decision = decide(policy, idp.mint(RSA, good(scope="openid nats:admin")))

    assert isinstance(decision, Allow)
    assert decision.grant.pub.allow == (">",)
    assert decision.grant.sub.allow == ("public.>",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithms": ["HS256", "RS256"]}, "HS256 needs hs256_secret_file"),
        ({"algorithms": ["none"]}, "algorithms[0]: input should be"),
        ({"jwks_url": "http://x/jwks"}, "exactly one of jwks_url, jwks_file"),
        ({"jwks_file": None}, "exactly one of jwks_url, jwks_file"),
        ({"jwks_file": None, "jwks_url": "ftp://x/j"}, "http:// or https://"),
        ({"jwks_file": None, "jwks_url": "https://u:p@x/j"}, "not carry credentials"),
        ({"role_map": {}}, "roles_claim and role_map go together"),
        ({"role_map": {"a": "nope"}}, "unknown role 'nope'"),
        ({"account": "NOPE"}, "account 'NOPE' is not declared"),
        ({"name": "billing"}, "duplicate name 'billing'"),
        ({"audiences": []}, "audiences: tuple should have at least 1 item"),
        ({"unknown_kid_wait": "3s"}, "at most 1.5s"),
        ({"leeway": "forever"}, "bad duration"),
        ({"sent_as": ["token", "token"]}, "each once"),
        ({"jwks_file": "absent.json"}, "jwks_file: cannot read"),
        (
            {"algorithms": ["HS256"], "jwks_file": None, "hs256_secret_file": "short"},
            "needs at least 32 bytes",
        ),
    ],
)
def test_provider_problems_are_load_errors(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """Each mistake is reported with its line, never loaded."""
    (tmp_path / "short").write_bytes(b"too-short")
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy_text(tmp_path, **change), base_dir=tmp_path)

    assert re.search(
        r"^<policy>:\d+: identity_providers\[0\]", caught.value.problems[0]
    )
    assert message.lower() in "\n".join(caught.value.problems).lower()


@pytest.mark.parametrize(
    ("user_part", "message"),
    [
        ("roles: [customer]", "only identity_providers can give it"),
        ('publish: {allow: ["a.{{claim.x}}"]}', "templates are only for roles"),
    ],
)
def test_claim_templates_are_for_provider_roles_only(
    tmp_path: Path, user_part: str, message: str
) -> None:
    """A password user has no claims: a claim template there is a load error."""
    bob = f'  - name: bob\n    password: "{TOKEN_HASH}"\n    {user_part}\n'
    text = policy_text(tmp_path, extra_users=bob)

    with pytest.raises(PolicyError) as caught:
        parse_policy(text, base_dir=tmp_path)

    assert message in "\n".join(caught.value.problems)


def test_documented_example_is_valid_when_uncommented(tmp_path: Path) -> None:
    """The commented identity_providers/certificates example in the shipped
    policy loads once its comment marks are removed."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# identity_providers:")
    marks = ("# identity_providers:", "#   ", "# certificates:")
    out = [*lines[:start], *(ln[2:] for ln in lines[start:] if ln.startswith(marks))]
    text = "\n".join(out).replace(
        "jwks_url: https://idp.example/realms/app/protocol/openid-connect/certs",
        "jwks_file: jwks.json",
    )
    (tmp_path / "jwks.json").write_text(json.dumps(idp.jwks(RSA)))

    policy = parse_policy(text, base_dir=tmp_path)

    assert [p.name for p in policy.providers] == ["keycloak"]
    assert policy.certificates is not None


def test_explain_token_prints_provider_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`explain --token JWT` verifies it like the service and names the provider."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(tmp_path))
    token = idp.mint(RSA, idp.claims(**good()))

    ok = main(["explain", str(path), "--token", token])
    allowed = json.loads(capsys.readouterr().out)
    bad = main(["explain", str(path), "--token", idp.mint(STRANGER, good())])
    denied = json.loads(capsys.readouterr().out)

    assert ok == 0
    assert allowed["via"] == "jwt:keycloak"
    assert allowed["expires_at"] <= good()["exp"]
    assert bad == 1
    assert denied["reason"] == "token_bad_signature"
    assert token not in json.dumps(allowed)


def test_describe_keeps_its_shape_for_other_identities(policy: Policy) -> None:
    """`via` is only added when a provider or certificate was involved."""
    view = describe(evaluate(policy, request(auth_token=TOKEN), NOW))

    assert "via" not in view


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)))
def test_lookup_finds_top_level_names(claims: dict[str, Any]) -> None:
    """Every top-level claim is found by its own name, dots or not."""
    for name, value in claims.items():
        assert lookup(claims, name) == value


@given(st.lists(st.from_regex(r"[a-z]{1,5}", fullmatch=True), min_size=1, max_size=4))
def test_lookup_walks_dotted_paths(path: list[str]) -> None:
    """`a.b.c` walks nested objects; a missing step is None."""
    nested: Any = "leaf"
    for part in reversed(path):
        nested = {part: nested}

    assert lookup(nested, ".".join(path)) == "leaf"
    assert lookup(nested, ".".join([*path, "missing"])) is None


@given(st.text(max_size=140))
def test_claim_values_render_only_as_one_safe_token(value: str) -> None:
    """A claim value fills a template only if it is one safe subject token."""
    rules = make_rules(
        pub_allow=["t.{{claim.tenant}}.>"],
        pub_deny=[],
        sub_allow=[],
        sub_deny=[],
        resp=None,
    )

    grant = render(rules, user="u", account="A", claims={"tenant": value})

    safe = 0 < len(value) <= 128 and not re.search(r"[.*>\s\x00-\x1f\x7f]", value)
    assert (grant is not None) == safe
    if grant is not None:
        assert grant.pub.allow == (f"t.{value}.>",)


@given(st.text(max_size=64))
def test_parse_never_raises(text: str) -> None:
    """Any string is either JWT-shaped (parsed) or not (None); no exception."""
    parse(text)


@pytest.mark.parametrize("claimed", ["john-doe", "billing", "keycloak"])
def test_provider_users_never_take_a_local_name(tmp_path: Path, claimed: str) -> None:
    """A token naming a local user (or the provider) gets `<provider>:<name>`."""
    john = (
        f'  - name: john-doe\n    password: "{TOKEN_HASH}"\n'
        '    publish: {allow: ["users.{{user}}.>"]}\n'
        '    subscribe: {allow: ["users.{{user}}.>"]}\n'
    )
    policy = parse_policy(policy_text(tmp_path, john), base_dir=tmp_path)
    local = policy.by_name["john-doe"].grant
    assert local is not None

    decision = decide(policy, idp.mint(RSA, good(preferred_username=claimed)))

    assert isinstance(decision, Allow)
    assert decision.user == f"keycloak:{claimed}"
    assert decision.grant.sub.allow == (f"users.keycloak:{claimed}.>", "_INBOX.>")
    assert not set(decision.grant.pub.allow) & set(local.pub.allow)
    assert not set(decision.grant.sub.allow) & set(local.sub.allow)


def test_no_policy_name_can_hold_the_namespace_separator() -> None:
    """Policy names can't contain `:`, so none can equal a provider's user."""
    assert name_problem("keycloak:alice") is not None
    assert name_problem("keycloak") is None
