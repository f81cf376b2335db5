"""
Subjects and names in the policy: rules (also as pydantic field types),
templates, and merging permission lists into a Grant.

Strategy: every subject is checked once, at load time, with each template
replaced by a placeholder token. At request time a template may only expand
to a value that `is_safe_token` accepts (docs/policy.md "The policy file"), so
the result is still a valid subject with the same wildcards. Named users' lists are
rendered at load time; only anonymous `{{user}}` and the `{{claim.NAME}}`
values of a bearer token (identity_providers) are known per connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from service.protocol.claims import Permission, ResponsePermission

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


TEMPLATE_VARS = ("user", "account")
_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# {{claim.NAME}}: a dotted path of plain names into the token's claims.
_CLAIM_VAR = re.compile(r"claim\.([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)")
_CLAIM_USE = re.compile(r"\{\{claim\.([^{}]+)\}\}")  # in normalized entries
MAX_CLAIM_VALUE = 128  # a claim value is often the user's to choose: keep it short
# Whitespace (str's \s is Unicode-aware) and C0/DEL control characters.
_BLANK_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_UNSAFE_IN_TOKEN = re.compile(r"[.*>\s\x00-\x1f\x7f]")

# The documented rule for user and role names: 1-64 characters, a letter or
# digit first, then letters, digits, "_", "-" or "@". Stricter than a subject
# token needs, so a name is safe in a subject, a log line and a JWT `name`.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_@-]{0,63}")
_MAX_NAME = 64
SAFE_NAME_RULE = (
    "1-64 characters: a letter or digit, then letters, digits, '_', '-' or '@'"
)


def is_safe_token(value: str) -> bool:
    """
    Tell whether `value` can stand as exactly one literal subject token.

    Returns:
        False for an empty value or one with `.`, `*`, `>`, whitespace or a
        control character, since any of those would change which subjects a
        templated permission matches.
    """
    return bool(value) and _UNSAFE_IN_TOKEN.search(value) is None


def _token_problem(tokens: list[str], what: str) -> str | None:
    for index, part in enumerate(tokens):
        if not part:
            return f"{what} has an empty token (..)"
        if ("*" in part and part != "*") or (">" in part and part != ">"):
            return f"{what}: wildcards * and > must be a whole token"
        if part == ">" and index != len(tokens) - 1:
            return f"{what}: > must be the last token"
    return None


def _pattern_problem(text: str, what: str) -> str | None:
    if not text:
        return f"empty {what}"
    if _BLANK_OR_CONTROL.search(text):
        return f"{what} contains whitespace or a control character"
    if text[0] == "." or text[-1] == ".":
        return f"{what} has a leading or trailing dot"
    return _token_problem(text.split("."), what)


def subject_problem(entry: str, *, queue_allowed: bool) -> str | None:
    """
    Check one permission entry, templates included.

    Args:
        entry: A subject, or for subscribe `"subject queue"`.
        queue_allowed: True for subscribe entries (jwt v2 types.go: only
            subscriptions carry a queue).

    Returns:
        What is wrong, or None when the entry is valid.
    """
    for name in _TEMPLATE.findall(entry):
        if name not in TEMPLATE_VARS and not _CLAIM_VAR.fullmatch(name):
            return (
                f"unknown template variable {{{{{name}}}}};"
                " only {{user}}, {{account}} and {{claim.NAME}} exist"
            )
    plain = _TEMPLATE.sub("x", entry)
    if "{{" in plain or "}}" in plain:
        return "unbalanced template braces"
    subject, space, queue = plain.partition(" ")
    if not space:
        return _pattern_problem(subject, "subject")
    if not queue_allowed:
        return "a queue group (subject queue) is only allowed in subscribe entries"
    return _pattern_problem(subject, "subject") or _pattern_problem(queue, "queue")


def uses_claims(entries: Iterable[str]) -> bool:
    """Whether any entry has a `{{claim.…}}` template."""
    return any(_CLAIM_USE.search(normalize(entry)) for entry in entries)


def publish_problem(entry: str) -> str | None:
    """`subject_problem` for a publish entry."""
    return subject_problem(entry, queue_allowed=False)


def subscribe_problem(entry: str) -> str | None:
    """`subject_problem` for a subscribe entry."""
    return subject_problem(entry, queue_allowed=True)


def name_problem(value: str) -> str | None:
    """What is wrong with a user or role name, or None."""
    if SAFE_NAME.fullmatch(value) is None:
        return f"unsafe name; a name is {SAFE_NAME_RULE}"
    return None


def account_name_problem(value: str) -> str | None:
    """What is wrong with an account name (it fills {{account}}), or None."""
    if not is_safe_token(value) or len(value) > _MAX_NAME:
        return (
            "an account name must be one subject token of at most 64 characters:"
            " no '.', '*', '>', whitespace or control characters"
        )
    return None


def rule(kind: str, problem: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic validator from a `value -> problem or None` function."""

    def check(value: str) -> str:
        if message := problem(value):
            raise PydanticCustomError(kind, message)
        return value

    return AfterValidator(check)


Name = Annotated[
    str,
    rule("unsafe_name", name_problem),
    Field(json_schema_extra={"pattern": f"^{SAFE_NAME.pattern}$"}),
]
AccountName = Annotated[str, rule("unsafe_name", account_name_problem)]
PubSubject = Annotated[str, rule("bad_subject", publish_problem)]
SubSubject = Annotated[str, rule("bad_subject", subscribe_problem)]


def normalize(entry: str) -> str:
    """Rewrite `{{ user }}` as `{{user}}` so rendering is a plain replace."""
    return _TEMPLATE.sub(lambda m: "{{" + m.group(1) + "}}", entry)


@dataclass(frozen=True, slots=True)
class Grant:
    """
    The permissions a user JWT carries (`pub`, `sub`, `resp`).

    Attributes:
        implied_sub_deny: The entries of `sub.deny` the service added itself
            to close `*` allows (`deeper_denies`), for `explain` to show.
        macros: (list, subject, macro) for each subject a macro produced
            (policy/macros.py), rendered; `notes` what they cannot scope.
    """

    pub: Permission
    sub: Permission
    resp: ResponsePermission | None
    implied_sub_deny: tuple[str, ...] = ()
    macros: tuple[tuple[str, str, str], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    """One principal's merged lists, templates still in place.

    `macros` and `notes`: as in `Grant`, templates still in place.
    """

    pub_allow: tuple[str, ...]
    pub_deny: tuple[str, ...]
    sub_allow: tuple[str, ...]
    sub_deny: tuple[str, ...]
    resp: ResponsePermission | None
    uses_user: bool
    uses_account: bool
    claim_paths: tuple[str, ...] = ()
    macros: tuple[tuple[str, str, str], ...] = ()
    notes: tuple[str, ...] = ()


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def make_rules(
    *,
    pub_allow: Iterable[str],
    pub_deny: Iterable[str],
    sub_allow: Iterable[str],
    sub_deny: Iterable[str],
    resp: ResponsePermission | None,
    macros: Iterable[tuple[str, str, str]] = (),
    notes: Iterable[str] = (),
) -> Rules:
    """
    Merge lists (roles first, then the user's own) into prepared rules.

    Entries are normalized and deduplicated, keeping their first position.
    `macros` only say where some entries came from: they are in the lists.
    """
    pa, pd, sa, sd = (
        _dedupe(normalize(s) for s in items)
        for items in (pub_allow, pub_deny, sub_allow, sub_deny)
    )
    joined = "\n".join((*pa, *pd, *sa, *sd))
    return Rules(
        pub_allow=pa,
        pub_deny=pd,
        sub_allow=sa,
        sub_deny=sd,
        resp=resp,
        uses_user="{{user}}" in joined,
        uses_account="{{account}}" in joined,
        claim_paths=_dedupe(_CLAIM_USE.findall(joined)),
        macros=tuple((k, normalize(s), normalize(m)) for k, s, m in macros),
        notes=tuple(normalize(n) for n in notes),
    )


def render(
    rules: Rules,
    *,
    user: str,
    account: str,
    claims: Mapping[str, str] | None = None,
) -> Grant | None:
    """
    Substitute the templates and apply deny-wins and the safety defaults.

    Args:
        claims: `{{claim.PATH}}` values by PATH; a missing one is unsafe.

    Returns:
        The grant, or None when a substituted value is not one safe subject
        token (the connection must then be refused).
    """
    if (rules.uses_user and not is_safe_token(user)) or (
        rules.uses_account and not is_safe_token(account)
    ):
        return None
    values = {"user": user, "account": account}
    for path in rules.claim_paths:
        value = (claims or {}).get(path, "")
        if not is_safe_token(value) or len(value) > MAX_CLAIM_VALUE:
            return None
        values[f"claim.{path}"] = value
    templated = rules.uses_user or rules.uses_account or bool(rules.claim_paths)

    def one(text: str) -> str:
        # One pass: a substituted value is never itself read as a template.
        return _TEMPLATE.sub(lambda m: values.get(m[1], m[0]), text)

    def fill(items: tuple[str, ...]) -> tuple[str, ...]:
        return _dedupe(one(s) for s in items) if templated else items

    pub_deny, sub_deny = fill(rules.pub_deny), fill(rules.sub_deny)
    # Deny wins, as in NATS: an entry in both lists stays only in deny.
    pub_allow = tuple(s for s in fill(rules.pub_allow) if s not in pub_deny)
    sub_allow = tuple(s for s in fill(rules.sub_allow) if s not in sub_deny)
    # docs/protocol.md §7.12: with no allow list the server applies the account's
    # default permissions (often everything), so an empty allow list must
    # become an explicit deny-all. docs/protocol.md §7.11: with `resp` set and
    # no pub allow the server already denies every publish but replies; ">"
    # in deny would also block the replies.
    if not pub_allow and rules.resp is None and ">" not in pub_deny:
        pub_deny = (*pub_deny, ">")
    if not sub_allow and ">" not in sub_deny:
        sub_deny = (*sub_deny, ">")
    implied = tuple(d for d in deeper_denies(sub_allow) if d not in sub_deny)
    return Grant(
        pub=Permission(allow=pub_allow, deny=pub_deny),
        sub=Permission(allow=sub_allow, deny=(*sub_deny, *implied)),
        resp=rules.resp,
        implied_sub_deny=implied,
        macros=tuple((k, one(s), one(m)) for k, s, m in rules.macros),
        notes=fill(rules.notes),
    )


def deeper_denies(sub_allow: Iterable[str]) -> tuple[str, ...]:
    """
    The denies that keep `*` subscribe allows to the depth they name.

    nats-server 2.15.1 checks a subscription's subject against the allow list
    as if its tokens were literal, so `*` in an allow matches a `>` token:
    with allow `one.*` a client may subscribe to `one.>` and then receives
    `one.a.b`. Only a last-token `*` can meet the `>` (it must be the
    subscription's last token, and a literal after the `*` then finds no
    token), so `a.*.c` does not leak; `one.*` and `a.*.*` do. A deny of
    `<allow>.>` closes it: the server keeps the `one.>` subscription but
    filters each message through the deny list (delivers `one.a`, drops
    `one.a.b`). A deny always wins, so it is added only when no allow of the
    grant matches a subject it covers (`one.*` with `one.>` or `one.a.>`
    gets none: that deny would take away what they grant).
    """
    patterns = [entry.partition(" ")[0].split(".") for entry in sub_allow]
    out: dict[str, None] = {}
    for tokens in patterns:
        if tokens[-1] != "*":
            continue
        deny = [*tokens, ">"]
        if not any(overlaps(deny, other) for other in patterns):
            out[".".join(deny)] = None
    return tuple(out)


def overlaps(a: list[str], b: list[str]) -> bool:
    """Whether some literal subject matches both token patterns (`*`, `>`)."""
    for x, y in zip(a, b, strict=False):
        if ">" in (x, y):
            return True  # the other has a token here: `>` takes it and the rest
        if x != y and "*" not in (x, y):
            return False
    # one ran out first: `>` needs at least one more token, a literal one more
    return len(a) == len(b)
