"""The shipped Grafana dashboard and Prometheus rules, read as the tests need them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

DEPLOY = Path(__file__).parents[1] / "deploy" / "observability"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
RULES = DEPLOY / "prometheus-rules.yaml"
# Grafana's own variables, as Prometheus would see them once substituted
GRAFANA_VARIABLES = {"$__rate_interval": "5m"}
METRIC = re.compile(r"\bcallout_[a-z_]+\b")


def dashboard_expressions() -> list[str]:
    """Every panel's PromQL, with Grafana's variables filled in."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = str(target["expr"])
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            expressions.append(expr)
    return expressions


def rule_groups() -> list[dict[str, Any]]:
    """The rules file's groups, as loaded YAML."""
    document: dict[str, Any] = YAML(typ="safe").load(RULES.read_text(encoding="utf-8"))
    groups: list[dict[str, Any]] = document["groups"]
    return groups


def rule_expressions() -> list[str]:
    return [str(rule["expr"]) for group in rule_groups() for rule in group["rules"]]


def observed_metric_names() -> set[str]:
    """Every `callout_*` name the dashboard and the rules refer to."""
    return {
        name
        for expr in (*dashboard_expressions(), *rule_expressions())
        for name in METRIC.findall(expr)
    }
