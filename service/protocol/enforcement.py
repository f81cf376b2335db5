"""
What nats-server lets a client do with the permissions of its user JWT.

The same decisions the server makes (server/client.go, v2.15.1:
`canSubscribe`, `queueMatches`, `pubAllowedFullCheck`), so a policy test
that passes here is what the server enforces:

* A subject matches an entry token by token: `*` matches one token, `>` one
  or more at the end. The subject's own tokens are literal here, so a
  subscription to `one.>` is matched by the entry `one.*` (its `*` matches
  the token `>`): that is the server's behaviour, not a shortcut.
* Subscribe entries may carry a queue group (`"foo q1"`). A plain
  subscription needs a plain entry; a queue subscription is decided by the
  queue entries that match the subject when there are any, else by the
  plain ones, and a queue entry's group may itself hold wildcards.
* An empty allow list allows everything (deny still applies); deny wins.

Dynamic reply permissions (`resp`) are not modelled: they exist only for
reply subjects of requests the client received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service.protocol.claims import Permission


def subject_matches(entry: str, subject: str) -> bool:
    """Whether permission `entry` (wildcards allowed) matches `subject`."""
    want, have = entry.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have):
            return False
        if part not in ("*", have[index]):
            return False
    return len(want) == len(have)


def has_wildcard(subject: str) -> bool:
    """Whether a subject has a `*` or `>` token."""
    return any(token in ("*", ">") for token in subject.split("."))


@dataclass(frozen=True, slots=True)
class _Matches:
    plain: bool
    queues: tuple[str, ...]  # the groups of the queue entries that match


def _match(entries: Iterable[str], subject: str) -> _Matches:
    plain, queues = False, []
    for entry in entries:
        pattern, _, queue = entry.partition(" ")
        if subject_matches(pattern, subject):
            if queue:
                queues.append(queue)
            else:
                plain = True
    return _Matches(plain, tuple(queues))


def _queue_matches(queue: str, groups: tuple[str, ...]) -> bool:
    # `*` and `>` are valid queue names too: the literal name is tried first
    return any(
        queue == group or (has_wildcard(group) and subject_matches(group, queue))
        for group in groups
    )


def can_subscribe(permission: Permission, subject: str, queue: str = "") -> bool:
    """Whether the server accepts a subscription (optionally in `queue`)."""
    allowed = True
    if permission.allow:
        found = _match(permission.allow, subject)
        allowed = found.plain
        if queue and found.queues:
            allowed = _queue_matches(queue, found.queues)
    if allowed and permission.deny:
        found = _match(permission.deny, subject)
        allowed = not found.plain
        if queue and found.queues:
            allowed = not _queue_matches(queue, found.queues)
    return allowed


def can_publish(permission: Permission, subject: str) -> bool:
    """Whether the server accepts a publish to the literal `subject`."""
    allowed = True
    if permission.allow:
        allowed = any(subject_matches(entry, subject) for entry in permission.allow)
    if allowed and permission.deny:
        allowed = not any(subject_matches(entry, subject) for entry in permission.deny)
    return allowed
