"""
Rolling restart: what bcrypt does a restart of every replica cost?

Run from the repository root:

    .venv/bin/python benchmarks/rollingrestart.py [--clients N] [--users U]
        [--cost C] [--no-bucket]

A real nats-server with JetStream in the callout account, two replicas in
one queue group (with CALLOUT_STATE_BUCKET unless --no-bucket). N clients
of U users (bcrypt cost C) connect; then each replica in turn is stopped
and started again, and after each restart every client connects again (a
reconnect storm meeting a replica that has just started). It prints the
bcrypt checks (`callout_secret_checks_total`) of the first connects and of
the restarted replicas, and whether every client got back in.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import nats
import nats.errors

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.opsenv import (  # noqa: E402
    Keys,
    bcrypt_hash,
    http_port,
    policy_yaml,
    scrape,
)
from tests.natsserver import NatsServer, config_mode_body  # noqa: E402
from tests.service_process import ServiceProcess  # noqa: E402

CONNECT_DEADLINE = 120.0  # seconds for one client to get in (sheds, retries)


def _body(keys: Keys, store: Path) -> str:
    body = config_mode_body(
        issuer=keys.issuer.public_key,
        auth_nkey=keys.login.public_key,
        jetstream_dir=store,
        timeout=2,
    )
    login = f'users: [ {{ nkey: "{keys.login.public_key}" }} ]'
    return body.replace(login, f"{login}, jetstream: enabled", 1)


async def _connect_once(url: str, user: str) -> bool:
    """Connect, then close, retrying a refused (shed) attempt; True if in."""
    deadline = time.monotonic() + CONNECT_DEADLINE
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(
                url,
                user=user,
                password=f"{user}-pw",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=5,
            )
        except (nats.errors.Error, OSError, TimeoutError):
            await asyncio.sleep(0.2)  # a real client's reconnect wait
            continue
        await nc.close()
        return True
    return False


async def _storm(url: str, clients: int, users: int) -> tuple[int, float]:
    """Every client connects once, all at once: (how many got in, seconds)."""
    started = time.monotonic()
    results = await asyncio.gather(
        *(_connect_once(url, f"user{n % users}") for n in range(clients))
    )
    return sum(results), time.monotonic() - started


async def _checks(service: ServiceProcess) -> float:
    return (await scrape(http_port(service)))[("callout_secret_checks_total", ())]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--cost", type=int, default=12)
    parser.add_argument("--no-bucket", action="store_true")
    args = parser.parse_args()
    # nats-py logs every refused (shed, retried) attempt with a traceback
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = Keys.create(root)
        policy = root / "policy.yaml"
        hashes = {
            f"user{n}": bcrypt_hash(f"user{n}-pw", args.cost) for n in range(args.users)
        }
        policy.write_text(policy_yaml(hashes))
        server = NatsServer(_body(keys, root / "js"), root / "nats").start()
        extra = {} if args.no_bucket else {"CALLOUT_STATE_BUCKET": "callout-state"}
        env = keys.env(server.client_url, policy, **extra)
        replicas = [ServiceProcess(env, root).start() for _ in range(2)]
        try:
            got, seconds = await _storm(server.client_url, args.clients, args.users)
            first = sum([await _checks(r) for r in replicas])
            print(
                f"bucket: {not args.no_bucket}  clients {args.clients}  users "
                f"{args.users}  cost {args.cost}"
            )
            print(
                f"first connects: {got}/{args.clients} in {seconds:.1f} s, "
                f"bcrypt checks {first:.0f}"
            )
            for index in range(2):
                replicas[index].stop()
                replicas[index] = ServiceProcess(env, root).start()
                got, seconds = await _storm(server.client_url, args.clients, args.users)
                print(
                    f"after restarting replica {index}: {got}/{args.clients} back "
                    f"in {seconds:.1f} s"
                )
            after = [await _checks(r) for r in replicas]
            print(
                f"bcrypt checks by the restarted replicas: {sum(after):.0f} "
                f"({after[0]:.0f} + {after[1]:.0f})"
            )
        finally:
            for replica in replicas:
                replica.stop()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
