"""
A real browser logs in through the service: examples/browser in headless Chromium.

nats-server (config mode, xkey, WebSocket) and the service (`python -m service
run`, on the shipped config/policy.example.yaml) run as in production; the page
is served from examples/browser on loopback and driven by playwright-core
(examples/browser/e2e.mjs) in the system's Chromium. `make test` installs
Chromium (as root, when missing) and runs `npm ci` in examples/browser; this
test fails, never skips, when either is missing.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest

from service.protocol.nkeys import KeyPair, Prefix
from service.protocol.xkeys import CurveKeyPair
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "browser"
POLICY = ROOT / "config" / "policy.example.yaml"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
USER = "john-doe"
PASSWORD = "john-doe-password"  # the public demo value in the example policy
OTHER_SUBJECT = "users.someone-else.x"


def missing_prerequisites() -> list[str]:
    """What `make test` should have installed but did not."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if shutil.which("node") is None:
        missing.append("node on PATH (Node.js 18+)")
    missing.extend(
        f"examples/browser/node_modules/{pkg} (npm ci in examples/browser)"
        for pkg in ("nats.ws", "playwright-core")
        if not (EXAMPLE / "node_modules" / pkg / "package.json").is_file()
    )
    return missing


class _StaticHandler(SimpleHTTPRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: errors are still logged, each request is not."""


@pytest.fixture(name="page_url", scope="module")
def _page_url() -> Iterator[str]:
    """examples/browser over HTTP on a free loopback port."""
    handler = functools.partial(_StaticHandler, directory=str(EXAMPLE))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    thread.join(5)
    httpd.server_close()


@dataclass
class Stack:
    server: NatsServer
    service: ServiceProcess


@pytest.fixture(name="stack", scope="module")
def _stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Server + service as deployed: nkey service login, xkey, the example policy."""
    directory = tmp_path_factory.mktemp("browser")
    issuer = KeyPair.create(Prefix.ACCOUNT)
    login = KeyPair.create(Prefix.USER)
    curve = CurveKeyPair.create()
    server = NatsServer(
        config_mode_body(
            issuer=issuer.public_key,
            auth_nkey=login.public_key,
            xkey=curve.public_key,
            accounts=("APP", "BILLING"),
        ),
        directory / "nats",
    ).start()
    for name, seed in (
        ("issuer.nk", issuer.export_seed()),
        ("service.nk", login.export_seed()),
        ("xkey.nk", curve.export_seed()),
    ):
        (directory / name).write_text(seed + "\n")
    service = ServiceProcess(
        {
            "CALLOUT_NATS_URL": server.client_url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(directory / "service.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(directory / "issuer.nk"),
            "CALLOUT_XKEY_SEED_FILE": str(directory / "xkey.nk"),
            "CALLOUT_POLICY_FILE": str(POLICY),
        },
        directory,
    )
    try:
        service.start()
        yield Stack(server, service)
    finally:
        service.stop()
        server.stop()


def run_browser(url: str, logins: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Run e2e.mjs: one fresh browser context per login; what the page showed."""
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run(
        [node, str(EXAMPLE / "e2e.mjs")],
        cwd=EXAMPLE,
        env=os.environ
        | {
            "E2E_URL": url,
            "E2E_LOGINS": json.dumps(logins),
            "CHROMIUM": str(CHROMIUM),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"e2e.mjs failed:\n{proc.stderr}\n{proc.stdout}"
    results: list[dict[str, Any]] = json.loads(proc.stdout.splitlines()[-1])
    return results


def test_browser_round_trip_and_permissions_violation(
    stack: Stack, page_url: str
) -> None:
    """
    john-doe logs in from the page with a password over WebSocket.

    His own subject round-trips, another user's is refused by the server with
    a permissions violation the page shows; a wrong password is refused at
    login. Each outcome is also the service's decision in its log.
    """
    missing = missing_prerequisites()
    if missing:
        pytest.fail(
            "browser test prerequisites missing (make test installs them): "
            + "; ".join(missing)
        )
    query = urlencode({"server": stack.server.ws_url, "user": USER})

    good, bad = run_browser(
        f"{page_url}?{query}",
        [
            {"user": USER, "password": PASSWORD},
            {"user": USER, "password": "not-the-password"},
        ],
    )

    assert "failure" not in good, good
    assert good["connection"]["state"] == "ok", good
    assert good["roundTrip"]["state"] == "ok", good
    assert good["roundTrip"]["text"].startswith("round trip ok"), good
    assert f"users.{USER}.hello" in good["roundTrip"]["text"]
    assert good["violation"]["state"] == "ok", good
    assert "PERMISSIONS_VIOLATION" in good["violation"]["text"], good
    assert f'publish to "{OTHER_SUBJECT}"' in good["violation"]["text"], good
    assert not [line for line in good["console"] if line.startswith("pageerror")]
    assert "failure" not in bad, bad
    assert bad["connection"]["state"] == "error", bad
    assert "authorization violation" in bad["connection"]["text"].lower(), bad
    decisions = [
        (r["decision"], r.get("client_type"), r.get("reason"))
        for r in stack.service.events()
        if r.get("user") == USER
    ]
    assert decisions == [
        ("allow", "websocket", None),
        ("deny", "websocket", "bad_password"),
    ]
