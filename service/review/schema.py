"""
The policy file's JSON Schema, generated from the model (docs/policy.schema.json).

Editors (the YAML language server, VS Code, JetBrains) use it for completion
and to mark unknown keys, wrong types, bad names, plaintext secrets and bad
durations as you type. What needs the whole document (a role or account that
is not declared, duplicates, the callout account, templates) stays with
`nats-auth-callout check`. A test keeps the published file equal to this.
"""

from __future__ import annotations

import json
from typing import Any

from service.policy.model import PolicyDocument

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (validation mode: what may be written)."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "nats-auth-callout policy",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def schema_text() -> str:
    """The schema as the published file holds it."""
    return json.dumps(policy_schema(), indent=2, ensure_ascii=False) + "\n"
