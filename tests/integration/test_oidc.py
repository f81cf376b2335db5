"""
Bearer JWTs from identity providers, end to end: a JWKS server on loopback,
tokens signed by test keys, the service subprocess and nats-server 2.15.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from service.protocol.nkeys import KeyPair, Prefix
from tests import idp
from tests.builders import hash_secret
from tests.integration.clients import (
    connect,
    connect_fails,
    permission_violation,
    round_trip,
    user_info,
)
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

PASSWORD = "john-doe-pw-Q4"
FAST = 1.0  # a refusal must come well before the server's 2 s auth timeout
ROTATING_ISSUER = "https://rotating.test"
DOWN_ISSUER = "https://down.test"


@dataclass
class Env:
    """Server, service, JWKS servers and the keys behind them."""

    server: NatsServer
    service: ServiceProcess
    jwks: idp.JwksServer
    slow: idp.JwksServer
    main: tuple[idp.SigningKey, ...]
    rotating: idp.SigningKey
    tokens: list[str] = field(default_factory=list)

    def mint(self, key: idp.SigningKey, payload: dict[str, Any], **header: Any) -> str:
        token = idp.mint(key, payload, **header)
        self.tokens.append(token)
        return token


def good(**extra: Any) -> dict[str, Any]:
    return (
        idp.claims(
            preferred_username="alice",
            realm_access={"roles": ["nats-customer"]},
            tenant="acme",
        )
        | extra
    )


def policy_yaml(env_urls: dict[str, str]) -> str:
    password = hash_secret(PASSWORD)
    common = {
        "audiences": [idp.AUDIENCE],
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "user_claim": "preferred_username",
        "roles_claim": "realm_access.roles",
        "role_map": {"nats-customer": "customer"},
        "unknown_kid_wait": "300ms",
    }
    providers = [
        common
        | {"name": "keycloak", "issuer": idp.ISSUER, "jwks_url": env_urls["main"]},
        common
        | {
            "name": "rotating",
            "issuer": ROTATING_ISSUER,
            "jwks_url": env_urls["rotating"],
        },
        common | {"name": "down", "issuer": DOWN_ISSUER, "jwks_url": env_urls["down"]},
    ]
    listed = "\n".join(f"  - {json.dumps(p)}" for p in providers)
    return f"""version: 1
accounts: {{APP: {{}}}}
defaults: {{account: APP, expires: 1h}}
roles:
  customer:
    publish:
      allow: ["users.{{{{user}}}}.>", "t.{{{{claim.tenant}}}}.>", "$SYS.REQ.USER.INFO"]
    subscribe: {{allow: ["users.{{{{user}}}}.>", "_INBOX.>"]}}
  plain:
    publish: {{allow: ["users.{{{{user}}}}.>"]}}
users:
  - name: john-doe
    password: "{password}"
    roles: [plain]
identity_providers:
{listed}
"""


@pytest.fixture(name="env", scope="module")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("oidc")
    main = (
        idp.SigningKey.rsa("k-rsa"),
        idp.SigningKey.ec("k-ec"),
        idp.SigningKey.ed25519("k-ed"),
    )
    rotating = idp.SigningKey.rsa("r-1")
    jwks, slow = idp.JwksServer(), idp.JwksServer()
    jwks.sets["main"] = idp.jwks(*main)
    jwks.sets["rotating"] = idp.jwks(rotating)
    # A JWKS server that answers after the service's fetch timeout: "down" in
    # the worst way (a hang, not a quick connection refused).
    slow.delay = 5.0
    slow.sets["down"] = idp.jwks(*main)
    issuer, login = KeyPair.create(Prefix.ACCOUNT), KeyPair.create(Prefix.USER)
    server = NatsServer(
        config_mode_body(issuer=issuer.public_key, auth_nkey=login.public_key),
        directory / "nats",
    ).start()
    (directory / "issuer.nk").write_text(issuer.export_seed())
    (directory / "login.nk").write_text(login.export_seed())
    policy = directory / "policy.yaml"
    policy.write_text(
        policy_yaml(
            {
                "main": jwks.url("main"),
                "rotating": jwks.url("rotating"),
                "down": slow.url("down"),
            }
        )
    )
    service = ServiceProcess(
        {
            "CALLOUT_NATS_URL": server.client_url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(directory / "login.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(directory / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(policy),
        },
        directory,
    ).start()
    service.wait_for(
        lambda rs: sum(r.get("event") == "callout.jwks_loaded" for r in rs) >= 2,
        timeout=10,
    )
    env = Env(server, service, jwks, slow, main, rotating)
    yield env
    assert service.stop() == 0
    server.stop()
    jwks.stop()
    slow.stop()
    log = "\n".join(service.lines)
    assert PASSWORD not in log
    for token in env.tokens:
        assert token not in log
        signature = token.split(".")[2]
        assert not signature or signature not in log  # not even the signature


def decision_after(env: Env, before: int) -> dict[str, Any]:
    env.service.wait_for(lambda _: len(env.service.events()) > before)
    return env.service.events()[before]


@pytest.mark.parametrize(
    ("transport", "which"), [("tcp", 0), ("tcp", 1), ("websocket", 2)]
)
async def test_valid_token_gets_roles_and_templated_claims(
    env: Env, transport: str, which: int
) -> None:
    """RS256/ES256 over TCP, EdDSA over WebSocket with the nats.ws-style `token`."""
    url = env.server.client_url if transport == "tcp" else env.server.ws_url
    token = env.mint(env.main[which], good())
    before = len(env.service.events())

    nc = await connect(url, token=token)
    try:
        info = await user_info(nc)
        echoed = await round_trip(nc, "users.keycloak:alice.inbox")
    finally:
        await nc.close()
    line = decision_after(env, before)

    assert echoed == b"ping"
    assert info["account"] == "APP"
    assert sorted(info["permissions"]["publish"]["allow"]) == sorted(
        ["users.keycloak:alice.>", "t.acme.>", "$SYS.REQ.USER.INFO"]
    )
    assert line["decision"] == "allow"
    assert line["user"] == "keycloak:alice"
    assert line["via"] == "jwt:keycloak"


async def test_issued_jwt_never_outlives_the_token(env: Env) -> None:
    """Token exp in 30 s, policy 1 h: the server counts down from the token's."""
    exp = int(time.time()) + 30
    before = len(env.service.events())
    nc = await connect(
        env.server.client_url, token=env.mint(env.main[0], good(exp=exp))
    )
    try:
        info = await user_info(nc)
        asked_at = time.time()
    finally:
        await nc.close()
    # USER.INFO `expires` is the time left, as Go duration nanoseconds.
    left = info["expires"] / 1e9
    decision_after(env, before)  # each test waits for its own lines

    assert left <= exp - asked_at + 1
    assert left > 20


def _bad_tokens(env: Env) -> dict[str, tuple[str, str]]:
    rsa = env.main[0]
    now = int(time.time())
    return {
        "expired": (
            env.mint(rsa, good(exp=now - 5, iat=now - 60, nbf=now - 60)),
            "token_expired",
        ),
        "wrong-issuer": (
            env.mint(rsa, good(iss="https://evil.test")),
            "token_bad_issuer",
        ),
        "wrong-audience": (env.mint(rsa, good(aud="not-nats")), "token_bad_audience"),
        "unknown-kid": (
            env.mint(idp.SigningKey.ec("k-new"), good()),
            "token_unknown_kid",
        ),
        "alg-none": (idp.unsigned(good(), kid="k-rsa"), "token_bad_algorithm"),
        "hs-rs-confusion": (
            idp.hs256(rsa.public_pem(), good(), kid="k-rsa"),
            "token_bad_algorithm",
        ),
        "claim-dot": (env.mint(rsa, good(tenant="a.b")), "unsafe_template_value"),
        "claim-star": (env.mint(rsa, good(tenant="*")), "unsafe_template_value"),
        "claim-gt": (env.mint(rsa, good(tenant=">")), "unsafe_template_value"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong-issuer",
        "wrong-audience",
        "unknown-kid",
        "alg-none",
        "hs-rs-confusion",
        "claim-dot",
        "claim-star",
        "claim-gt",
    ],
)
async def test_bad_tokens_are_denied_with_their_reason(env: Env, case: str) -> None:
    """Each bad token: Authorization Violation, fast, its reason in the log."""
    token, reason = _bad_tokens(env)[case]
    env.tokens.append(token)
    before = len(env.service.events())

    error, elapsed = await connect_fails(env.server.client_url, token=token)
    line = decision_after(env, before)

    assert "authorization violation" in error
    assert elapsed < FAST
    assert line["decision"] == "deny"
    assert line["reason"] == reason
    env.server.wait_for_log(f"Auth callout service returned an error: {reason}")


async def test_key_rotation_is_picked_up_without_restart(env: Env) -> None:
    """The IdP swaps r-1 for r-2: new tokens work at once, old ones stop."""
    before = len(env.service.events())
    old = env.mint(env.rotating, good(iss=ROTATING_ISSUER))
    nc = await connect(env.server.client_url, token=old)
    await nc.close()
    new_key = idp.SigningKey.ec("r-2")
    env.jwks.sets["rotating"] = idp.jwks(new_key)
    hits = env.jwks.hits["rotating"]

    new = env.mint(new_key, good(iss=ROTATING_ISSUER))
    nc = await connect(env.server.client_url, token=new)
    await nc.close()
    error, _ = await connect_fails(env.server.client_url, token=old)
    # a decision line is written just after the reply: wait for all three
    env.service.wait_for(lambda _: len(env.service.events()) >= before + 3)
    lines = env.service.events()[before:]

    assert env.jwks.hits["rotating"] == hits + 1
    assert [ln["decision"] for ln in lines] == ["allow", "allow", "deny"]
    assert lines[2]["reason"] == "token_unknown_kid"
    assert "authorization violation" in error


async def test_a_hung_jwks_server_does_not_stall_password_users(env: Env) -> None:
    """While tokens of the provider whose JWKS hangs are refused, a password
    user still connects at once."""
    down = [env.mint(env.main[0], good(iss=DOWN_ISSUER)) for _ in range(6)]
    before = len(env.service.events())

    async def password_connect() -> float:
        await asyncio.sleep(0.05)  # while the token requests are in flight
        started = time.perf_counter()
        nc = await connect(env.server.client_url, user="john-doe", password=PASSWORD)
        elapsed = time.perf_counter() - started
        await nc.close()
        return elapsed

    refusals, elapsed = await asyncio.gather(
        asyncio.gather(*(connect_fails(env.server.client_url, token=t) for t in down)),
        password_connect(),
    )
    env.service.wait_for(lambda _: len(env.service.events()) >= before + 7)
    lines = env.service.events()[before:]

    assert elapsed < 0.5
    assert all(seconds < FAST for _, seconds in refusals)
    assert {ln["reason"] for ln in lines if ln["decision"] == "deny"} == {
        "jwks_unavailable"
    }


async def test_a_token_naming_a_local_user_gets_none_of_its_subjects(env: Env) -> None:
    """`preferred_username: john-doe` is `keycloak:john-doe`, not the local john-doe."""
    token = env.mint(env.main[0], good(preferred_username="john-doe"))
    before = len(env.service.events())

    nc = await connect(env.server.client_url, token=token)
    try:
        info = await user_info(nc)
    finally:
        await nc.close()
    line = decision_after(env, before)
    violation = await permission_violation(
        env.server.client_url, "users.john-doe.inbox", token=token
    )

    assert line["user"] == "keycloak:john-doe"
    assert "users.john-doe.>" not in info["permissions"]["publish"]["allow"]
    assert "users.keycloak:john-doe.>" in info["permissions"]["publish"]["allow"]
    assert "users.john-doe.inbox" in violation
