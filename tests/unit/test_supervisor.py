"""`run --workers N`: which N, each child's HTTP port and log field."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
import structlog

from service import cli
from service.config import WORKER_ENV
from service.process import supervisor
from service.protocol.nkeys import KeyPair, Prefix

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from service.config import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[int]]:
    """A valid config-mode setup; records the worker count `run` supervises."""
    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n")
    monkeypatch.setenv("CALLOUT_POLICY_FILE", str(policy))
    monkeypatch.setenv(
        "CALLOUT_ISSUER_SEED", KeyPair.create(Prefix.ACCOUNT).export_seed()
    )
    counts: list[int] = []

    class Fake:
        def __init__(self, _settings: Settings, workers: int, _env: object) -> None:
            counts.append(workers)

        def run(self) -> int:
            return 0

    monkeypatch.setattr(cli, "Supervisor", Fake)
    yield counts
    structlog.reset_defaults()  # `run` configured logging to this test's stdout


def test_the_flag_overrides_the_setting(
    started: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers wins over CALLOUT_WORKERS; the setting applies without it."""
    monkeypatch.setenv("CALLOUT_WORKERS", "2")

    assert cli.main(["run", "--workers", "3"]) == 0
    assert cli.main(["run"]) == 0
    assert started == [3, 2]


def test_zero_workers_is_a_usage_error(started: list[int]) -> None:
    """argparse refuses it before anything starts."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--workers", "0"])

    assert exc.value.code == 2
    assert started == []


@pytest.mark.parametrize(
    ("listen", "index", "expected"),
    [
        ("127.0.0.1:8081", 0, "127.0.0.1:8081"),
        ("127.0.0.1:8081", 2, "127.0.0.1:8083"),
        (":9000", 1, ":9001"),
        ("[::1]:9000", 1, "[::1]:9001"),
        ("127.0.0.1:0", 3, "127.0.0.1:0"),
        ("", 1, ""),
    ],
)
def test_each_child_listens_on_its_own_port(
    listen: str, index: int, expected: str
) -> None:
    """Port + index; port 0 (each picks a free one) and off stay as they are."""
    assert supervisor.http_listen(listen, index) == expected


def test_a_child_logs_its_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every log line of worker k carries `worker: k`."""
    monkeypatch.setenv(WORKER_ENV, "1")
    structlog.contextvars.clear_contextvars()

    supervisor.bind_worker_index()

    assert structlog.contextvars.get_contextvars() == {"worker": 1}
    structlog.contextvars.clear_contextvars()
