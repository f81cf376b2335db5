"""
Refusal timing: can the time to a refusal tell which user names exist?

Run from the repository root (or `make bench`):

    .venv/bin/python benchmarks/refusals.py [--rounds N]

Through `service.handler.handle` with the service's own verification cache
and bcrypt at cost 12 (as `nats server passwd` makes hashes), it times
refusals of an unknown name (a decoy bcrypt) and of a known name with a
wrong password (a real bcrypt), interleaved so that machine noise falls on
both; then the same two under an address back-off of the login throttle
(no bcrypt for either). Then, through the service's dispatcher (fast
attempt, cold lane, reply), the same two with the global budget of decoy
checks left and spent: spent, the unknown name runs no bcrypt and its
refusal is paced by the cold lane. It prints each distribution's
percentiles, the ratio of medians (near 1.0: the two cannot be told apart),
the two-sample Kolmogorov-Smirnov distance D with its 5 % critical value
(D below it: no evidence the distributions differ), and the bcrypt checks run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import bcrypt
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.config import Keys, Settings  # noqa: E402
from service.dispatch.dispatcher import Dispatcher  # noqa: E402
from service.dispatch.logincache import LoginCache  # noqa: E402
from service.dispatch.throttle import LoginThrottle  # noqa: E402
from service.handler import HandlerContext, Outcome, handle  # noqa: E402
from service.ops.health import Health  # noqa: E402
from service.ops.metrics import Metrics  # noqa: E402
from service.policy import parse_policy  # noqa: E402
from service.policy.throttle import Throttle  # noqa: E402
from service.protocol.nkeys import KeyPair, Prefix  # noqa: E402
from service.signers import AccountSigner  # noqa: E402
from tests.factories import NOW, FakeServer, john_doe_policy, make_request  # noqa: E402

HOST = "127.0.0.1"
# the dispatcher phases: the per-principal and per-address limits out of the
# way, so that only the global decoy budget acts
BUDGET = (
    "throttle: {{failures: 1000, address_failures: 100000, decoys_per_second: {}}}\n"
)


def _request(server: FakeServer, issuer: KeyPair, user: str, now: int = NOW) -> bytes:
    body, _ = make_request(
        server,
        issuer_account=issuer.public_key,
        connect_opts={"user": user, "pass": "not-the-password"},
        now=now,
    )
    return body


def _ks(a: list[float], b: list[float]) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov D and its 5 % critical value."""
    points = sorted(a + b)
    d = max(
        abs(sum(x <= p for x in a) / len(a) - sum(x <= p for x in b) / len(b))
        for p in points
    )
    return d, 1.358 * math.sqrt((len(a) + len(b)) / (len(a) * len(b)))


def _print(phase: str, rounds: int, times: dict[str, list[float]], extra: str) -> None:
    print(f"{phase} ({rounds} rounds, interleaved):")
    for kind, samples in times.items():
        print(f"  {kind:<15} {_percentiles(samples)}")
    unknown, wrong = times["unknown name"], times["wrong password"]
    ratio = statistics.median(unknown) / statistics.median(wrong)
    d, critical = _ks(unknown, wrong)
    print(f"  ratio of medians (unknown / wrong): {ratio:.3f}")
    print(f"  Kolmogorov-Smirnov D {d:.3f} (5 % critical value {critical:.3f})")
    print(f"  {extra}")


async def _dispatched(hashed: str, rounds: int, rate: float, *, spend: bool) -> None:
    """Unknown names and wrong passwords through a dispatcher, timed to the reply."""
    issuer, server = KeyPair.create(Prefix.ACCOUNT), FakeServer()
    policy = parse_policy(john_doe_policy(hashed) + BUDGET.format(rate))
    dispatcher = Dispatcher(
        Settings(threads=1),
        Keys(issuer=issuer, xkey=None),
        policy,
        {"APP": AccountSigner(issuer, audience="APP")},
        metrics=Metrics(),
        health=Health(),
    )
    replied: list[float] = []

    async def respond(_reply: bytes) -> None:
        replied.append(time.perf_counter())

    async def one(user: str) -> float:
        started = time.perf_counter()
        body = _request(server, issuer, user, now=int(time.time()))
        await dispatcher.dispatch(body, None, respond)
        await dispatcher.wait()
        return (replied[-1] - started) * 1000

    if spend:  # the bucket's one token: its decoy also gives the lane a duration
        await one("spender")
    checks = dispatcher.login_cache.checks
    times: dict[str, list[float]] = {"unknown name": [], "wrong password": []}
    for n in range(rounds):
        times["unknown name"].append(await one(f"no-such-user-{n}"))
        times["wrong password"].append(await one("john-doe"))
    ran = dispatcher.login_cache.checks - checks
    dispatcher.close()
    phase = "dispatcher, decoy budget " + ("spent" if spend else "left")
    _print(phase, rounds, times, f"bcrypt checks run in all: {ran}")


def _percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"p5 {q[0]:7.2f}  p50 {statistics.median(samples):7.2f}  p95 {q[-1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    # the dispatcher's one line per decision would bury the figures
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    issuer, server = KeyPair.create(Prefix.ACCOUNT), FakeServer()
    hashed = bcrypt.hashpw(b"john-doe-password", bcrypt.gensalt(12)).decode()
    policy = parse_policy(john_doe_policy(hashed))
    cache = LoginCache()
    # decoys without limit here: handle() alone does not pace (the lane does)
    throttle = LoginThrottle(Throttle(address_failures=1, decoys_per_second=100_000))
    ctx = HandlerContext(
        issuer=issuer,
        xkey=None,
        policy=policy,
        check_secret=cache,
        signers={"APP": AccountSigner(issuer, audience="APP")},
        guard=throttle,
        holds=cache.holds,
    )
    requests = {
        "unknown name": _request(server, issuer, "no-such-user"),
        "wrong password": _request(server, issuer, "john-doe"),
    }
    for phase in ("no back-off", "address back-off"):
        if phase == "address back-off":
            throttle.observe(
                Outcome(
                    decision="deny", reply=b"", reason="unknown_user", client_host=HOST
                )
            )
        times: dict[str, list[float]] = {kind: [] for kind in requests}
        reasons: dict[str, set[str | None]] = {kind: set() for kind in requests}
        for _ in range(args.rounds):
            for kind, body in requests.items():
                started = time.perf_counter()
                outcome = handle(body, None, ctx=ctx, now=NOW)
                times[kind].append((time.perf_counter() - started) * 1000)
                reasons[kind].add(outcome.reason)
        why = {kind: sorted(str(r) for r in reasons[kind]) for kind in requests}
        _print(phase, args.rounds, times, f"reasons {why}")
    asyncio.run(_dispatched(hashed, args.rounds, 1000.0, spend=False))
    asyncio.run(_dispatched(hashed, args.rounds, 0.01, spend=True))


if __name__ == "__main__":
    main()
