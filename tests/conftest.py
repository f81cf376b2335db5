# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: real nats-server processes that dump their log on failure."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy

from tests.natsserver import NatsServer, ServerFactory

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from pathlib import Path

_phase_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixtures can see if a test failed."""
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    return report


@pytest.fixture(name="nats_server_factory")
def _nats_server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """Start servers from config bodies; stop all, print their logs on failure."""
    started: list[NatsServer] = []

    def start(
        body: str, *, server_name: str = "test", websocket: bool = True
    ) -> NatsServer:
        directory = tmp_path / f"nats-{len(started)}-{server_name}"
        server = NatsServer(
            body, directory, server_name=server_name, websocket=websocket
        )
        started.append(server)
        return server.start()

    yield start

    for server in started:
        server.stop()
    reports = request.node.stash.get(_phase_reports, {})
    if any(r.failed for r in reports.values()):
        for server in started:
            print(f"\n----- nats-server {server.config_path} log -----")  # noqa: T201
            print(server.log_text())  # noqa: T201


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """
    Undo what a test's `configure_logging` left behind.

    The service caches each module logger on first use (fast in production);
    a test that ran `run` would otherwise leave the later tests' module
    loggers bound to its configuration, out of reach of `capture_logs`.
    """
    yield
    structlog.reset_defaults()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "service":
            continue
        for value in list(vars(module).values()):
            if isinstance(value, BoundLoggerLazyProxy):
                vars(value).pop("bind", None)  # the cached bind, back to lazy
