"""
Scenario 6 of storms.py: sustained throughput, one service process and several.

- decisions/s: signed authorization requests (as nats-server makes them,
  tests/factories.py) published straight to the callout subject by a client
  in the callout's account, `WINDOW` outstanding at once, for known users
  (cached); this is the service's own capacity, without the connect work of
  nats-server and clients;
- connects/s: `LANES` raw clients connecting and closing in a loop, for the
  floor, the usual alternative and the callout: what the whole machine does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING

import nats
from rawclient import connect_close
from scenarios import ClientCpu, Figure
from stormenv import CpuMeter, children, password, pid_of

from service.protocol.claims import AUTH_SUBJECT
from tests.factories import FakeServer, make_request

if TYPE_CHECKING:
    from nats.aio.client import Client
    from stormenv import Stacks

WINDOW = 128
LANES = 16
WARMUP = 3.0


def requests(stacks: Stacks, users: list[str], count: int) -> list[bytes]:
    """Signed requests for `users`, valid for 15 minutes."""
    assert stacks.keys is not None  # noqa: S101
    issuer = stacks.keys.issuer.public_key
    servers = [FakeServer() for _ in range(4)]
    return [
        make_request(
            servers[i % len(servers)],
            issuer_account=issuer,
            connect_opts={"user": u, "pass": password(u)},
            now=int(time.time()),
            ttl=900,
        )[0]
        for i, u in ((i, users[i % len(users)]) for i in range(count))
    ]


def _allowed(reply: bytes) -> bool:
    payload = reply.split(b".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    return bool(claims["nats"].get("jwt")) and not claims["nats"].get("error")


async def _load(nc: Client, payloads: list[bytes], seconds: float) -> tuple[int, int]:
    """(replies, allows among the first of each lane) over `seconds`."""
    end = time.monotonic() + seconds
    counts = [0, 0]

    async def lane(offset: int) -> None:
        i = offset
        while time.monotonic() < end:
            try:
                msg = await nc.request(AUTH_SUBJECT, payloads[i % len(payloads)], 2)
            except nats.errors.TimeoutError:
                continue
            if i == offset:
                counts[1] += _allowed(msg.data)
            counts[0] += 1
            i += WINDOW

    await asyncio.gather(*(lane(k) for k in range(WINDOW)))
    return counts[0], counts[1]


async def decisions(
    stacks: Stacks, users: list[str], workers: int, seconds: float
) -> tuple[float, float, float, bool]:
    """(decisions/s, driver CPU share, service cores busy, sampled replies allow)."""
    server, service = stacks.direct(workers)
    payloads = requests(stacks, users, 2000)
    try:
        nc = await nats.connect(server.client_url, user="driver", password="driver-pw")
        await _load(nc, payloads, WARMUP)  # every worker's cache learns the users
        cpu = CpuMeter({"service": [pid_of(service), *children(pid_of(service))]})
        cpu.start()
        with ClientCpu() as meter:
            started = time.perf_counter()
            replies, allows = await _load(nc, payloads, seconds)
            elapsed = time.perf_counter() - started
        cpu.stop()
        await nc.close()
    finally:
        service.stop()
        server.stop()
    return (
        replies / elapsed,
        meter.share,
        cpu.spent["service"] / elapsed,
        allows == WINDOW,
    )


async def connects(
    stacks: Stacks, stack: str, users: list[str], seconds: float
) -> float:
    """Connect-close per second of LANES raw clients in a loop."""
    end = time.monotonic() + seconds
    done = [0]

    async def lane(k: int) -> None:
        i = k
        while time.monotonic() < end:
            ok, _ = await connect_close(stacks.login(stack, users[i % len(users)]))
            done[0] += ok
            i += LANES

    started = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(LANES)))
    return done[0] / (time.perf_counter() - started)


async def saturation(
    stacks: Stacks, users: list[str], max_workers: int, seconds: float
) -> list[Figure]:
    """Decisions/s and connects/s for 1..max_workers service processes."""
    figures, one = [], 0.0
    for workers in range(1, max_workers + 1):
        rate, cpu, busy, allowed = await decisions(stacks, users, workers, seconds)
        one = one or rate
        figure = Figure("6 saturation", f"decisions/s, {workers} process(es)")
        figure.values["callout"] = rate
        figure.reference = ("1 process", one)
        figure.note = (
            f"service busy {busy:.2f} cores, driver {cpu:.0%} of one; "
            f"{'replies are allows' if allowed else 'replies are NOT allows'}"
        )
        if workers > 1:
            figure.goal = "scales with --workers up to the cores"
            figure.met = rate >= one * (1 + 0.5 * (workers - 1))
        figures.append(figure)
    for workers in range(1, max_workers + 1):
        stacks.start_service(workers)
        await connects(stacks, "callout", users, WARMUP)  # fills every cache
        sustained = Figure("6 saturation", f"connects/s, {LANES} loops, {workers} proc")
        for stack in stacks.names if workers == 1 else ("callout",):
            sustained.values[stack] = await connects(stacks, stack, users, seconds)
        figures.append(sustained)
    await asyncio.to_thread(stacks.restart_bcrypt)
    return figures
