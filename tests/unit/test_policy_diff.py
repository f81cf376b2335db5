"""`nats-auth-callout diff`: what each principal gains and loses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli import main
from service.policy import load_policy
from service.review.diff import diff_policies
from tests import idp
from tests.builders import hash_secret

if TYPE_CHECKING:
    import pytest

EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")


def _version(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    text = TEXT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _diff(capsys: pytest.CaptureFixture[str], old: Path, new: Path) -> tuple[int, str]:
    code = main(["diff", str(old), str(new)])
    return code, capsys.readouterr().out


def test_identical_policies_have_no_change(capsys: pytest.CaptureFixture[str]) -> None:
    """A policy compared with itself: nothing changed, exit 0."""
    code, out = _diff(capsys, EXAMPLE, EXAMPLE)

    assert code == 0
    assert out == "no principal changed\n"


def test_a_new_version_lists_gains_and_losses_per_principal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Gains (+) and losses (-) per principal; any loss makes the exit code 1."""
    new = _version(
        tmp_path,
        "v2.yaml",
        (
            "    roles: [customer]\n\n  - name: billing",
            "    roles: [customer, guest]\n\n  - name: billing",
        ),
        ("    account: BILLING                     # must", "    account: APP  # must"),
        (
            (
                '    publish: {deny: ["users.sensor-7.admin.>"]}'
                "     # merged with the roles\n"
            ),
            "",
        ),
        ("anonymous:\n  roles: [guest]\n  expires: 5m\n", ""),
    )

    code, out = _diff(capsys, EXAMPLE, new)

    assert code == 1
    lines = out.splitlines()
    assert lines[lines.index("user:john-doe") + 1] == "  + subscribe allow public.>"
    assert "  - account APP" in lines[lines.index("user:billing") :]
    assert "  - no account BILLING" in lines[lines.index("user:billing") :]
    sensor = lines[lines.index("user:sensor-7") + 1]
    assert sensor == "  + no publish deny users.sensor-7.admin.>"
    assert lines[lines.index("anonymous") + 1] == "  - principal removed"
    assert lines[-1] == "4 principals changed, 2 with losses"


def test_only_gains_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A new user and a wider role are gains only: exit 0 for a review gate."""
    added = (
        "users:\n",
        (
            f'users:\n  - name: alice\n    password: "{hash_secret("a")}"\n'
            "    roles: [guest]\n"
        ),
    )
    wider = (
        'subscribe: {allow: ["public.>"]}',
        'subscribe: {allow: ["public.>", "news.>"]}',
    )
    new = _version(tmp_path, "v2.yaml", added, wider)

    code, out = _diff(capsys, EXAMPLE, new)

    lines = out.splitlines()
    alice = lines[lines.index("user:alice") + 1 :]
    assert alice[:2] == ["  + principal added", "  + account APP"]
    assert "  + credential password" in alice
    assert lines[lines.index("anonymous") + 1] == "  + subscribe allow news.>"
    assert lines[-1] == "2 principals changed, 0 with losses"
    assert code == 0


def test_a_changed_password_is_a_loss_and_never_shows_a_hash(tmp_path: Path) -> None:
    """A new credential is reported as changed, without either hash."""
    old = load_policy(EXAMPLE)
    marker = "$2b$10$gYpnEAMO0QUvV08Kdv4s..jRbHSb5ID5HFOdBjzmD33bgHGDMRb76"
    new_hash = hash_secret("another")
    new = load_policy(_version(tmp_path, "v2.yaml", (marker, new_hash)))

    changes = diff_policies(old, new)

    assert [(c.principal, c.gained, c.lost) for c in changes] == [
        ("user:john-doe", (), ("credential changed",))
    ]
    text = repr(changes)
    assert marker not in text
    assert new_hash not in text


def test_an_unloadable_policy_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """diff exits 2 and prints the problems when a side does not load."""
    broken = _version(tmp_path, "v2.yaml", ("version: 1", "version: 7"))

    code = main(["diff", str(EXAMPLE), str(broken)])

    assert code == 2
    assert "v2.yaml" in capsys.readouterr().err


PROVIDER_POLICY = """\
version: 1
accounts: {APP: {}, BILLING: {}}
defaults: {account: APP, expires: 1h}
roles:
  customer:
    publish: {allow: ["users.{{user}}.>"]}
    responses: {max: 1, expires: 1m}
  admin:
    publish: {allow: [">"]}
anonymous: {roles: [customer], expires: 5m}
identity_providers:
  - name: keycloak
    issuer: https://idp.example/realms/app
    audiences: [nats]
    algorithms: [ES256]
    jwks_file: jwks.json
    roles_claim: roles
    role_map: {nats-customer: customer}
    account_claim: tenant
certificates:
  - name: device-7
    match: {cn: device-7}
    roles: [customer]
    connection_types: [STANDARD]
"""


def _provider_policies(tmp_path: Path, new_text: str) -> tuple[Path, Path]:
    jwks = idp.jwks(idp.SigningKey.ec("k1"))
    (tmp_path / "jwks.json").write_text(json.dumps(jwks), encoding="utf-8")
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(PROVIDER_POLICY, encoding="utf-8")
    new.write_text(new_text, encoding="utf-8")
    return old, new


def test_providers_certificates_and_anonymous_are_principals_too(
    tmp_path: Path,
) -> None:
    """A role-map gain, a certificate's new type and anonymous' reply limits show."""
    changed = (
        PROVIDER_POLICY.replace(
            "role_map: {nats-customer: customer}",
            "role_map: {nats-customer: customer, nats-admin: admin}",
        )
        .replace("connection_types: [STANDARD]", "connection_types: [STANDARD, MQTT]")
        .replace("responses: {max: 1, expires: 1m}", "responses: {max: 2, expires: 1m}")
    )
    old, new = _provider_policies(tmp_path, changed)

    changes = {
        c.principal: c for c in diff_policies(load_policy(old), load_policy(new))
    }

    keycloak = changes["provider:keycloak"]
    assert "role via claim nats-admin -> admin" in keycloak.gained
    assert "publish allow > (role admin)" in keycloak.gained
    assert changes["certificate:device-7"].gained == ("connection type MQTT",)
    anonymous = changes["anonymous"]
    assert "no responses max=1 ttl=60s" in anonymous.lost
    assert "responses max=2 ttl=60s" in anonymous.lost  # a different limit
    assert "account via claim BILLING" not in keycloak.gained  # unchanged


def test_a_narrowed_network_is_a_loss(tmp_path: Path) -> None:
    """Going from any source network to a list loses `any`."""
    changed = PROVIDER_POLICY.replace(
        "    connection_types: [STANDARD]\n",
        "    connection_types: [STANDARD]\n    source_networks: [10.0.0.0/8]\n",
    )
    old, new = _provider_policies(tmp_path, changed)

    (change,) = diff_policies(load_policy(old), load_policy(new))

    assert change.principal == "certificate:device-7"
    assert change.gained == ()
    assert set(change.lost) == {"source network 10.0.0.0/8", "no source network any"}
