"""The README's settings table matches the Settings class."""

from __future__ import annotations

import re
from pathlib import Path

from service.config import ENV_PREFIX, Settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def _table_variables() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `CALLOUT_")]
    first_cells = (row.split("|")[1] for row in rows)
    return {
        name for cell in first_cells for name in re.findall(r"`(CALLOUT_\w+)`", cell)
    }


def test_every_setting_is_documented_and_nothing_else() -> None:
    """Each Settings field has a row, and each documented variable exists."""
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}

    documented = _table_variables()

    assert fields == documented
