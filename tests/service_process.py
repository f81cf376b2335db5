"""Run `python -m service run` (or a script) as a subprocess; read its JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Self

from tests.processes import Managed, stop_process

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

Record = dict[str, Any]


class ServiceProcess(Managed):
    """The service as a real process; stdout is drained into `lines`/`records`."""

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path,
        args: Sequence[str] = ("-m", "service", "run"),
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.args = tuple(args)
        self.lines: list[str] = []
        self.records: list[Record] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, *, wait_for: str | None = "callout.started") -> Self:
        """Start the process and wait until it logs `wait_for`."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CALLOUT_")}
        self._proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=self.cwd,
            env=environ | self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._proc.stdout is not None
        self._reader = threading.Thread(
            target=self._drain, args=(self._proc.stdout,), daemon=True
        )
        self._reader.start()
        if wait_for is not None:
            self.wait_for_event(wait_for, timeout=15)
        return self

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.records.append(record)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Record]], bool], timeout: float = 5.0
    ) -> None:
        """Block until `predicate(records)` holds (event-driven, no polling)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.records):
                remaining = deadline - time.monotonic()
                exited = self._proc is not None and self._proc.poll() is not None
                if remaining <= 0 or (exited and not self._reader_alive()):
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(
                        f"condition not met in {timeout}s; log tail:\n{tail}"
                    )
                self._cond.wait(remaining)

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def wait_for_event(
        self, event: str, timeout: float = 5.0, count: int = 1
    ) -> Record:
        """Wait until `count` records with this event exist; return the last."""
        self.wait_for(
            lambda rs: sum(r.get("event") == event for r in rs) >= count, timeout
        )
        return [r for r in self.records if r.get("event") == event][count - 1]

    def events(self, prefix: str = "callout.request_") -> list[Record]:
        """Records whose event starts with `prefix` (decision lines by default)."""
        with self._cond:
            return [
                r for r in self.records if str(r.get("event", "")).startswith(prefix)
            ]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process and return its exit code."""
        if self._proc is None:
            return 0
        return stop_process(self._proc, self._reader, sig=sig, timeout=timeout)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()
