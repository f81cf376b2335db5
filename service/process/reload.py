"""
Policy hot reload: on SIGHUP and when the policy file changes.

Why polling and not inotify: a Kubernetes ConfigMap update swaps the `..data`
symlink (the file the path first resolved to never changes), editors save by
renaming a new file over the old one, and network filesystems send no events
at all. Every `POLL_INTERVAL` the watcher looks at what the path resolves to
*now* (inode, mtime, size and a SHA-256 of the bytes) on a thread, which sees
all three cases, needs no dependency, and never blocks the event loop even on
a hung mount.

A change is acted on once the file has stayed the same for one interval
(debounce: a writer may still be writing). The new policy is parsed,
validated and its signers are built on a thread, exactly as at startup, and
then handed to `install` in one assignment. On any error the old policy stays
in force and `callout.policy_reload_failed` lists each `file:line: message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from service.errors import ConfigError, PolicyError
from service.signers import Loaded, load

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from service.config import Keys, Settings
    from service.ops.metrics import Metrics
    from service.policy import Policy

log = structlog.get_logger("callout")

POLL_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class Stamp:
    """What identifies one version of the file behind a path."""

    device: int
    inode: int
    mtime_ns: int
    size: int
    digest: str


def stamp(path: Path) -> Stamp | None:
    """The path's current stamp (following symlinks), None when unreadable."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256(data).hexdigest()
    return Stamp(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, digest)


class Reloader:
    """
    Reloads the policy on request and watches its file.

    Args:
        current: The policy in force now.
        install: Puts a new policy and its signers in force (synchronous, so
            the swap cannot interleave with anything on the event loop).
    """

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        *,
        current: Callable[[], Policy],
        install: Callable[[Loaded], None],
        metrics: Metrics,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._current = current
        self._install = install
        self._metrics = metrics
        self._interval = interval
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._failed = False

    def request(self, trigger: str) -> None:
        """Reload soon (safe from a signal handler); reloads run one at a time."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, trigger: str) -> bool:
        """
        Load, validate and install the policy file; True when installed.

        A file-triggered reload whose content equals the policy in force is
        a no-op (a `touch`, or a save without changes).
        """
        async with self._lock:
            old = self._current().version_hash
            loop = asyncio.get_running_loop()
            try:
                loaded = await loop.run_in_executor(
                    None, load, self._settings, self._keys
                )
            except PolicyError as exc:
                self._refused(trigger, old, exc.problems)
                return False
            except ConfigError as exc:
                self._refused(trigger, old, [str(exc)])
                return False
            except Exception as exc:  # noqa: BLE001 - a reload must never kill the watcher
                # only the type: an unexpected message might quote file content
                self._refused(trigger, old, [f"unexpected {type(exc).__name__}"])
                return False
            new = loaded.policy.version_hash
            if trigger == "file" and new == old and not self._failed:
                return False
            self._install(loaded)
            self._failed = False
            self._metrics.reloads.labels("success").inc()
            log.info(
                "callout.policy_reloaded",
                trigger=trigger,
                old_version=old,
                new_version=new,
                changed=new != old,
                users=len(loaded.policy.users),
                policy_version=new,
            )
            return True

    def _refused(self, trigger: str, old: str, problems: list[str]) -> None:
        self._failed = True
        self._metrics.reloads.labels("failure").inc()
        log.error(
            "callout.policy_reload_failed",
            trigger=trigger,
            problems=problems,
            policy_version=old,
            kept="old policy",
        )

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll the policy file until `stop`; reload after each settled change."""
        path = self._settings.policy_file
        seen = await asyncio.to_thread(stamp, path)
        # a change between the startup load and now must not be missed
        dirty = seen is None or f"sha256:{seen.digest}" != self._current().version_hash
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await stop.wait()
                break
            now = await asyncio.to_thread(stamp, path)
            if now != seen:
                seen, dirty = now, True  # wait for one quiet interval
            elif dirty:
                dirty = False
                await self.reload("file")

    async def close(self) -> None:
        """Cancel reloads still queued (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
