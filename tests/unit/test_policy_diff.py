"""`nats-auth-callout diff`: what each principal gains and loses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from service.cli import main
from service.policy import load_policy
from service.review.diff import diff_policies
from tests.builders import hash_secret

if TYPE_CHECKING:
    import pytest

EXAMPLE = Path(__file__).parents[2] / "config" / "policy.example.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")


def _version(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    text = TEXT
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _diff(capsys: pytest.CaptureFixture[str], old: Path, new: Path) -> tuple[int, str]:
    code = main(["diff", str(old), str(new)])
    return code, capsys.readouterr().out


def test_identical_policies_have_no_change(capsys: pytest.CaptureFixture[str]) -> None:
    """A policy compared with itself: nothing changed, exit 0."""
    code, out = _diff(capsys, EXAMPLE, EXAMPLE)

    assert code == 0
    assert out == "no principal changed\n"


def test_a_new_version_lists_gains_and_losses_per_principal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Gains (+) and losses (-) per principal; any loss makes the exit code 1."""
    new = _version(
        tmp_path,
        "v2.yaml",
        (
            "    roles: [customer]\n\n  - name: billing",
            "    roles: [customer, guest]\n\n  - name: billing",
        ),
        ("    account: BILLING                     # must", "    account: APP  # must"),
        (
            (
                '    publish: {deny: ["users.sensor-7.admin.>"]}'
                "     # merged with the roles\n"
            ),
            "",
        ),
        ("anonymous:\n  roles: [guest]\n  expires: 5m\n", ""),
    )

    code, out = _diff(capsys, EXAMPLE, new)

    assert code == 1
    lines = out.splitlines()
    assert lines[lines.index("user:john-doe") + 1] == "  + subscribe allow public.>"
    assert "  - account APP" in lines[lines.index("user:billing") :]
    assert "  - no account BILLING" in lines[lines.index("user:billing") :]
    sensor = lines[lines.index("user:sensor-7") + 1]
    assert sensor == "  + no publish deny users.sensor-7.admin.>"
    assert lines[lines.index("anonymous") + 1] == "  - principal removed"
    assert lines[-1] == "4 principals changed, 2 with losses"


def test_only_gains_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A new user and a wider role are gains only: exit 0 for a review gate."""
    added = (
        "users:\n",
        (
            f'users:\n  - name: alice\n    password: "{hash_secret("a")}"\n'
            "    roles: [guest]\n"
        ),
    )
    wider = (
        'subscribe: {allow: ["public.>"]}',
        'subscribe: {allow: ["public.>", "news.>"]}',
    )
    new = _version(tmp_path, "v2.yaml", added, wider)

    code, out = _diff(capsys, EXAMPLE, new)

    lines = out.splitlines()
    alice = lines[lines.index("user:alice") + 1 :]
    assert alice[:2] == ["  + principal added", "  + account APP"]
    assert "  + credential password" in alice
    assert lines[lines.index("anonymous") + 1] == "  + subscribe allow news.>"
    assert lines[-1] == "2 principals changed, 0 with losses"
    assert code == 0


def test_a_changed_password_is_a_loss_and_never_shows_a_hash(tmp_path: Path) -> None:
    """A new credential is reported as changed, without either hash."""
    old = load_policy(EXAMPLE)
    marker = "$2b$10$gYpnEAMO0QUvV08Kdv4s..jRbHSb5ID5HFOdBjzmD33bgHGDMRb76"
    new_hash = hash_secret("another")
    new = load_policy(_version(tmp_path, "v2.yaml", (marker, new_hash)))

    changes = diff_policies(old, new)

    assert [(c.principal, c.gained, c.lost) for c in changes] == [
        ("user:john-doe", (), ("credential changed",))
    ]
    text = repr(changes)
    assert marker not in text
    assert new_hash not in text


def test_an_unloadable_policy_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """diff exits 2 and prints the problems when a side does not load."""
    broken = _version(tmp_path, "v2.yaml", ("version: 1", "version: 7"))

    code = main(["diff", str(EXAMPLE), str(broken)])

    assert code == 2
    assert "v2.yaml" in capsys.readouterr().err
