"""
The `kv`, `object_stores` and `inbox` macros against nats-server 2.15.1 with
JetStream, through nats-py's KV and object-store clients (docs/policy.md
"JetStream, KV and inboxes").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

import pytest
from nats.js.errors import NotFoundError

from tests.integration import jsenv

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from nats.js.api import StreamConfig

USERS = """\
  - {name: reader, PASSWORD, kv: {cfg: read}}
  - {name: writer, PASSWORD, kv: {cfg: write}}
  - {name: keeper, PASSWORD, kv: {own: admin-account-trust}}
  - {name: alice, PASSWORD, roles: [personal]}
  - {name: bob, PASSWORD, roles: [personal]}
  - {name: getter, PASSWORD, object_stores: {files: read}}
  - {name: putter, PASSWORD, object_stores: {files: write}}
"""
ROLES = '{personal: {inbox: private, kv: {"user-{{user}}": write}}}'


@pytest.fixture(name="server_env", scope="module")
def _server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jsenv.Env]:
    directory = tmp_path_factory.mktemp("macros-kv")
    yield from jsenv.start(directory, jsenv.policy_text(USERS, ROLES))


@pytest.fixture(name="env")
async def _env(server_env: jsenv.Env) -> AsyncIterator[jsenv.Env]:
    root = await server_env.login("root")
    for bucket in ("cfg", "other", "user-alice", "user-bob"):
        kv = await root.js.create_key_value(bucket=bucket)
        await kv.put("greeting", b"hello")
    await root.js.create_object_store("files")
    await root.js.create_object_store("secret-files")
    yield server_env
    streams = ("KV_cfg", "KV_other", "KV_user-alice", "KV_user-bob", "KV_own")
    for stream in (*streams, "OBJ_files", "OBJ_secret-files"):
        with contextlib.suppress(NotFoundError):  # KV_own: only some tests
            await root.js.delete_stream(stream)
    await server_env.close()


async def test_kv_read_gets_and_watches_but_cannot_write(env: jsenv.Env) -> None:
    """`read` gets and watches its bucket; put and delete are refused."""
    reader = await env.login("reader")
    kv = await reader.js.key_value("cfg")

    entry = await kv.get("greeting")
    watcher = await kv.watchall()
    seen = await watcher.updates(timeout=2)  # type: ignore[no-untyped-call]
    put = await reader.refused(kv.put("greeting", b"changed"), "$KV.cfg.greeting")
    deleted = await reader.refused(kv.delete("greeting"), "$KV.cfg.greeting")

    assert entry.value == b"hello"
    assert seen is not None
    assert seen.value == b"hello"
    assert "publish" in put
    assert "publish" in deleted


async def test_kv_write_puts_and_deletes(env: jsenv.Env) -> None:
    """`write` can put and delete keys of its bucket."""
    writer = await env.login("writer")
    kv = await writer.js.key_value("cfg")

    revision = await kv.put("greeting", b"changed")
    await kv.put("kept", b"yes")
    await kv.delete("greeting")
    keys = await kv.keys()

    assert revision > 1
    assert keys == ["kept"]


async def test_kv_levels_cannot_touch_other_buckets_or_manage(env: jsenv.Env) -> None:
    """Neither read nor write reaches another bucket or creates/deletes one."""
    for user in ("reader", "writer"):
        session = await env.login(user)
        js = session.js

        await session.refused(js.key_value("other"), "$JS.API.STREAM.INFO.KV_other")
        await session.refused(
            js.create_key_value(bucket="cfg2"), "$JS.API.STREAM.CREATE.KV_cfg2"
        )
        await session.refused(
            js.delete_key_value("cfg"), "$JS.API.STREAM.DELETE.KV_cfg"
        )
        await session.refused(
            session.nc.request("$KV.other.greeting", b"x", timeout=jsenv.DENIED_WAIT),
            "$KV.other.greeting",
        )


async def test_kv_admin_creates_and_deletes_its_bucket_only(env: jsenv.Env) -> None:
    """`admin-account-trust` creates and deletes its own bucket, no other."""
    keeper = await env.login("keeper")
    js = keeper.js

    kv = await js.create_key_value(bucket="own")
    await kv.put("k", b"v")
    deleted = await js.delete_key_value("own")
    other = await keeper.refused(
        js.delete_key_value("cfg"), "$JS.API.STREAM.DELETE.KV_cfg"
    )
    created = await keeper.refused(
        js.create_key_value(bucket="own2"), "$JS.API.STREAM.CREATE.KV_own2"
    )

    assert deleted is True
    assert other
    assert created


async def test_a_user_bucket_is_private_to_its_user(env: jsenv.Env) -> None:
    """`kv: {"user-{{user}}": write}` lets alice use her bucket and not bob's."""
    alice = await env.login("alice")

    mine = await alice.js.key_value("user-alice")
    await mine.put("note", b"mine")
    theirs = await alice.refused(
        alice.js.key_value("user-bob"), "$JS.API.STREAM.INFO.KV_user-bob"
    )
    direct = await alice.refused(
        alice.nc.request(
            "$JS.API.DIRECT.GET.KV_user-bob.$KV.user-bob.greeting",
            b"",
            timeout=jsenv.DENIED_WAIT,
        ),
        "$JS.API.DIRECT.GET.KV_user-bob.$KV.user-bob.greeting",
    )

    assert (await mine.get("note")).value == b"mine"
    assert theirs
    assert direct


async def test_object_read_gets_and_write_puts(env: jsenv.Env) -> None:
    """Object store `write` puts, `read` gets; another bucket is refused."""
    putter = await env.login("putter")
    getter = await env.login("getter")

    store = await putter.js.object_store("files")
    await store.put("report.txt", b"quarterly numbers" * 1000)
    read = await (await getter.js.object_store("files")).get("report.txt")
    put = await getter.refused(
        (await getter.js.object_store("files")).put("x.txt", b"no"),
        "$O.files.C.",
    )
    other = await getter.refused(
        getter.js.object_store("secret-files"), "$JS.API.STREAM.INFO.OBJ_secret-files"
    )

    assert read.data == b"quarterly numbers" * 1000
    assert put
    assert other


async def test_private_inboxes_request_reply_and_isolation(env: jsenv.Env) -> None:
    """Two users' requests at once both get answers; alice cannot read bob's inbox."""
    alice, bob = await env.login("alice"), await env.login("bob")

    await alice.nc.subscribe("_INBOX_bob.>")
    violation = await alice.violation("_INBOX_bob.>")
    await alice.nc.subscribe("_INBOX.>")
    shared = await alice.violation("_INBOX.>")
    # a KV put is a request: JetStream answers it on the requester's inbox
    mine, theirs = await asyncio.gather(
        alice.nc.request("$KV.user-alice.n", b"a", timeout=3),
        bob.nc.request("$KV.user-bob.n", b"b", timeout=3),
    )

    assert "subscription" in violation
    assert "subscription" in shared
    assert mine.subject.startswith("_INBOX_alice.")
    assert theirs.subject.startswith("_INBOX_bob.")
    assert json.loads(mine.data)["stream"] == "KV_user-alice"
    assert json.loads(theirs.data)["stream"] == "KV_user-bob"


async def test_the_escalation_trap_is_real_so_admin_is_account_trust(
    env: jsenv.Env,
) -> None:
    """A stream-admin re-creates its bucket on users.> and reads others' traffic."""
    keeper = await env.login("keeper")
    kv = await keeper.js.create_key_value(bucket="own")
    info = await keeper.js.stream_info("KV_own")
    config: StreamConfig = info.config
    config.subjects = [*(config.subjects or []), "users.>"]

    await keeper.js.update_stream(config)
    root = await env.login("root")
    # a JetStream publish returns once the stream stored it (a core publish
    # and a flush do not wait for the stream's own ingest)
    ack = await root.js.publish("users.victim.private", b"secret")
    got = await keeper.js.get_last_msg("KV_own", "users.victim.private")

    assert ack.stream == "KV_own"
    assert got.data == b"secret"
    assert kv is not None
