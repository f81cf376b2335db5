"""
`run --workers N`: N ordinary worker processes, one supervising parent.

One Python process decides on one core (the GIL); bcrypt alone uses every
core from one process, but cached decisions, JSON and signatures do not.
N workers in the same queue group let nats-server spread requests over
them. Each child is exactly `nats-auth-callout run` with CALLOUT_WORKERS=1
(its own connection, HTTP endpoint and reload watcher; the verification
cache is shared through the parent, service/cachepeers.py); the parent
holds no NATS connection and decides nothing. It:

- forwards SIGTERM, SIGINT and SIGHUP to every child (a terminal's Ctrl-C
  reaches the children directly as well; a second SIGINT changes nothing);
- restarts a child that exits on its own, after a pause that doubles while
  it keeps failing fast (up to `MAX_PAUSE`), except a startup error (exit 2,
  e.g. an unreadable policy): restarting will not help, so all stop and the
  parent exits 2;
- after SIGTERM/SIGINT waits for the children to drain, then exits 0 when
  every child did, else 1. A child that outlives its own shutdown grace by
  `KILL_AFTER` seconds is killed.

Child k's log lines carry `worker: k`. With CALLOUT_HTTP_LISTEN host:P
(P > 0), child k listens on P + k; port 0 gives each a free port (logged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from service.config import worker_environment, worker_seat
from service.dispatch.cachepeers import Hub

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

    from service.config import Settings

EXIT_USAGE = 2
KILL_AFTER = 10.0
FIRST_PAUSE, MAX_PAUSE = 0.5, 30.0
STABLE = 10.0  # seconds: a child that ran this long starts again with no pause
_FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

log = structlog.get_logger("callout")


def bind_worker_index() -> None:
    """In a child: every log line from here on carries `worker: k`."""
    index = worker_seat().index
    if index is not None:
        structlog.contextvars.bind_contextvars(worker=index)


def http_listen(listen: str, index: int) -> str:
    """Child `index`'s CALLOUT_HTTP_LISTEN: port + index, port 0 as is, off as is."""
    if not listen:
        return listen
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return listen
    return f"{host}:{int(port) + index}"


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    pause: float = 0.0
    told_to_stop: bool = False


class Supervisor:
    """Start `workers` children and keep them running until told to stop."""

    def __init__(
        self, settings: Settings, workers: int, env_file: Path | None = None
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.argv = [sys.executable, "-m", "service", "run"]
        if env_file is not None:
            self.argv += ["--env-file", str(env_file)]
        self.children: dict[int, _Child] = {}
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.peers = Hub()  # one verification cache for all the workers

    def _spawn(self, index: int, pause: float = 0.0) -> _Child:
        channel = self.peers.channel(index)
        env = worker_environment(
            index, channel.fileno(), http_listen(self.settings.http_listen, index)
        )
        with channel:  # the child has its copy once started
            proc = subprocess.Popen(  # noqa: S603 - our own command
                self.argv, env=env, pass_fds=(channel.fileno(),)
            )
        child = _Child(index, proc, time.monotonic(), pause)
        self.children[index] = child
        log.info("callout.worker_started", worker=index, pid=proc.pid)
        return child

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        stop = signum != signal.SIGHUP
        if stop:
            self.stopping.set()
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signum)
                child.told_to_stop |= stop
        self.wake.set()

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; the exit code for the parent."""
        for signum in _FORWARD:
            signal.signal(signum, self._signal)
        log.info("callout.supervisor_started", workers=self.workers, pid=os.getpid())
        for index in range(self.workers):
            self._spawn(index)
        code = 0
        while not self.stopping.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            code = self._reap()
            if code == EXIT_USAGE:
                self._signal(signal.SIGTERM, None)
        return self._drain(code)

    def _reap(self) -> int:
        """Restart children that exited on their own; EXIT_USAGE to give up."""
        for index, child in list(self.children.items()):
            returncode = child.proc.poll()
            if returncode is None or self.stopping.is_set():
                continue
            log.warning(
                "callout.worker_exited",
                worker=index,
                pid=child.proc.pid,
                code=returncode,
            )
            if returncode == EXIT_USAGE:
                return EXIT_USAGE
            ran = time.monotonic() - child.started
            pause = (
                0.0
                if ran >= STABLE
                else min(MAX_PAUSE, max(FIRST_PAUSE, child.pause * 2))
            )
            if self.stopping.wait(pause):
                return 0
            self._spawn(index, pause)
        return 0

    def _drain(self, code: int) -> int:
        # a child started while the signal was being forwarded missed it (a
        # second SIGTERM could reach one whose handlers are already gone)
        for child in self.children.values():
            if not child.told_to_stop and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + KILL_AFTER
        for child in self.children.values():
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # a hung child, not an exception: no traceback to show
                log.error("callout.worker_killed", worker=child.index)  # noqa: TRY400
                child.proc.kill()
                child.proc.wait()
        codes = [child.proc.returncode for child in self.children.values()]
        if code == 0 and any(codes):
            code = 1
        self.peers.close()
        log.info("callout.supervisor_stopped", codes=codes, code=code)
        return code
