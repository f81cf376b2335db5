"""
`init` and `dev` end to end: a real nats-server on the generated config, the
service from callout.env, and nats-py clients over TCP and WebSocket.

Operator mode runs end to end too: the handler's operator-mode signing (APP's
signing key + issuer_account, policy `signing_key_file`) has landed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.setup.dev import Child, find_nats_server
from tests.integration.clients import (
    connect,
    connect_fails,
    permission_violation,
    round_trip,
    user_info,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

SEED = re.compile(r"S[OAUX][A-Z2-7]{56}")
PRINTED_USER = re.compile(r"user: (\S+)\s+password: (\S+)")
START_TIMEOUT = 30.0


def free_ports() -> tuple[int, int]:
    """Two distinct free loopback ports (held together so they differ)."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return a.getsockname()[1], b.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This environment without CALLOUT_*: only the generated files count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLOUT_")}


def child(name: str, argv: list[str], marker: str, cwd: Path) -> Child:
    """Start a process and wait for `marker` in its output (dev's own helper)."""
    proc = Child(name, argv, marker, any_exit=threading.Event())
    proc.start(env=clean_env(), cwd=cwd)
    proc.wait_ready(START_TIMEOUT)
    return proc


@dataclass
class Setup:
    """A running init output: server + service, and what init printed."""

    directory: Path
    mode: str
    url: str
    ws_url: str
    passwords: dict[str, str]
    service: Child


@pytest.fixture(
    name="setup",
    params=[
        ("config", False),
        ("config", True),
        ("operator", False),
        ("operator", True),
    ],
    ids=["config", "config-xkey", "operator", "operator-xkey"],
)
def _setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    mode, xkey = request.param
    port, ws_port = free_ports()
    directory = tmp_path / "set"
    init = subprocess.run(
        [sys.executable, "-m", "service", "init", str(directory), "--mode", mode]
        + ["--port", str(port), "--ws-port", str(ws_port), "--cost", "4"]
        + (["--xkey"] if xkey else ["--no-xkey"]),
        capture_output=True,
        text=True,
        check=True,
    )
    passwords = dict(PRINTED_USER.findall(init.stdout))
    server = child(
        "nats-server",
        [str(find_nats_server()), "-c", str(directory / "nats-server.conf")],
        "Server is ready",
        tmp_path,
    )
    env_file = directory / "callout.env"
    try:
        service = child(
            "service",
            [sys.executable, "-m", "service", "run", "--env-file", str(env_file)],
            "callout.started",
            tmp_path,  # not the init directory: the env file's paths are absolute
        )
        try:
            yield Setup(
                directory,
                mode,
                f"nats://127.0.0.1:{port}",
                f"ws://127.0.0.1:{ws_port}",
                passwords,
                service,
            )
        finally:
            service.stop()
    finally:
        server.stop()
    log = "\n".join(service.tail)
    assert service.proc is not None
    assert service.proc.returncode == 0, log
    assert SEED.search(log) is None
    for password in passwords.values():
        assert password not in log


def wait_line(proc: Child, marker: str) -> None:
    """Wait until `proc` has written a line containing `marker` (maybe already)."""
    proc.marker, proc.seen_marker = marker, False
    proc._wake.clear()  # a line from now on wakes us; one before is in the tail
    if not any(marker in line for line in proc.tail):
        proc.wait_ready(START_TIMEOUT)


def app_account(setup: Setup) -> str:
    """What $SYS.REQ.USER.INFO reports for APP: its name, or its key (operator)."""
    if setup.mode == "config":
        return "APP"
    policy = (setup.directory / "policy.yaml").read_text()
    found = re.search(r"public_key: (A[A-Z2-7]{55})", policy)
    assert found is not None
    return found[1]


async def test_init_output_runs_end_to_end(setup: Setup) -> None:
    """john-doe round-trips on his subjects over TCP and WebSocket, no further."""
    password = setup.passwords["john-doe"]
    echoed = []
    for url in (setup.url, setup.ws_url):
        nc = await connect(url, user="john-doe", password=password)
        try:
            echoed.append(await round_trip(nc, "users.john-doe.x"))
        finally:
            await nc.close()
    violation = await permission_violation(
        setup.url, "users.admin.x", user="john-doe", password=password
    )
    refused, _ = await connect_fails(setup.url, user="john-doe", password="wrong")
    admin = await connect(setup.url, user="admin", password=setup.passwords["admin"])
    try:
        info = await user_info(admin)
    finally:
        await admin.close()

    wait_line(setup.service, "callout.system_connected")  # raises if never

    assert echoed == [b"ping", b"ping"]
    assert "users.admin.x" in violation
    assert "authorization violation" in refused
    assert info["account"] == app_account(setup)
    assert info["permissions"]["publish"]["allow"] == [">"]


def dev(tmp_path: Path, *args: str) -> tuple[Child, int, int]:
    """`nats-auth-callout dev` on free ports, ready; the process and its ports."""
    port, ws_port = free_ports()
    argv = [sys.executable, "-m", "service", "dev", "--cost", "4"]
    argv += ["--port", str(port), "--ws-port", str(ws_port), *args]
    return child("dev", argv, "Ready.", tmp_path), port, ws_port


def printed(proc: Child, pattern: str) -> str:
    found = re.search(pattern, "\n".join(proc.tail))
    assert found is not None, "\n".join(proc.tail)
    return found[1]


async def interrupt(proc: Child) -> int:
    """Ctrl-C: SIGINT to dev alone (its children have their own session)."""
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGINT)
    try:
        return await asyncio.to_thread(proc.proc.wait, 30)
    finally:
        proc.stop()


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_dev_serves_tcp_and_websocket_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """The quick start: connect as john-doe both ways; Ctrl-C stops everything."""
    proc, port, ws_port = await asyncio.to_thread(dev, tmp_path)
    password = printed(proc, r"user: john-doe\s+password: (\S+)")
    server_pid = int(printed(proc, r"nats-server \(pid (\d+)\)"))
    files = printed(proc, r"files in (\S+)")
    echoed = []
    for url in (f"nats://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_port}"):
        nc = await connect(url, user="john-doe", password=password)
        try:
            echoed.append(await round_trip(nc, "users.john-doe.hello"))
        finally:
            await nc.close()

    code = await interrupt(proc)
    out = "\n".join(proc.tail)

    assert echoed == [b"ping", b"ping"]
    assert code == 0, out
    assert out.endswith("stopped")
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert refused(port)
    assert refused(ws_port)
    assert not Path(files).exists()  # the temporary secrets are gone
    assert SEED.search(out) is None
    assert "wsconnect" in out
    assert "nats.connect" in out


async def test_dev_operator_mode_with_xkey_in_a_given_directory(
    tmp_path: Path,
) -> None:
    """Operator mode + xkey over WebSocket; SIGTERM also stops it; --dir stays."""
    directory = tmp_path / "dev"
    proc, _, ws_port = await asyncio.to_thread(
        dev, tmp_path, "--mode", "operator", "--xkey", "--dir", str(directory)
    )
    password = printed(proc, r"user: john-doe\s+password: (\S+)")
    nc = await connect(f"ws://127.0.0.1:{ws_port}", user="john-doe", password=password)
    try:
        echoed = await round_trip(nc, "users.john-doe.hello")
    finally:
        await nc.close()
    assert proc.proc is not None

    proc.proc.terminate()
    code = await asyncio.to_thread(proc.proc.wait, 30)
    proc.stop()
    out = "\n".join(proc.tail)

    assert echoed == b"ping"
    assert code == 0, out
    assert (directory / "xkey.nk").is_file()
    assert (directory / "service.creds").is_file()
    for path in directory.iterdir():
        for seed in SEED.findall(path.read_text()):
            assert seed not in out


async def test_dev_stops_everything_on_sighup(tmp_path: Path) -> None:
    """The terminal closes (SIGHUP): children stopped, secrets removed, exit 0."""
    proc, port, ws_port = await asyncio.to_thread(dev, tmp_path)
    server_pid = int(printed(proc, r"nats-server \(pid (\d+)\)"))
    files = printed(proc, r"files in (\S+)")
    assert proc.proc is not None

    proc.proc.send_signal(signal.SIGHUP)
    code = await asyncio.to_thread(proc.proc.wait, 30)
    proc.stop()

    assert code == 0, "\n".join(proc.tail)
    assert proc.tail[-1] == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert refused(port)
    assert refused(ws_port)
    assert not Path(files).exists()


async def test_dev_stops_everything_when_its_parent_dies(tmp_path: Path) -> None:
    """`make dev` killed outright: dev notices its parent is gone and cleans up."""
    port, ws_port = free_ports()
    argv = [sys.executable, "-m", "service", "dev", "--cost", "4"]
    argv += ["--port", str(port), "--ws-port", str(ws_port)]
    # a stand-in for make: starts dev (whose output is ours) and waits
    parent = [
        sys.executable,
        "-c",
        "import subprocess, sys; subprocess.run(sys.argv[1:], check=False)",
        *argv,
    ]
    proc = child("parent", parent, "Ready.", tmp_path)
    server_pid = int(printed(proc, r"nats-server \(pid (\d+)\)"))
    files = printed(proc, r"files in (\S+)")
    assert proc.proc is not None

    proc.proc.kill()
    # dev holds the output pipe too: EOF means dev has finished
    finished = await asyncio.to_thread(proc.exited.wait, 30)
    proc.stop()

    assert finished, "\n".join(proc.tail)
    assert proc.tail[-1] == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert refused(port)
    assert not Path(files).exists()
