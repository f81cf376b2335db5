"""Policy reload: file stamps, reload outcomes, and the watcher (real files)."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from service.config import Keys, Settings
from service.ops.metrics import Metrics
from service.policy import Policy, load_policy
from service.process.reload import Reloader, stamp
from service.protocol.nkeys import KeyPair, Prefix
from tests.builders import hash_secret

if TYPE_CHECKING:
    from pathlib import Path

    from service.signers import Loaded

HASH = hash_secret("pw")


def _policy(*users: str) -> str:
    listed = "".join(
        f'  - {{name: {u}, password: "{HASH}", roles: [r]}}\n' for u in users
    )
    return (
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        f"roles: {{r: {{subscribe: {{allow: [a]}}}}}}\nusers:\n{listed}"
    )


class Target:
    """What the reloader installs into: records every installed policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.installed: list[Loaded] = []
        self.changed = asyncio.Event()

    def install(self, loaded: Loaded) -> None:
        self.policy = loaded.policy
        self.installed.append(loaded)
        self.changed.set()


def _reloader(path: Path, **kw: object) -> tuple[Reloader, Target, Metrics]:
    if not path.exists():
        path.write_text(_policy("alice"))
    target, metrics = Target(load_policy(path)), Metrics()
    settings = Settings(policy_file=path, **kw)  # type: ignore[arg-type]
    keys = Keys(issuer=KeyPair.create(Prefix.ACCOUNT), xkey=None)
    reloader = Reloader(
        settings,
        keys,
        current=lambda: target.policy,
        install=target.install,
        metrics=metrics,
        interval=0.01,
    )
    return reloader, target, metrics


def test_stamp_changes_with_content_even_at_equal_size_and_mtime(
    tmp_path: Path,
) -> None:
    """Same size, same mtime, other bytes: still a different stamp."""
    path = tmp_path / "p.yaml"
    path.write_text("aaaa")
    before = stamp(path)
    path.write_text("bbbb")
    assert before is not None
    os.utime(path, ns=(before.mtime_ns, before.mtime_ns))

    after = stamp(path)

    assert after is not None
    assert (before.size, before.mtime_ns) == (after.size, after.mtime_ns)
    assert before != after


def test_stamp_follows_a_symlink_swap(tmp_path: Path) -> None:
    """A ConfigMap-style `..data` swap is seen through the path's symlinks."""
    for name, text in (("v1", "one"), ("v2", "two")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "p.yaml").write_text(text)
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "p.yaml").symlink_to("..data/p.yaml")
    before = stamp(tmp_path / "p.yaml")

    (tmp_path / "tmp").symlink_to("v2")
    (tmp_path / "tmp").replace(tmp_path / "..data")
    after = stamp(tmp_path / "p.yaml")

    assert before is not None
    assert after is not None
    assert before.inode != after.inode


def test_stamp_of_a_missing_file_is_none(tmp_path: Path) -> None:
    """An unreadable path has no stamp (and reloading it will report why)."""
    assert stamp(tmp_path / "absent.yaml") is None


async def test_reload_installs_a_valid_policy_and_says_so(tmp_path: Path) -> None:
    """A valid change is installed and logged with both versions."""
    path = tmp_path / "policy.yaml"
    reloader, target, metrics = _reloader(path)
    old = target.policy.version_hash
    path.write_text(_policy("alice", "bob"))

    with capture_logs() as logs:
        installed = await reloader.reload("sighup")

    assert installed is True
    assert "bob" in target.installed[0].policy.by_name
    assert set(target.installed[0].signers) == {"APP"}
    assert logs == [
        {
            "event": "callout.policy_reloaded",
            "log_level": "info",
            "trigger": "sighup",
            "old_version": old,
            "new_version": target.policy.version_hash,
            "changed": True,
            "users": 2,
            "policy_version": target.policy.version_hash,
        }
    ]
    assert metrics.reloads.labels("success")._value.get() == 1


async def test_reload_keeps_the_old_policy_on_error(tmp_path: Path) -> None:
    """An invalid policy is refused with file:line problems; nothing is installed."""
    path = tmp_path / "policy.yaml"
    reloader, target, metrics = _reloader(path)
    old = target.policy.version_hash
    path.write_text(_policy("alice").replace("roles: [r]", "roles: [missing]"))

    with capture_logs() as logs:
        installed = await reloader.reload("file")

    assert installed is False
    assert target.installed == []
    assert logs[0]["event"] == "callout.policy_reload_failed"
    assert logs[0]["log_level"] == "error"
    assert logs[0]["policy_version"] == old
    assert logs[0]["problems"][0].startswith(f"{path}:6: ")
    assert metrics.reloads.labels("failure")._value.get() == 1


async def test_operator_key_problems_are_refused_too(tmp_path: Path) -> None:
    """Signers are rebuilt on reload: a missing signing key file is refused."""
    path = tmp_path / "policy.yaml"
    account = KeyPair.create(Prefix.ACCOUNT).public_key
    operator = _policy("alice").replace(
        "accounts: {APP: {}}",
        f"accounts: {{APP: {{public_key: {account}, signing_key_file: gone.nk}}}}",
    )
    path.write_text(operator)
    reloader, _, _ = _reloader(path, mode="operator")

    with capture_logs() as logs:
        installed = await reloader.reload("sighup")

    assert installed is False
    assert "gone.nk" in logs[0]["problems"][0]


async def test_an_unchanged_file_is_not_reinstalled(tmp_path: Path) -> None:
    """A touch (same bytes) is a no-op for the watcher, but not for SIGHUP."""
    path = tmp_path / "policy.yaml"
    reloader, _, _ = _reloader(path)

    with capture_logs() as logs:
        by_file = await reloader.reload("file")
        by_signal = await reloader.reload("sighup")

    assert (by_file, by_signal) == (False, True)
    assert [entry["changed"] for entry in logs] == [False]


async def test_watch_reloads_after_a_change_settles(tmp_path: Path) -> None:
    """The watcher installs an edited file without any signal."""
    path = tmp_path / "policy.yaml"
    reloader, target, _ = _reloader(path)
    stop = asyncio.Event()
    watching = asyncio.create_task(reloader.watch(stop))

    path.write_text(_policy("alice", "carol"))
    async with asyncio.timeout(5):
        await target.changed.wait()
    stop.set()
    await watching

    assert len(target.installed) == 1
    assert "carol" in target.policy.by_name


async def test_watch_catches_a_change_made_before_it_started(tmp_path: Path) -> None:
    """If the file changed between the startup load and the watch, it reloads."""
    path = tmp_path / "policy.yaml"
    reloader, target, _ = _reloader(path)
    path.write_text(_policy("alice", "dave"))
    stop = asyncio.Event()

    watching = asyncio.create_task(reloader.watch(stop))
    async with asyncio.timeout(5):
        await target.changed.wait()
    stop.set()
    await watching

    assert "dave" in target.policy.by_name


async def test_request_runs_in_the_background_and_close_cancels(tmp_path: Path) -> None:
    """request() (the SIGHUP handler) schedules a reload; close() ends pending ones."""
    path = tmp_path / "policy.yaml"
    reloader, target, _ = _reloader(path)
    path.write_text(_policy("alice", "erin"))

    reloader.request("sighup")
    async with asyncio.timeout(5):
        await target.changed.wait()
    await reloader.close()

    assert "erin" in target.policy.by_name


@pytest.fixture(autouse=True)
def _no_callout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CALLOUT_"):
            monkeypatch.delenv(name)
