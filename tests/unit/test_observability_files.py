"""The shipped Grafana dashboard and Prometheus alert rules are well-formed."""

from __future__ import annotations

import re

import promql_parser
import pytest

from service.ops.metrics import Metrics
from tests.observability import (
    dashboard_expressions,
    observed_metric_names,
    rule_expressions,
    rule_groups,
)

DURATION = re.compile(r"[0-9]+[smhdwy]")


def _exported() -> set[str]:
    """Sample names a fresh registry exposes (callbacks set, as the worker does)."""
    metrics = Metrics()
    metrics.track(inflight=lambda: 0, connected=lambda: 1, ready=lambda: 1)
    metrics.observe("allow", None, 0.001)
    metrics.set_policy("sha256:test")
    metrics.track_cache(_Cache())
    text = metrics.render().decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line[:1] != "#"
    }


class _Cache:
    checks = 0

    def __len__(self) -> int:
        return 0


@pytest.mark.parametrize("expr", [*dashboard_expressions(), *rule_expressions()])
def test_every_expression_is_valid_promql(expr: str) -> None:
    """Each dashboard query and rule expression parses as PromQL."""
    promql_parser.parse(expr)


def test_the_rules_file_is_prometheus_rule_groups() -> None:
    """Named groups of alerting rules with a severity, a summary, a valid `for`."""
    groups = rule_groups()
    names = [g["name"] for g in groups]

    assert names
    assert len(set(names)) == len(names)
    for group in groups:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["alert"][:7] == "Callout"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            assert DURATION.fullmatch(rule.get("for", "0s"))


def test_the_files_use_only_exported_metrics() -> None:
    """Every callout_* name in the dashboard and the rules is one Metrics exposes."""
    used = observed_metric_names()

    assert used  # the regex found the names (an empty set would pass vacuously)
    assert used <= _exported()


def test_the_alerts_cover_what_operators_need() -> None:
    """Not ready, shedding, reload failures, deny spikes and silence each alert."""
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"]}

    assert {
        "CalloutNotReady",
        "CalloutShedding",
        "CalloutReloadFailed",
        "CalloutDenySpike",
        "CalloutNoDecisions",
    } <= alerts
