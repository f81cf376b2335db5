"""The published JSON Schema and `check --format json`: what tools read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from service.cli import main
from service.review.schema import schema_text

ROOT = Path(__file__).parents[2]
PUBLISHED = ROOT / "docs" / "policy.schema.json"
EXAMPLE = ROOT / "config" / "policy.example.yaml"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(PUBLISHED.read_text()))


def _document(text: str) -> Any:
    return YAML(typ="safe").load(text)


def test_the_published_schema_is_the_generated_one() -> None:
    """docs/policy.schema.json equals what `nats-auth-callout schema` prints."""
    assert PUBLISHED.read_text(encoding="utf-8") == schema_text()


def test_the_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`schema` writes the published text to stdout and exits 0."""
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


def test_the_schema_is_a_valid_schema_and_accepts_the_example() -> None:
    """The schema is valid 2020-12 and the shipped example has no error under it."""
    jsonschema.Draft202012Validator.check_schema(VALIDATOR.schema)

    errors = list(VALIDATOR.iter_errors(_document(EXAMPLE.read_text())))

    assert errors == []


HASH = "$2b$10$gYpnEAMO0QUvV08Kdv4s..jRbHSb5ID5HFOdBjzmD33bgHGDMRb76"
# Each class of error `check` refuses that a schema can express: (old, new).
MUTATIONS = {
    "unknown key": ("    roles: [customer]", "    roles: [customer]\n    colour: x"),
    "missing key": ("  account: APP              # users", "  # account: APP"),
    "wrong type": ("    roles: [customer]", "    roles: customer"),
    "bad enum": ("[STANDARD, WEBSOCKET]", "[TCP]"),
    "unsafe name": ("- name: john-doe", "- name: john doe"),
    "plaintext secret": (f'password: "{HASH}"', "password: hunter2"),
    "bad duration": ("expires: 10m", "expires: 10 minutes"),
    "bad version": ("version: 1 ", "version: 2 "),
}


@pytest.mark.parametrize("kind", MUTATIONS)
def test_check_and_the_schema_both_reject(kind: str, tmp_path: Path) -> None:
    """A mutation `check` refuses is also an error under the schema."""
    text = EXAMPLE.read_text(encoding="utf-8")
    old, new = MUTATIONS[kind]
    assert old in text
    broken = text.replace(old, new, 1)
    path = tmp_path / "policy.yaml"
    path.write_text(broken, encoding="utf-8")

    assert main(["check", str(path)]) == 1
    assert list(VALIDATOR.iter_errors(_document(broken))) != []


def test_check_json_gives_file_line_column_and_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each problem carries its position and a code an editor can show."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\naccounts: {APP: {}}\ndefaults: {account: APP}\n"
        "users:\n  - name: john doe\n    password: x\n    colour: blue\n",
        encoding="utf-8",
    )

    code = main(["check", "--format", "json", str(path)])

    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["ok"] is False
    assert report["summary"] is None
    found = {
        (p["line"], p["column"], p["code"], p["where"]) for p in report["problems"]
    }
    assert (5, 5, "unsafe_name", "users[0].name") in found
    assert (6, 5, "bad_secret", "users[0].password") in found
    assert (7, 5, "extra_forbidden", "users[0].colour") in found
    assert all(p["file"] == str(path) for p in report["problems"])
    assert "blue" not in json.dumps(report)  # values are never quoted


def test_check_json_on_a_good_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid policy: ok, no problems, and the counts."""
    code = main(["check", "--format", "json", str(EXAMPLE)])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["ok"] is True
    assert report["summary"]["users"] == 3
