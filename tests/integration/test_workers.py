"""`run` with CALLOUT_WORKERS=2 against a real nats-server: one queue group."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import pytest

from tests.integration.clients import connect
from tests.integration.opsenv import PASSWORDS, Keys, bcrypt_hash, policy_yaml, scrape
from tests.natsserver import NatsServer
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.service_process import Record

MAX_CONNECTS = 60  # all on one worker by chance: 2 ** -59


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[NatsServer, ServiceProcess]]:
    keys = Keys.create(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml({"alice": bcrypt_hash(PASSWORDS["alice"])}))
    server = NatsServer(keys.body(), tmp_path / "nats").start()
    env = keys.env(server.client_url, policy, CALLOUT_WORKERS="2")
    service = ServiceProcess(env, tmp_path).start(wait_for=None)
    try:
        service.wait_for_event("callout.started", timeout=20, count=2)
        yield server, service
    finally:
        service.stop()
        server.stop()


def _pids(service: ServiceProcess) -> dict[int, int]:
    started = service.events("callout.worker_started")
    return {int(r["worker"]): int(r["pid"]) for r in started}


def _decisions(service: ServiceProcess) -> list[object]:
    return [r.get("worker") for r in service.events("callout.request_authorized")]


def _deciders(service: ServiceProcess) -> set[object]:
    return set(_decisions(service))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_both_workers_answer_in_one_queue_group(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """Two processes, each with its own worker index, both authorize clients."""
    server, service = workers
    await _until_both_decided(server, service)

    assert _deciders(service) == {0, 1}
    assert len(set(_pids(service).values())) == 2
    started = service.events("callout.started")
    assert {r["queue_group"] for r in started} == {"auth-callout"}


async def test_a_password_checked_on_one_worker_is_cached_on_both(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """One bcrypt for a user, whichever worker its later connects land on."""
    server, service = workers
    service.wait_for_event("callout.http_listening", timeout=15, count=2)
    ports = [int(r["port"]) for r in service.events("callout.http_listening")]

    nc = await connect(server.client_url, user="alice", password=PASSWORDS["alice"])
    await nc.close()
    # the other worker learns it through the supervisor: no event to await
    # across processes, so watch its /metrics (bounded)
    deadline = asyncio.get_running_loop().time() + 10
    while not all([await _metric(p, "callout_secret_cache_entries") for p in ports]):
        assert asyncio.get_running_loop().time() < deadline, "not shared in 10 s"
        await asyncio.sleep(0.05)
    await _until_both_decided(server, service)

    assert _deciders(service) == {0, 1}
    assert [await _metric(p, "callout_secret_cache_entries") for p in ports] == [1, 1]
    assert sum([await _metric(p, "callout_secret_checks_total") for p in ports]) == 1


async def _until_both_decided(server: NatsServer, service: ServiceProcess) -> None:
    """Connect as alice until each worker has authorized her at least once."""
    for _ in range(MAX_CONNECTS):
        nc = await connect(server.client_url, user="alice", password=PASSWORDS["alice"])
        await nc.close()
        if _deciders(service) == {0, 1}:
            return


async def _metric(port: int, name: str) -> float:
    return (await scrape(port))[(name, ())]


def test_sigterm_drains_both_workers_and_exits_0(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """The parent forwards SIGTERM, waits for both children, exits 0."""
    _, service = workers
    pids = _pids(service)

    code = service.stop(signal.SIGTERM)

    tail = "\n".join(service.lines[-30:])  # shown if an assertion fails
    assert code == 0, tail
    assert len(service.events("callout.stopped")) == 2, tail
    (stopped,) = service.events("callout.supervisor_stopped")
    assert stopped["codes"] == [0, 0], tail
    assert all(_gone(pid) for pid in pids.values()), tail


def test_sighup_reaches_every_worker(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """Each child reloads its policy on the parent's SIGHUP."""
    _, service = workers
    assert service._proc is not None

    service._proc.send_signal(signal.SIGHUP)
    service.wait_for(lambda rs: len(_reloads(rs)) == 2, timeout=15)

    assert {r["worker"] for r in _reloads(service.records)} == {0, 1}


def _reloads(records: list[Record]) -> list[Record]:
    return [
        r
        for r in records
        if r.get("event") == "callout.policy_reloaded" and r.get("trigger") == "sighup"
    ]


async def test_a_worker_that_dies_is_started_again(
    workers: tuple[NatsServer, ServiceProcess],
) -> None:
    """A killed child is replaced, and the new one serves in the queue group."""
    server, service = workers
    old = _pids(service)[0]

    os.kill(old, signal.SIGKILL)
    service.wait_for_event("callout.started", timeout=20, count=3)
    exited = service.wait_for_event("callout.worker_exited")
    before = _decisions(service).count(0)
    for _ in range(MAX_CONNECTS):
        nc = await connect(server.client_url, user="alice", password=PASSWORDS["alice"])
        await nc.close()
        if _decisions(service).count(0) > before:
            break

    assert _decisions(service).count(0) > before  # the new worker 0 answered
    assert exited["worker"] == 0
    assert exited["code"] == -signal.SIGKILL
    assert _pids(service)[0] != old
    assert service.stop() == 0
