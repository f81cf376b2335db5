"""Every shipped config is checked against the real tools so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.policy import load_policy
from tests.natsserver import check_config

ROOT = Path(__file__).parents[2]
SERVER_CONFIGS = sorted(
    p for p in (*ROOT.glob("config/*.conf"), *ROOT.glob("deploy/**/*.conf"))
)


def test_there_are_server_configs_to_check() -> None:
    """The glob finds the shipped configs (an empty list would pass vacuously)."""
    assert ROOT / "config" / "nats-server.conf" in SERVER_CONFIGS


@pytest.mark.parametrize("path", SERVER_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_server_config_is_valid(path: Path) -> None:
    """`nats-server -t` accepts the shipped config."""
    result = check_config(path)

    assert result.returncode == 0, result.stdout


def test_example_policy_loads() -> None:
    """The annotated example policy loads without problems."""
    policy = load_policy(ROOT / "config" / "policy.example.yaml")

    assert {"john-doe", "billing", "sensor-7"} <= {u.name for u in policy.users}
