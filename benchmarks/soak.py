"""
Soak benchmark: many connects through one service replica, paced over minutes.

Run from the repository root:

    .venv/bin/python benchmarks/soak.py                      # 30 000 in ~5 min
    .venv/bin/python benchmarks/soak.py --connects 3000 --duration 30

It starts a config-mode nats-server and one service process (HTTP on), makes
`--users` password users (bcrypt cost `--cost`, like `nats server passwd`),
then opens and closes connections at an even pace: most with the right
password (the service's verification cache makes repeats cheap, as in a
reconnect storm), a fraction `--deny-ratio` with a wrong one (a full bcrypt
each time, and an expected refusal). It prints connects/s, p50/p99 connect
latency, unexpected failures (goal: 0) and the service's RSS at start and
end (goal: growth under 20 MB), read from /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
from nats.aio.client import Client

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.opsenv import Keys, http_get, http_port, policy_yaml  # noqa: E402
from tests.natsserver import NatsServer  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402


async def _quiet(_exc: Exception) -> None:
    """nats-py's default error callback prints every refusal with a traceback."""


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def connect_once(url: str, user: str, password: str) -> tuple[bool, float]:
    """Connect and close; (authorized, seconds to CONNECT acknowledged)."""
    nc = Client()
    started = time.perf_counter()
    try:
        await nc.connect(
            url,
            user=user,
            password=password,
            error_cb=_quiet,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
        )
    except Exception:  # noqa: BLE001 - any refusal or timeout is an outcome
        elapsed = time.perf_counter() - started
        await nc.close()
        if nc._transport is not None:  # noqa: SLF001 - nats-py leaks refused sockets
            nc._transport.close()  # type: ignore[no-untyped-call]  # noqa: SLF001
        return False, elapsed
    elapsed = time.perf_counter() - started
    await nc.close()
    return True, elapsed


class Run:
    """The paced load: connect `i` is due at start + i * interval."""

    def __init__(self, args: argparse.Namespace, url: str, users: list[str]) -> None:
        self.args = args
        self.url = url
        self.users = users
        self.interval = args.duration / args.connects
        self.next = 0
        self.ok: list[float] = []
        self.denied = 0
        self.failures = 0
        self.rng = random.Random(7)

    async def worker(self, start: float) -> None:
        while self.next < self.args.connects:
            i, self.next = self.next, self.next + 1
            delay = start + i * self.interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing, not synchronisation
            user = self.rng.choice(self.users)
            wrong = self.rng.random() < self.args.deny_ratio
            ok, seconds = await connect_once(
                self.url, user, "wrong" if wrong else f"{user}-pw"
            )
            if ok and not wrong:
                self.ok.append(seconds)
            elif wrong and not ok and seconds < 1.0:  # an answered refusal
                self.denied += 1
            else:
                self.failures += 1


async def soak(args: argparse.Namespace, directory: Path) -> int:
    """Set up, run, report. Returns the exit code (1 when goals are missed)."""
    users = [f"user{i}" for i in range(args.users)]
    with ThreadPoolExecutor(4) as pool:  # bcrypt releases the GIL
        hashes = list(
            pool.map(
                lambda u: bcrypt.hashpw(
                    f"{u}-pw".encode(), bcrypt.gensalt(args.cost)
                ).decode(),
                users,
            )
        )
    keys = Keys.create(directory)
    policy = directory / "policy.yaml"
    policy.write_text(policy_yaml(dict(zip(users, hashes, strict=True))))
    server = NatsServer(keys.body(), directory / "nats", websocket=False).start()
    service = ServiceProcess(keys.env(server.client_url, policy), directory)
    try:
        service.start(wait_for="callout.started")
        assert service._proc is not None  # noqa: S101, SLF001
        pid = service._proc.pid  # noqa: SLF001
        rss_start = rss_mb(pid)
        # each user's first connect pays a full bcrypt; do those first, so the
        # figures below are the steady state (a reconnect storm, a busy day)
        warm = time.perf_counter()
        for user in users:
            await connect_once(server.client_url, user, f"{user}-pw")
        warm = time.perf_counter() - warm
        rss_warm = rss_mb(pid)
        run = Run(args, server.client_url, users)
        started = time.perf_counter()
        await asyncio.gather(*(run.worker(started) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        rss_end = rss_mb(pid)
        _, metrics = await http_get(http_port(service), "/metrics")
    finally:
        code = service.stop()
        server.stop()
    done = len(run.ok) + run.denied + run.failures
    latencies = sorted(run.ok)
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    growth = rss_end - rss_start
    served = [
        line
        for line in metrics.splitlines()
        if line.startswith("callout_requests_total")
    ]
    print(f"warm-up: {len(users)} users' first connects (bcrypt) in {warm:.1f} s")
    print(f"soak: {done} connects in {elapsed:.1f} s -> {done / elapsed:.1f}/s")
    print(
        f"latency (authorized connects): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {latencies[-1] * 1000 if latencies else 0:.1f} ms"
    )
    print(
        f"outcomes: {len(run.ok)} authorized, {run.denied} refused as expected "
        f"(wrong password), {run.failures} failures"
    )
    print(
        f"service RSS: start {rss_start:.1f} MB, after warm-up {rss_warm:.1f} MB, "
        f"end {rss_end:.1f} MB, "
        f"growth {growth:+.1f} MB; exit code {code}"
    )
    print("service counters:", *served, sep="\n  ")
    return 0 if run.failures == 0 and growth < 20 and code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=30_000)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--cost", type=int, default=12, help="bcrypt cost")
    parser.add_argument("--deny-ratio", type=float, default=0.01)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as tmp,
        contextlib.suppress(KeyboardInterrupt),
    ):
        return asyncio.run(soak(args, Path(tmp)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
