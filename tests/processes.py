"""What the test harness's subprocess wrappers share: stopping, and `with` blocks."""

from __future__ import annotations

import signal
import subprocess
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    import threading
    from types import TracebackType


def stop_process(
    proc: subprocess.Popen[str],
    reader: threading.Thread | None,
    *,
    sig: int = signal.SIGTERM,
    timeout: float,
) -> int:
    """
    Send `sig` if `proc` still runs, SIGKILL it after `timeout` s, then join
    the thread reading its stdout (up to 5 s) and close the pipe.

    Returns:
        The exit code.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if reader is not None:
        reader.join(5)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


class Managed(ABC):
    """A process wrapper usable as `with X(...) as x:` -- start, then stop."""

    @abstractmethod
    def start(self) -> Self:
        """Start the process; return self."""

    @abstractmethod
    def stop(self) -> object:
        """Stop the process (safe to call repeatedly)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
