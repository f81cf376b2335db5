"""The project's own docs/: every cited document exists, and the log events match."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).parents[2]
# A path ending in docs/<name>.md, not inside a URL. An absolute path, or one
# in a folder of its own, is taken from the repository root too (so it fails).
DOC_PATH = re.compile(r"(?<![\w.:/-])/?(?:[\w.-]+/)*docs/[\w.-]+\.md")
EVENT = re.compile(r'"(callout\.[a-z_]+)"')
HISTORY = "CHANGELOG.md"  # names what was, not what is


def _repository_files() -> list[str]:
    """Tracked files, and new ones git would track (not the ignored .venv)."""
    git = shutil.which("git")
    assert git is not None
    result = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    names = result.stdout.decode("utf-8").split("\0")
    return [name for name in names if name and (ROOT / name).is_file()]


def test_every_cited_document_exists() -> None:
    """Each docs/<name>.md path written in a repository file names an existing file."""
    missing = []
    for name in _repository_files():
        if name == HISTORY:
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for found in DOC_PATH.finditer(text):
            if not (ROOT / found[0].lstrip("/")).is_file():
                line = text.count("\n", 0, found.start()) + 1
                missing.append(f"{name}:{line}: {found[0]}")

    assert missing == []


def _documented_events() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Decisions and logs\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `callout.")]
    return {
        event
        for row in rows
        for event in re.findall(r"`(callout\.[a-z_]+)`", row.split("|")[1])
    }


def _emitted_events() -> set[str]:
    # "callout.env" is a file (init's env file), not an event: a literal whose
    # last part is the extension of a file in the repository names a file.
    extensions = {PurePosixPath(name).suffix for name in _repository_files()}
    return {
        literal
        for path in (ROOT / "service").rglob("*.py")
        for literal in EVENT.findall(path.read_text(encoding="utf-8"))
        if PurePosixPath(literal).suffix not in extensions
    }


def test_documented_log_events_are_the_emitted_ones() -> None:
    """docs/operations.md's events table lists exactly the events the code logs."""
    emitted = _emitted_events()

    assert _documented_events() == emitted


BARE_DOC = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")
SECTION = re.compile(r"docs/(\w+)\.md §(\d+(?:\.\d+)?)")


def test_every_bare_document_name_exists_here() -> None:
    """A doc named without its folder (e.g. `protocol.md`) is in the root or docs/."""
    missing = []
    for name in _repository_files():
        if name == HISTORY or not name.endswith((".py", ".md", ".yaml", ".toml")):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for found in BARE_DOC.finditer(text):
            doc = found[1]
            if not ((ROOT / doc).is_file() or (ROOT / "docs" / doc).is_file()):
                line = text.count("\n", 0, found.start()) + 1
                missing.append(f"{name}:{line}: {doc}")

    assert missing == []


def test_every_cited_section_exists() -> None:
    """Each `docs/<doc>.md §N.M` citation names a numbered heading of that doc."""
    missing = []
    for name in _repository_files():
        if name == HISTORY:
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for found in SECTION.finditer(text):
            doc = ROOT / "docs" / f"{found[1]}.md"
            number = found[2]
            heading = re.compile(rf"^#+ {re.escape(number)}\.?\s", re.MULTILINE)
            if not doc.is_file() or not heading.search(doc.read_text("utf-8")):
                line = text.count("\n", 0, found.start()) + 1
                missing.append(f"{name}:{line}: {found[0]}")

    assert missing == []
