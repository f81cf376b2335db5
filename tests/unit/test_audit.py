"""Audit events: subjects, the bounded buffer, what an event holds."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog
from structlog.testing import capture_logs

from service.config import load_settings
from service.dispatch.audit import AuditBuffer, subject_token
from service.dispatch.recorder import DecisionRecorder
from service.errors import ConfigError
from service.handler import Outcome
from service.ops.metrics import Metrics


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("APP", "APP"),
        ("team-a_1", "team-a_1"),
        (None, "none"),
        ("", "none"),
        ("a.b", "a_b"),
        ("*", "_"),
        (">", "_"),
        ("$G", "_G"),
        ("x y\tz", "x_y_z"),
        ("ÄÖ", "__"),
    ],
)
def test_subject_token_is_one_safe_token(value: str | None, token: str) -> None:
    """Dots, wildcards, `$` and spaces never reach the subject; null is `none`."""
    assert subject_token(value) == token


def _drops(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "callout_audit_dropped_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_full_buffer_drops_counts_and_logs_once() -> None:
    """Beyond its size the buffer drops (counted each time) and logs one line."""
    metrics = Metrics()
    buffer = AuditBuffer("callout.audit", 2, metrics)

    with capture_logs() as logs:
        for _ in range(5):
            buffer.offer("callout.request_authorized", {"decision": "allow"})

    assert _drops(metrics, "overflow") == 3
    assert [e["event"] for e in logs] == ["callout.audit_dropped"]
    first = await buffer.get()
    second = await buffer.get()
    assert first.msg_id != second.msg_id


async def test_an_event_is_the_decision_line_plus_an_id() -> None:
    """The recorder's fields, the event name, a unique id and its subject."""
    metrics = Metrics()
    buffer = AuditBuffer("callout.audit", 10, metrics, instance="INST")
    recorder = DecisionRecorder(metrics, buffer)
    outcome = Outcome(
        decision="deny",
        reply=b"signed error",
        reason="bad_password",
        user="alice",
        account=None,
        client_host="127.0.0.1",
    )

    structlog.contextvars.bind_contextvars(worker=1)
    try:
        recorder.outcome(outcome, 0.0, "sha256:abc")
    finally:
        structlog.contextvars.unbind_contextvars("worker")
    event = await buffer.get()
    body = json.loads(event.payload)

    assert event.subject == "callout.audit.deny.none"
    assert event.msg_id == body["id"]
    assert body["event"] == "callout.request_rejected"
    assert body["decision"] == "deny"
    assert body["reason"] == "bad_password"
    assert body["user"] == "alice"
    assert body["account"] is None
    assert body["policy_version"] == "sha256:abc"
    assert body["instance"] == "INST"
    assert body["worker"] == 1
    assert "duration_ms" in body
    assert body["timestamp"].endswith("Z")


async def test_secret_shaped_fields_are_redacted_in_events() -> None:
    """The log's redaction applies to events too (a second line of defence)."""
    buffer = AuditBuffer("a", 10, Metrics())

    buffer.offer("callout.request_rejected", {"decision": "deny", "password": "pw"})
    body = json.loads((await buffer.get()).payload)

    assert body["password"] == "[REDACTED]"


async def test_overload_and_internal_errors_are_events_too() -> None:
    """A request dropped at the door and an internal error each give an event."""
    buffer = AuditBuffer("a", 10, Metrics())
    recorder = DecisionRecorder(Metrics(), buffer)

    recorder.overload(3)
    try:
        raise RuntimeError
    except RuntimeError:
        recorder.internal_error()
    subjects = [(await buffer.get()).subject for _ in range(2)]

    assert subjects == ["a.dropped.none", "a.abort.none"]


def test_discard_empties_the_buffer() -> None:
    """At shutdown the events still buffered are counted by `discard`."""

    async def scenario() -> int:
        buffer = AuditBuffer("a", 10, Metrics())
        for _ in range(4):
            buffer.offer("callout.request_authorized", {"decision": "allow"})
        left = buffer.discard()
        await asyncio.wait_for(buffer.join(), 1)
        return left

    assert asyncio.run(scenario()) == 4


@pytest.mark.parametrize("subject", ["callout.*", "callout.>", "a..b", "a b", "."])
def test_audit_subject_must_be_a_literal_subject(
    monkeypatch: pytest.MonkeyPatch, subject: str
) -> None:
    """A wildcard, an empty token or a space is refused at startup."""
    monkeypatch.setenv("CALLOUT_AUDIT_SUBJECT", subject)

    with pytest.raises(ConfigError, match="CALLOUT_AUDIT_SUBJECT"):
        load_settings()


def test_totals_are_what_metrics_render() -> None:
    """`totals()` (for $SRV.STATS) sums the same counters /metrics exposes."""
    metrics = Metrics()
    metrics.observe("allow", None, 0.25)
    metrics.observe("deny", "bad_password", 0.5)
    metrics.observe("abort", "bad_signature", 0.25)
    metrics.drop("overload", 2)

    totals = metrics.totals()

    assert totals.decisions == {"allow": 1, "deny": 1, "abort": 1}
    assert totals.seconds == 1.0
    assert totals.dropped["overload"] == 2
    assert totals.last_abort == "bad_signature"
