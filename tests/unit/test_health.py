"""Readiness: the first failing condition is the reason."""

from __future__ import annotations

import pytest

from service.ops.health import Health


@pytest.mark.parametrize(
    ("health", "reason"),
    [
        (Health(), "nats_disconnected"),
        (Health(connected=True), "subscription_unconfirmed"),
        (Health(connected=True, subscribe_denied=True), "subscribe_denied"),
        (Health(connected=True, subscribed=True), None),
        (
            Health(connected=True, subscribed=True, key_problem="issuer_mismatch"),
            "issuer_mismatch",
        ),
        (Health(connected=True, subscribed=True, draining=True), "shutting_down"),
    ],
)
def test_not_ready_names_the_first_missing_condition(
    health: Health, reason: str | None
) -> None:
    """Each state maps to its reason code; all conditions met means ready."""
    assert reason == health.not_ready()
