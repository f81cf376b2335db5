"""
Micro-benchmarks of the protocol core (not a test).

Run from the repository root:

    .venv/bin/python benchmarks/micro.py [--iterations N] [--repeats R]

Each operation runs N times per batch and R batches; the figure is the median
over the batches of the mean time per call, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.protocol.claims import Permission, UserClaims  # noqa: E402
from service.protocol.nkeys import KeyPair, Prefix  # noqa: E402
from service.protocol.request import decode_request  # noqa: E402
from service.protocol.response import encode_response, encode_user_jwt, seal_response  # noqa: E402
from service.protocol.xkeys import CurveKeyPair  # noqa: E402
from tests.factories import NOW, FakeServer, make_request  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

GOAL_US = 150.0


def measure(
    fn: Callable[[], object],
    iterations: int,
    repeats: int,
    *,
    warmup: int | None = None,
) -> list[float]:
    """
    Mean µs per call of each of `repeats` batches of `iterations` calls, after
    `warmup` calls (default: up to 200) that warm caches (verify keys, boxes).
    """
    for _ in range(min(iterations, 200) if warmup is None else warmup):
        fn()
    batches = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        batches.append((time.perf_counter_ns() - start) / iterations / 1000)
    return batches


def main(argv: list[str] | None = None) -> int:
    """Build one plain and one sealed request, time each step, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    issuer = KeyPair.create(Prefix.ACCOUNT)
    service_xkey = CurveKeyPair.create()
    plain_server = FakeServer()
    sealed_server = FakeServer(xkey=CurveKeyPair.create())
    server_xkey = sealed_server.xkey
    assert server_xkey is not None  # noqa: S101 - narrows the type
    connect_opts = {"user": "alice", "pass": "secret", "name": "bench"}
    plain, _ = make_request(
        plain_server, issuer_account=issuer.public_key, connect_opts=connect_opts
    )
    sealed, headers = make_request(
        sealed_server,
        issuer_account=issuer.public_key,
        service_xkey=service_xkey.public_key,
        connect_opts=connect_opts,
    )
    request = decode_request(plain, now=NOW)
    sealed_request = decode_request(sealed, headers, now=NOW, xkey=service_xkey)
    claims = UserClaims(
        subject=request.user_nkey,
        audience="APP",
        name="alice",
        expires=NOW + 3600,
        pub=Permission(allow=("app.>",)),
        sub=Permission(allow=("_INBOX.>", "app.>")),
    )
    user_jwt = encode_user_jwt(claims, issuer, now=NOW)
    response = encode_response(request, issuer, now=NOW, jwt=user_jwt)
    sealed_response = seal_response(response, sealed_request, service_xkey)

    def respond_plain() -> object:
        req = decode_request(plain, now=NOW)
        jwt = encode_user_jwt(claims, issuer, now=NOW)
        return encode_response(req, issuer, now=NOW, jwt=jwt)

    def respond_sealed() -> object:
        req = decode_request(sealed, headers, now=NOW, xkey=service_xkey)
        jwt = encode_user_jwt(claims, issuer, now=NOW)
        token = encode_response(req, issuer, now=NOW, jwt=jwt)
        return seal_response(token, req, service_xkey)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("decode+verify plain request", lambda: decode_request(plain, now=NOW)),
        (
            "decode sealed request (unseal+verify)",
            lambda: decode_request(sealed, headers, now=NOW, xkey=service_xkey),
        ),
        ("encode+sign user JWT", lambda: encode_user_jwt(claims, issuer, now=NOW)),
        (
            "encode+sign response",
            lambda: encode_response(request, issuer, now=NOW, jwt=user_jwt),
        ),
        (
            "seal response",
            lambda: seal_response(response, sealed_request, service_xkey),
        ),
        (
            "open sealed payload",
            lambda: server_xkey.open(sealed_response, service_xkey.public_key),
        ),
        ("decode->respond, plain", respond_plain),
        ("decode->respond, sealed", respond_sealed),
    ]

    print(
        f"{args.iterations} iterations x {args.repeats} repeats, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"{'operation':<40} {'median µs':>10} {'min µs':>10}")
    print("-" * 62)
    medians: dict[str, float] = {}
    for name, fn in cases:
        batches = measure(fn, args.iterations, args.repeats)
        medians[name] = statistics.median(batches)
        print(f"{name:<40} {medians[name]:>10.1f} {min(batches):>10.1f}")
    print("-" * 62)
    print(f"goal: decode->respond <= {GOAL_US:.0f} µs median")
    met = True
    for kind in ("plain", "sealed"):
        median = medians[f"decode->respond, {kind}"]
        ok = median <= GOAL_US
        met = met and ok
        print(f"  {kind:<7} {median:>7.1f} µs  {'met' if ok else 'NOT met'}")
    print(f"goal {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
