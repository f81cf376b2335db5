"""Permission macros: known-answer expansions, merging, check, explain and docs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ruamel.yaml import YAML

from service.cli import main
from service.errors import PolicyError
from service.policy import Allow, describe, parse_policy
from service.policy.macros import Macros, expand
from service.protocol.enforcement import can_publish, can_subscribe

if TYPE_CHECKING:
    from service.policy.loader import Policy

DOCS = Path(__file__).parents[2] / "docs" / "policy.md"
NKEY = "UDQGTOOC4TNGQWX4L2YERZQ6D6HCRPVTQIMDIZVGRNZ3N2TS7QBWILPU"
HEAD = "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"


def _macros(text: str) -> Macros:
    return Macros.model_validate(YAML(typ="safe").load(text))


def _policy(user: str, roles: str = "{}") -> Policy:
    return parse_policy(
        f"{HEAD}roles: {roles}\nusers:\n  - {{name: bob, nkey: {NKEY}, {user}}}\n"
    )


def test_consume_named_expands_to_exactly_these_subjects() -> None:
    """A named consumer gives info, next, both ack forms, flow control, the inbox."""
    out = expand(_macros("streams: {ORDERS: {consume: [work]}}"))

    assert out.subjects("pub") == (
        "$JS.API.CONSUMER.INFO.ORDERS.work",
        "$JS.API.CONSUMER.MSG.NEXT.ORDERS.work",
        "$JS.ACK.ORDERS.work.>",
        "$JS.ACK.*.*.ORDERS.work.>",
        "$JS.FC.ORDERS.>",
        "$JS.FC.*.*.ORDERS.>",
    )
    assert out.subjects("sub") == ("_INBOX_{{user}}.>",)
    assert out.subjects("sub_deny") == ()


def test_kv_read_has_no_write_or_stream_admin() -> None:
    """KV read grants no `$KV` publish and no stream create/delete."""
    pub = expand(_macros("kv: {cfg: read}")).subjects("pub")

    assert "$JS.API.DIRECT.GET.KV_cfg.$KV.cfg.>" in pub
    assert "$JS.API.CONSUMER.CREATE.KV_cfg" in pub
    assert not any(s.startswith("$KV.") for s in pub)
    assert not any(".STREAM.CREATE." in s or ".STREAM.DELETE." in s for s in pub)


def test_inbox_private_allows_its_prefix_and_denies_the_shared_one() -> None:
    """`inbox: private` wins over a role's `_INBOX.>` and says the client option."""
    roles = '{r: {subscribe: {allow: ["_INBOX.>"]}}}'
    grant = _policy("inbox: private, roles: [r]", roles).by_name["bob"].grant

    assert grant is not None
    assert grant.sub.allow == ("_INBOX_bob.>",)
    assert "_INBOX.>" in grant.sub.deny
    assert can_subscribe(grant.sub, "_INBOX_bob.abc.*", "")
    assert not can_subscribe(grant.sub, "_INBOX_alice.>", "")
    assert not can_subscribe(grant.sub, "_INBOX.abc", "")
    assert "inbox_prefix" in grant.notes[0]
    assert "_INBOX_bob" in grant.notes[0]


def test_templates_render_and_an_explicit_deny_wins() -> None:
    """`user-{{user}}` becomes bob's bucket; a written deny removes a macro subject."""
    grant = (
        _policy('kv: {"user-{{user}}": write}, publish: {deny: ["$KV.user-bob.>"]}')
        .by_name["bob"]
        .grant
    )

    assert grant is not None
    assert "$JS.API.STREAM.INFO.KV_user-bob" in grant.pub.allow
    assert "$KV.user-bob.>" not in grant.pub.allow
    assert not can_publish(grant.pub, "$KV.user-bob.key")


def test_both_ack_forms_pass_the_servers_publish_check() -> None:
    """The v1 and v2 (js_ack_fc_v2) ack subjects of the consumer are allowed."""
    grant = _policy("streams: {ORDERS: {consume: [work]}}").by_name["bob"].grant

    assert grant is not None
    assert can_publish(grant.pub, "$JS.ACK.ORDERS.work.1.5.5.1700000000.0")
    assert can_publish(grant.pub, "$JS.ACK._.Hx.ORDERS.work.1.5.5.17000.0.tok")
    assert not can_publish(grant.pub, "$JS.ACK.ORDERS.other.1.5.5.1700000000.0")


@pytest.mark.parametrize(
    ("user", "line_text"),
    [
        ("inbox: shared", "inbox: input should be 'private'"),
        ('kv: {"a.b": read}', 'kv["a.b"]: unsafe bucket name'),
        ("kv: {cfg: owner}", "kv.cfg: input should be"),
        ("kv: {cfg: admin}", "Write `admin-account-trust`"),
        ("streams: {1x: {consume: any}}", "starting with a letter"),
        ("streams: {S: {publish: true}}", "publish needs the stream's subjects"),
        ("streams: {S: {manage: true}}", "Write `account-trust`"),
        ("streams: {S: {}}", "give at least one of publish, consume, manage"),
        ('object_stores: {"o>": read}', "unsafe bucket name"),
    ],
)
def test_check_refuses_bad_macros_with_their_line(user: str, line_text: str) -> None:
    """Each bad level or name is a load error on the user's line."""
    with pytest.raises(PolicyError) as caught:
        _policy(user)

    assert re.search(r"<policy>:6: users\[0\]\.", str(caught.value))
    assert line_text in str(caught.value)


def test_account_trust_levels_load_with_a_warning() -> None:
    """`admin-account-trust` loads, and the policy carries a located warning."""
    policy = _policy("kv: {cfg: admin-account-trust}")

    expected = (
        "<policy>:6: users[0].kv.cfg: kv cfg: ACCOUNT TRUST: can re-create the "
        "stream on any subject and read everyone's traffic in the account"
    )
    assert policy.warnings == (expected,)


def test_check_json_lists_the_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --format json` keeps its keys and adds `warnings`."""
    path = tmp_path / "p.yaml"
    path.write_text(
        f"{HEAD}users:\n  - {{name: bob, nkey: {NKEY},"
        " streams: {S: {manage: account-trust}}}\n"
    )

    assert main(["check", "--format", "json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)

    assert report["ok"] is True
    assert report["problems"] == []
    assert report["warnings"][0].startswith(f"{path}:5: users[0].streams.S.manage:")


def test_explain_shows_each_subjects_macro_and_the_notes() -> None:
    """The view maps subjects to macros and keeps the other keys as they were."""
    principal = _policy("object_stores: {files: read}").by_name["bob"]
    assert principal.grant is not None
    view = describe(
        Allow(
            user="bob",
            account="APP",
            grant=principal.grant,
            expires_at=0,
            connection_types=(),
            source_networks=(),
            identity="nkey",
        )
    )

    macros = view["macros"]
    assert isinstance(macros, dict)
    assert macros["publish"]["$JS.API.STREAM.NAMES"] == ["object_stores.files: read"]
    assert macros["subscribe"] == {"_INBOX_bob.>": ["jetstream replies"]}
    assert any("STREAM.NAMES lists" in note for note in macros["notes"])
    assert list(view)[:10] == [
        "decision",
        "user",
        "account",
        "reason",
        "identity",
        "expires_at",
        "permissions",
        "connection_types",
        "source_networks",
        "macros",
    ]


def test_a_policy_without_macros_explains_without_the_section() -> None:
    """No macro, no `macros` key: existing views keep their shape."""
    principal = parse_policy(
        f"{HEAD}users:\n  - {{name: bob, nkey: {NKEY}, publish: {{allow: [a]}}}}\n"
    ).by_name["bob"]
    assert principal.grant is not None

    view = describe(
        Allow(
            user="bob",
            account="APP",
            grant=principal.grant,
            expires_at=0,
            connection_types=(),
            source_networks=(),
            identity="nkey",
        )
    )

    assert "macros" not in view


def _documented() -> list[tuple[str, str]]:
    section = DOCS.read_text(encoding="utf-8").split("\n## JetStream, KV and inboxes\n")
    body = section[1].split("\n## ", 1)[0]
    pairs = re.findall(r"```yaml\n(.*?)```\n\n```text\n(.*?)```", body, re.DOTALL)
    return [(str(a), str(b)) for a, b in pairs]


def test_the_docs_show_every_macro_with_its_exact_expansion() -> None:
    """Each documented example expands exactly as shown, and all four keys appear."""
    pairs = _documented()

    for example, shown in pairs:
        entries = expand(_macros(example)).entries
        assert shown == "".join(f"{k:<8} {s}\n" for k, s, _ in entries), example
    keys = {next(iter(YAML(typ="safe").load(example))) for example, _ in pairs}
    assert keys == set(Macros.model_fields)
    assert len(pairs) >= 10
