"""The documented settings and policy keys match the code.

docs/operations.md has the settings table, docs/policy.md the policy reference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import ENV_PREFIX, Settings

if TYPE_CHECKING:
    from pydantic import BaseModel

DOCS = Path(__file__).parents[2] / "docs"
OPERATIONS = (DOCS / "operations.md").read_text(encoding="utf-8")
POLICY = (DOCS / "policy.md").read_text(encoding="utf-8")


def _table_variables() -> set[str]:
    section = OPERATIONS.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
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


def _policy_tables() -> dict[str, set[str]]:
    after = POLICY.split("\n### Policy reference\n", 1)[1]
    section = re.split(r"\n#{1,3} ", after, maxsplit=1)[0]
    tables: dict[str, set[str]] = {}
    for block in section.split("\n#### ")[1:]:
        heading, _, body = block.partition("\n")
        keys = {
            key
            for line in body.splitlines()
            if line.startswith("| `")
            for key in re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])
        }
        tables[heading.strip()] = keys
    return tables


def test_policy_reference_matches_the_model() -> None:
    """Each policy table lists exactly the keys its model accepts."""
    from service.policy.certs import Certificate, CertificateMatch  # noqa: PLC0415
    from service.policy.fields import (  # noqa: PLC0415
        PublishRules,
        Responses,
        Role,
        SubscribeRules,
    )
    from service.policy.model import (  # noqa: PLC0415
        Account,
        Anonymous,
        Defaults,
        PolicyDocument,
        User,
    )
    from service.policy.providers import IdentityProvider  # noqa: PLC0415
    from service.policy.sessions import Sessions  # noqa: PLC0415
    from service.policy.throttle import Throttle  # noqa: PLC0415

    models: dict[str, type[BaseModel]] = {
        "Top level": PolicyDocument,
        "`accounts.<NAME>`": Account,
        "`defaults`": Defaults,
        "`roles.<NAME>`": Role,
        "`responses`": Responses,
        "`users[]`": User,
        "`anonymous`": Anonymous,
        "`identity_providers[]`": IdentityProvider,
        "`certificates[]`": Certificate,
        "`certificates[].match`": CertificateMatch,
        "`throttle`": Throttle,
        "`sessions`": Sessions,
    }
    tables = _policy_tables()

    assert set(PublishRules.model_fields) == set(SubscribeRules.model_fields)
    assert tables.pop("`publish`, `subscribe`") == set(PublishRules.model_fields)
    assert tables.keys() == models.keys()
    for heading, model in models.items():
        assert tables[heading] == set(model.model_fields), heading
