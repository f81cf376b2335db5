"""
Policy problems as `line: where: message`, without quoting the document.

ruamel's round-trip loader keeps the line of every key and list item;
`line_of()` walks each pydantic error's `loc` through the YAML nodes to it.
Messages are our fixed texts: pydantic's `input` is not read and ruamel's
snippets are not used, so a plaintext secret in the file cannot reach an
error.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, cast

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DUPLICATE_KEY = re.compile(r'found duplicate key "([^"]*)" with value')
# Fixed texts for pydantic's own error types; other messages pass through.
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "tuple_type": "expected a list",
    "string_type": "expected a string",
}


def yaml_problem(exc: YAMLError, text: str) -> str:
    if isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"{line}: invalid YAML: non-printable character"
    mark = None
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    if isinstance(exc, DuplicateKeyError):
        # ruamel's text quotes both values: they may be secrets.
        key = _DUPLICATE_KEY.search(str(exc.problem))
        return f"{line}: duplicate key {key[1]!r}" if key else f"{line}: duplicate key"
    if isinstance(exc, MarkedYAMLError):
        return f"{line}: invalid YAML: {exc.problem or exc.context}"
    return f"{line}: invalid YAML"


def line_of(root: object, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node `loc` reaches."""
    return position_of(root, loc)[0]


def position_of(root: object, loc: tuple[int | str, ...]) -> tuple[int, int]:
    """The 1-based line and column of the deepest YAML node `loc` reaches."""
    node, line, column = root, 0, 0
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line, column = cast("tuple[int, int]", node.lc.key(part))
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int):
                line, column = cast("tuple[int, int]", node.lc.item(part))
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            # Keys that came in through a merge (<<) have no line of their own.
            break
    return line + 1, column + 1


def where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def message(err: ErrorDetails) -> str:
    text = _MESSAGES.get(err["type"], err["msg"])
    return text[:1].lower() + text[1:]
