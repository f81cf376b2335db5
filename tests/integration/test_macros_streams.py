"""
The `streams` macro and the traps no subject permission can close, against
nats-server 2.15.1 with JetStream (docs/policy.md "JetStream, KV and inboxes").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

import pytest
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from tests.integration import jsenv

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from nats.aio.msg import Msg

USERS = """\
  - {name: worker, PASSWORD, streams: {ORDERS: {consume: [work]}}}
  - {name: shop, PASSWORD, streams: {ORDERS: {publish: ["orders.>"]}}}
  - {name: ops, PASSWORD, streams: {MGD: {manage: account-trust}}}
  - {name: anyone, PASSWORD, streams: {ORDERS: {consume: any}}}
  - {name: reader, PASSWORD, kv: {cfg: read}}
  - {name: writer, PASSWORD, kv: {cfg: write}}
  - {name: getter, PASSWORD, object_stores: {files: read}}
"""


@pytest.fixture(name="server_env", scope="module")
def _server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[jsenv.Env]:
    directory = tmp_path_factory.mktemp("macros-streams")
    yield from jsenv.start(directory, jsenv.policy_text(USERS))


@pytest.fixture(name="env")
async def _env(server_env: jsenv.Env) -> AsyncIterator[jsenv.Env]:
    root = await server_env.login("root")
    await root.js.add_stream(name="ORDERS", subjects=["orders.>"])
    await root.js.add_consumer("ORDERS", ConsumerConfig(durable_name="work"))
    kv = await root.js.create_key_value(bucket="cfg", direct=True)
    await kv.put("a", b"1")
    await kv.put("b", b"2")
    yield server_env
    for stream in ("ORDERS", "MGD", "OTHER", "KV_cfg", "OBJ_files"):
        with contextlib.suppress(NotFoundError):
            await root.js.delete_stream(stream)
    await server_env.close()


async def test_consumer_fetches_and_acks_its_durable_only(env: jsenv.Env) -> None:
    """`consume: [work]` fetches and acks from work; no other consumer, no admin."""
    root = await env.login("root")
    await root.js.publish("orders.1", b"first")
    worker = await env.login("worker")

    sub = await worker.js.pull_subscribe("orders.>", durable="work", stream="ORDERS")
    [msg] = await sub.fetch(1, timeout=2)
    await msg.ack_sync(timeout=2)
    info = await root.js.consumer_info("ORDERS", "work")
    js = worker.js
    other = await worker.refused(
        js.add_consumer("ORDERS", ConsumerConfig(durable_name="mine")),
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.mine",
    )
    deleted = await worker.refused(
        js.delete_stream("ORDERS"), "$JS.API.STREAM.DELETE.ORDERS"
    )
    purged = await worker.refused(
        js.purge_stream("ORDERS"), "$JS.API.STREAM.PURGE.ORDERS"
    )

    assert msg.data == b"first"
    assert info.ack_floor.stream_seq == 1
    assert other
    assert deleted
    assert purged


async def test_publisher_gets_the_publish_ack(env: jsenv.Env) -> None:
    """`publish: [orders.>]` publishes to the stream and gets its ack."""
    shop = await env.login("shop")

    ack = await shop.js.publish("orders.2", b"paid")
    elsewhere = await shop.refused(shop.js.publish("invoices.2", b"x"), "invoices.2")

    assert ack.stream == "ORDERS"
    assert ack.seq >= 1
    assert elsewhere


async def test_manage_creates_updates_deletes_that_stream_only(env: jsenv.Env) -> None:
    """`manage: account-trust` creates, updates and deletes MGD, not ORDERS."""
    ops = await env.login("ops")
    js = ops.js

    await js.add_stream(name="MGD", subjects=["mgd.>"])
    updated = await js.update_stream(name="MGD", subjects=["mgd.>"], max_msgs=10)
    deleted = await js.delete_stream("MGD")
    orders = await ops.refused(
        js.delete_stream("ORDERS"), "$JS.API.STREAM.DELETE.ORDERS"
    )
    other = await ops.refused(
        js.add_stream(name="OTHER", subjects=["other.>"]),
        "$JS.API.STREAM.CREATE.OTHER",
    )

    assert updated.config.max_msgs == 10
    assert deleted is True
    assert orders
    assert other


async def test_account_trust_levels_are_flagged_by_check(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` accepts the account-trust levels but warns with file:line."""
    from service.cli import main  # noqa: PLC0415

    path = tmp_path / "policy.yaml"  # type: ignore[operator]
    path.write_text(jsenv.policy_text(USERS))

    code = main(["check", str(path)])
    err = capsys.readouterr().err

    assert code == 0
    assert f"{path}:9: users[3].streams.MGD.manage:" in err
    assert "ACCOUNT TRUST" in err


async def test_consume_any_and_the_deliver_subject_trap(env: jsenv.Env) -> None:
    """A consumer creator makes the server push the stream to a subject it names."""
    root = await env.login("root")
    await root.js.publish("orders.3", b"for the victim")
    victim: asyncio.Queue[Msg] = asyncio.Queue()
    await root.nc.subscribe("users.victim.inbox", cb=victim.put)
    await root.nc.flush()
    anyone = await env.login("anyone")

    await anyone.js.add_consumer(
        "ORDERS",
        ConsumerConfig(name="push", deliver_subject="users.victim.inbox"),
    )
    async with asyncio.timeout(3):
        pushed = await victim.get()

    # it arrived on the victim's subscription; the ack subject names the consumer
    assert pushed.data == b"for the victim"
    assert pushed.reply.startswith("$JS.ACK.ORDERS.push.")


async def test_kv_reader_watch_consumer_has_the_same_trap(env: jsenv.Env) -> None:
    """A KV reader's bare CONSUMER.CREATE names any deliver subject too."""
    root = await env.login("root")
    pushed: asyncio.Queue[Msg] = asyncio.Queue()
    await root.nc.subscribe("users.victim.kv", cb=pushed.put)
    await root.nc.flush()
    reader = await env.login("reader")

    body = {
        "stream_name": "KV_cfg",
        "config": {"deliver_subject": "users.victim.kv", "ack_policy": "none"},
    }
    reply = await reader.nc.request(
        "$JS.API.CONSUMER.CREATE.KV_cfg", json.dumps(body).encode(), timeout=2
    )
    async with asyncio.timeout(3):
        first = await pushed.get()

    assert "error" not in json.loads(reply.data)
    assert first.subject == "$KV.cfg.a"  # the bucket's subject, on the victim's sub


async def test_kv_reader_reads_the_whole_bucket_by_revision(env: jsenv.Env) -> None:
    """Get by sequence (direct and not) is not scoped to keys: it is the bucket."""
    reader = await env.login("reader")

    direct = await reader.js.get_msg("KV_cfg", seq=1, direct=True)
    stored = await reader.js.get_msg("KV_cfg", seq=2)

    assert direct.subject == "$KV.cfg.a"
    assert stored.subject == "$KV.cfg.b"


async def test_kv_writer_can_roll_up_the_whole_bucket(env: jsenv.Env) -> None:
    """One put with `Nats-Rollup: all` leaves only that key in the bucket."""
    writer = await env.login("writer")

    await writer.js.publish("$KV.cfg.c", b"3", headers={"Nats-Rollup": "all"})
    keys = await (await writer.js.key_value("cfg")).keys()

    assert keys == ["c"]


async def test_object_reader_lists_every_stream_name(env: jsenv.Env) -> None:
    """`$JS.API.STREAM.NAMES`, which object get needs, names all streams."""
    root = await env.login("root")
    await root.js.create_object_store("files")
    getter = await env.login("getter")

    reply = await getter.nc.request("$JS.API.STREAM.NAMES", b"{}", timeout=2)

    assert {"ORDERS", "KV_cfg", "OBJ_files"} <= set(json.loads(reply.data)["streams"])
