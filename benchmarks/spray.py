"""
A password spray: what does it cost, and does a known user notice?

Run from the repository root:

    .venv/bin/python benchmarks/spray.py [--names N] [--concurrency C]
        [--cost C] [--no-throttle]

A real nats-server and the service. One address (127.0.0.3) tries N
different unknown names, C at a time, while a known user whose login is in
the verification cache connects again and again from another address
(127.0.0.4). It prints the bcrypt checks the spray cost
(`callout_secret_checks_total`), how the spray's attempts ended, and the
known user's connect latency (p50/p99/max), once with the login throttle
(policy defaults) and once with it off (`exempt_networks` covering
loopback), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.clients import raw_login  # noqa: E402
from tests.integration.opsenv import (  # noqa: E402
    Keys,
    bcrypt_hash,
    http_port,
    policy_yaml,
    scrape,
)
from tests.natsserver import NatsServer  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402

KNOWN = "alice"
PASSWORD = "alice-pw"


async def _spray(port: int, names: int, concurrency: int) -> dict[str, int]:
    gate = asyncio.Semaphore(concurrency)
    outcomes: dict[str, int] = {}

    async def one(n: int) -> None:
        async with gate:
            result = await raw_login(port, f"name-{n}", "guess", source="127.0.0.3")
        outcomes[result] = outcomes.get(result, 0) + 1

    await asyncio.gather(*(one(n) for n in range(names)))
    return outcomes


async def _known(port: int, stop: asyncio.Event) -> list[float]:
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        result = await raw_login(port, KNOWN, PASSWORD, source="127.0.0.4")
        times.append((time.perf_counter() - started) * 1000)
        if result != "ok":
            times[-1] = float("inf")
    return times


async def run(names: int, concurrency: int, cost: int, *, throttle: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = Keys.create(root)
        policy = root / "policy.yaml"
        extra = "" if throttle else "throttle: {exempt_networks: [127.0.0.0/8]}\n"
        policy.write_text(
            policy_yaml({KNOWN: bcrypt_hash(PASSWORD, cost)}, extra=extra)
        )
        server = NatsServer(keys.body(), root / "nats", websocket=False).start()
        service = ServiceProcess(keys.env(server.client_url, policy), root).start()
        try:
            http = http_port(service)
            if (
                await raw_login(server.port, KNOWN, PASSWORD, source="127.0.0.4")
                != "ok"
            ):
                raise SystemExit("the known user cannot log in: check the setup")
            before = (await scrape(http))[("callout_secret_checks_total", ())]
            stop = asyncio.Event()
            known = asyncio.create_task(_known(server.port, stop))
            started = time.monotonic()
            outcomes = await _spray(server.port, names, concurrency)
            seconds = time.monotonic() - started
            stop.set()
            times = await known
            after = (await scrape(http))[("callout_secret_checks_total", ())]
        finally:
            service.stop()
            server.stop()
    q = statistics.quantiles(times, n=100)
    label = "throttle on " if throttle else "throttle off"
    print(
        f"{label}: spray of {names} names ({concurrency} at a time) in "
        f"{seconds:.1f} s, bcrypt checks {after - before:.0f}, outcomes {outcomes}"
    )
    print(
        f"  known user, {len(times)} connects meanwhile: p50 "
        f"{statistics.median(times):.1f} ms, p99 {q[98]:.1f} ms, max "
        f"{max(times):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--cost", type=int, default=12)
    parser.add_argument("--no-throttle", action="store_true", help="only the baseline")
    args = parser.parse_args()
    modes = [False] if args.no_throttle else [False, True]
    for throttle in modes:
        asyncio.run(run(args.names, args.concurrency, args.cost, throttle=throttle))


if __name__ == "__main__":
    main()
