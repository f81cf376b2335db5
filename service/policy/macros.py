"""
Permission macros: `inbox`, `kv`, `streams`, `object_stores` (docs/policy.md
"JetStream, KV and inboxes").

Each macro expands, at load time, to exact subjects that are merged into the
principal's allow and deny lists like any written entry (templates included,
deny still wins). `expand()` is a pure function of the macro fields; the
subjects are the ones nats-py 2.16 and nats-server 2.15.1 use, and each one
is exercised against a real server in tests/integration/test_macros_*.py.

What no subject permission can scope is said in `NOTES` (shown by `explain`)
and in the docs: a bucket is read whole, a consumer's deliver subject is in
the request body, a KV writer can roll up the whole bucket, and whoever may
create or update a stream may give it any subjects (so that level is named
`…account-trust` and `check` warns about it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.policy.subjects import PubSubject, rule

if TYPE_CHECKING:
    from collections.abc import Iterable

Kind = Literal["pub", "sub", "sub_deny"]
# (list, subject, source): the list is "pub", "sub" or "sub_deny".
Entry = tuple[Kind, str, str]


class _Add(Protocol):
    def __call__(self, kind: Kind, source: str, *subjects: str) -> None: ...


_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
API = "$JS.API"
INBOX_PREFIX = "_INBOX_{{user}}"
TRUST = "account-trust"
# A name as nats-py accepts a bucket name (VALID_BUCKET_RE), templates allowed.
# A stream also starts with a letter: the v2 ack grant `$JS.ACK.*.*.<stream>.…`
# then never matches a v1 ack subject, whose fifth token is a number.
_TEMPLATE = re.compile(r"\{\{\s*(user|account)\s*\}\}")
_BUCKET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STREAM = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, '_' and '-' (at most 64), {{user}}/{{account}} allowed"


def _name_problem(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def problem(value: str) -> str | None:
        plain = _TEMPLATE.sub("x", value)
        if pattern.fullmatch(plain) is None:
            first = ", starting with a letter" if pattern is _STREAM else ""
            return f"unsafe {what} name; use {NAME_RULE}{first}"
        return None

    return rule("unsafe_name", problem)


BucketName = Annotated[str, _name_problem(_BUCKET, "bucket")]
StreamName = Annotated[str, _name_problem(_STREAM, "stream")]
ConsumerName = Annotated[str, _name_problem(_BUCKET, "consumer")]

ESCALATION = (
    "{what} lets the principal create and update the stream, and a stream's "
    "subjects are in the request body, which no permission can scope: it can "
    "re-create the stream on any subject of the account (users.>) and read "
    "everyone's traffic. Write `{trust}` if you trust it that far"
)


def _loud(what: str, trust: str) -> BeforeValidator:
    """A BeforeValidator refusing the quiet spelling of an escalating level."""

    def check(value: object) -> object:
        if value in {"admin", True, "true"}:
            raise PydanticCustomError(
                "account_trust", ESCALATION.format(what=what, trust=trust)
            )
        return value

    return BeforeValidator(check)


KvLevel = Annotated[
    Literal["read", "write", "admin-account-trust"],
    _loud("kv admin", "admin-account-trust"),
]
ObjectLevel = Literal["read", "write"]


def _subjects_not_true(value: object) -> object:
    if value is True or value == "true":
        raise PydanticCustomError(
            "stream_subjects",
            "publish needs the stream's subjects, which the policy cannot know:"
            " list them (publish: [orders.>])",
        )
    return value


class StreamAccess(BaseModel):
    """What a principal may do with one stream."""

    model_config = _CONFIG
    publish: Annotated[tuple[PubSubject, ...], BeforeValidator(_subjects_not_true)] = ()
    consume: tuple[ConsumerName, ...] | Literal["any"] = ()
    manage: Annotated[
        Literal["account-trust"] | None, _loud("stream manage", "account-trust")
    ] = None

    @model_validator(mode="after")
    def _grants_something(self) -> StreamAccess:
        if not (self.publish or self.consume or self.manage):
            raise PydanticCustomError(
                "empty_macro", "give at least one of publish, consume, manage"
            )
        return self


class Macros(BaseModel):
    """The macro keys shared by roles and grantees (users, anonymous, certificates)."""

    model_config = _CONFIG
    inbox: Literal["private"] | None = None
    kv: dict[BucketName, KvLevel] = Field(default_factory=dict)
    streams: dict[StreamName, StreamAccess] = Field(default_factory=dict)
    object_stores: dict[BucketName, ObjectLevel] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expansion:
    """The subjects a set of macros grants, each with the macro that produced it."""

    entries: tuple[Entry, ...] = ()
    notes: tuple[str, ...] = ()

    def subjects(self, kind: str) -> tuple[str, ...]:
        """The subjects of one list, in order, without repeats."""
        return tuple(dict.fromkeys(s for k, s, _ in self.entries if k == kind))


def _acks(stream: str, consumer: str) -> tuple[str, ...]:
    # v1 and v2 (`js_ack_fc_v2`, default from 2.16: $JS.ACK.<domain>.<acc hash>.…);
    # ordered consumers of nats-py 2.16 read only v1, so both are granted.
    return (f"$JS.ACK.{stream}.{consumer}", f"$JS.ACK.*.*.{stream}.{consumer}")


def _flow_control(stream: str) -> tuple[str, ...]:
    return (f"$JS.FC.{stream}.>", f"$JS.FC.*.*.{stream}.>")


def _reader(stream: str, filtered: str) -> tuple[str, ...]:
    """A whole stream's reads: info, gets, ordered consumers (nats-py watch/get)."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.{filtered}",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.*.{filtered}",
        f"{API}.CONSUMER.INFO.{stream}.*",
        *_flow_control(stream),
    )


def _stream_admin(stream: str) -> tuple[str, ...]:
    return tuple(
        f"{API}.STREAM.{op}.{stream}" for op in ("CREATE", "UPDATE", "DELETE", "PURGE")
    )


NOTES = {
    "inbox": "set the client's inbox prefix to _INBOX_{{user}} (nats-py "
    "inbox_prefix, nats.go CustomInboxPrefix, nats.js inboxPrefix)",
    "read": "{what} is read whole: get by revision and non-direct get "
    "cannot be scoped to keys, and a watch creates a consumer whose deliver "
    "subject the client chooses (the server pushes the bucket there)",
    "kv-write": "kv {b}: a put with the header `Nats-Rollup: all` wipes "
    "every other key of the bucket",
    "names": "$JS.API.STREAM.NAMES lists the name of every stream of the "
    "account (nats-py's object get looks the stream up with it)",
    "trust": "{what}: ACCOUNT TRUST: can re-create the stream on any subject "
    "and read everyone's traffic in the account",
    "consume-any": "stream {s}: consume any: may create consumers, whose "
    "deliver subject the client chooses",
}


def expand(macros: Macros) -> Expansion:
    """
    The exact subjects the macros grant (known-answer tested).

    Every JetStream macro also grants the private inbox `_INBOX_{{user}}.>`
    for the API's replies and push deliveries; `inbox: private` in addition
    denies `_INBOX.>`, so no role can hand out the shared inbox.
    """
    out: list[Entry] = []
    notes: list[str] = []

    def add(kind: Kind, source: str, *subjects: str) -> None:
        out.extend((kind, subject, source) for subject in subjects)

    uses_js = bool(macros.kv or macros.streams or macros.object_stores)
    if macros.inbox == "private":
        add("sub", "inbox: private", f"{INBOX_PREFIX}.>")
        add("sub_deny", "inbox: private", "_INBOX.>")
    for bucket, kv_level in macros.kv.items():
        _kv(bucket, kv_level, add, notes)
    for name, access in macros.streams.items():
        _stream(name, access, add, notes)
    for bucket, level in macros.object_stores.items():
        _object_store(bucket, level, add, notes)
    if uses_js:
        add("sub", "jetstream replies", f"{INBOX_PREFIX}.>")
    if macros.inbox == "private" or uses_js:
        notes.insert(0, NOTES["inbox"])
    return Expansion(tuple(dict.fromkeys(out)), tuple(dict.fromkeys(notes)))


def _kv(bucket: str, level: str, add: _Add, notes: list[str]) -> None:
    source, stream = f"kv.{bucket}: {level}", f"KV_{bucket}"
    add("pub", source, *_reader(stream, f"$KV.{bucket}.>"))
    notes.append(NOTES["read"].format(what=f"kv {bucket}"))
    if level != "read":
        add("pub", source, f"$KV.{bucket}.>")
        notes.append(NOTES["kv-write"].format(b=bucket))
    if level == "admin-account-trust":
        add("pub", source, *_stream_admin(stream))
        notes.append(NOTES["trust"].format(what=f"kv {bucket}"))


def _object_store(bucket: str, level: str, add: _Add, notes: list[str]) -> None:
    source, stream = f"object_stores.{bucket}: {level}", f"OBJ_{bucket}"
    add("pub", source, *_reader(stream, f"$O.{bucket}.>"), f"{API}.STREAM.NAMES")
    notes.extend((NOTES["read"].format(what=f"object store {bucket}"), NOTES["names"]))
    if level == "write":
        # put purges replaced chunks by subject; the body could purge more
        chunks, meta = f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"
        add("pub", source, chunks, meta, f"{API}.STREAM.PURGE.{stream}")


def _stream(name: str, access: StreamAccess, add: _Add, notes: list[str]) -> None:
    where = f"streams.{name}"
    if access.publish:
        # the stream's subjects as written; the publish ack comes to the inbox
        add("pub", f"{where}.publish", *access.publish)
    if access.consume == "any":
        source = f"{where}.consume: any"
        add(
            "pub",
            source,
            f"{API}.STREAM.INFO.{name}",
            f"{API}.CONSUMER.CREATE.{name}",
            f"{API}.CONSUMER.CREATE.{name}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{name}.*",
            f"{API}.CONSUMER.INFO.{name}.*",
            f"{API}.CONSUMER.MSG.NEXT.{name}.*",
            *(f"{ack}.>" for ack in _acks(name, "*")),
            *_flow_control(name),
        )
        notes.append(NOTES["consume-any"].format(s=name))
    else:
        for consumer in access.consume:
            add(
                "pub",
                f"{where}.consume: {consumer}",
                f"{API}.CONSUMER.INFO.{name}.{consumer}",
                f"{API}.CONSUMER.MSG.NEXT.{name}.{consumer}",
                *(f"{ack}.>" for ack in _acks(name, consumer)),
                *_flow_control(name),
            )
    if access.manage:
        add(
            "pub",
            f"{where}.manage: {TRUST}",
            f"{API}.STREAM.INFO.{name}",
            *_stream_admin(name),
        )
        notes.append(NOTES["trust"].format(what=f"stream {name}"))


def combine(expansions: Iterable[Expansion]) -> Expansion:
    """Several sources' expansions as one (roles first, then the grantee's)."""
    items = list(expansions)
    return Expansion(
        tuple(dict.fromkeys(e for x in items for e in x.entries)),
        tuple(dict.fromkeys(n for x in items for n in x.notes)),
    )


def trusts(macros: Macros) -> tuple[tuple[tuple[str, ...], str], ...]:
    """The account-trust levels used: (location under the entry, warning)."""
    found: list[tuple[tuple[str, ...], str]] = [
        (("kv", bucket), NOTES["trust"].format(what=f"kv {bucket}"))
        for bucket, level in macros.kv.items()
        if level == "admin-account-trust"
    ]
    found.extend(
        (("streams", name, "manage"), NOTES["trust"].format(what=f"stream {name}"))
        for name, access in macros.streams.items()
        if access.manage
    )
    return tuple(found)
