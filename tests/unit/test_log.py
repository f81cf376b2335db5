"""Log redaction: secret-named keys and seed/JWT-shaped text never reach output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import structlog

from service.log import REDACTED, configure_logging
from service.protocol.nkeys import KeyPair, Prefix

if TYPE_CHECKING:
    import pytest

JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJhdWQiOiJBUFAifQ.c2lnbmF0dXJl"


def test_secrets_are_redacted_in_json_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Keys named like secrets and seed/JWT-shaped values are masked."""
    seed = KeyPair.create(Prefix.ACCOUNT).export_seed()
    configure_logging(fmt="json", level="info")

    structlog.get_logger("t").info(
        "callout.test",
        password="hunter2",
        auth_token="tok-123",
        detail=f"seed was {seed} and jwt {JWT}",
        nested={"pass": "p", "ok": "visible"},
    )
    out = capsys.readouterr().out
    record = json.loads(out)

    for secret in ("hunter2", "tok-123", seed, JWT):
        assert secret not in out
    assert record["password"] == REDACTED
    assert record["nested"] == {"pass": REDACTED, "ok": "visible"}
    assert record["event"] == "callout.test"
    assert record["level"] == "info"
    assert "timestamp" in record
    structlog.reset_defaults()


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    """Below the configured level nothing is written."""
    configure_logging(fmt="json", level="warning")

    structlog.get_logger("t").info("callout.quiet")
    structlog.get_logger("t").warning("callout.loud")
    out = capsys.readouterr().out

    assert "callout.quiet" not in out
    assert "callout.loud" in out
    structlog.reset_defaults()


def test_output_follows_the_current_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A logger cached before sys.stdout is replaced writes to the new stdout."""
    import io  # noqa: PLC0415

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", first)
    configure_logging(fmt="json", level="info")
    logger = structlog.get_logger("t")
    logger.info("callout.one")
    monkeypatch.setattr("sys.stdout", second)
    first.close()

    logger.info("callout.two")

    assert "callout.two" in second.getvalue()
    structlog.reset_defaults()
