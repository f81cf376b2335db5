"""
`init --audit` end to end: the generated nats-server.conf runs JetStream for
the callout account, the service makes the CALLOUT_AUDIT stream at startup
and its events land there; a restarted service leaves the stream as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from service.setup.dev import Child, find_nats_server
from tests.integration.clients import connect
from tests.integration.test_init_and_dev import (
    PRINTED_USER,
    child,
    free_ports,
)

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client

STREAM = "CALLOUT_AUDIT"


async def stream_reader(url: str, directory: Path, mode: str) -> Client:
    """The service's own login (in the callout account, where the stream is)."""
    if mode == "config":
        return await connect(url, nkeys_seed=str(directory / "service.nk"))
    return await connect(url, user_credentials=str(directory / "service.creds"))


def run_service(directory: Path, cwd: Path, marker: str) -> Child:
    """The service from the generated env file, once `marker` is logged."""
    argv = [sys.executable, "-m", "service", "run", "--env-file"]
    return child("service", [*argv, str(directory / "callout.env")], marker, cwd)


@pytest.mark.parametrize("mode", ["config", "operator"])
async def test_init_audit_stores_a_connect_in_the_stream_the_service_made(
    tmp_path: Path, mode: str
) -> None:
    """One connect is one stored event, and a restart keeps the stream as it is."""
    port, ws_port = free_ports()
    directory = tmp_path / "set"
    made = subprocess.run(
        [
            *(sys.executable, "-m", "service", "init", str(directory), "--audit"),
            *("--mode", mode, "--port", str(port), "--ws-port", str(ws_port)),
            *("--cost", "4"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    password = dict(PRINTED_USER.findall(made.stdout))["john-doe"]
    url = f"nats://127.0.0.1:{port}"
    conf = str(directory / "nats-server.conf")
    server = child(
        "nats-server",
        [str(find_nats_server()), "-c", conf],
        "Server is ready",
        tmp_path,
    )
    try:
        service = run_service(directory, tmp_path, "callout.audit_stream_created")
        try:
            nc = await connect(url, user="john-doe", password=password)
            await nc.close()
            reader = await stream_reader(url, directory, mode)
            js = reader.jetstream()
            events = await js.pull_subscribe("callout.audit.>", stream=STREAM)
            stored = await events.fetch(1, timeout=10)
            info = await js.stream_info(STREAM)
            # an operator's change the service must not undo on restart
            info.config.max_age = 3600.0
            await js.update_stream(info.config)
        finally:
            service.stop()
        again = run_service(directory, tmp_path, "callout.audit_stream_exists")
        again.stop()
        after = await js.stream_info(STREAM)
        await reader.close()
    finally:
        server.stop()

    event = json.loads(stored[0].data)
    assert stored[0].subject.startswith("callout.audit.allow.")
    assert (event["decision"], event["user"]) == ("allow", "john-doe")
    assert stored[0].headers is not None
    assert stored[0].headers["Nats-Msg-Id"] == event["id"]
    assert info.config.subjects == ["callout.audit.>"]
    assert info.config.duplicate_window == 120.0
    assert info.state.messages == 1
    assert after.config.max_age == 3600.0
    assert after.state.messages == 1
