"""Metrics: names, labels kept bounded, a registry of our own."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from service.ops.metrics import DECISIONS, Metrics, label


def _families(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(metrics.render().decode())
    }


def test_every_metric_of_the_issue_is_exposed_from_the_start() -> None:
    """All seven metrics appear before the first request, with zero series."""
    metrics = Metrics()
    metrics.track(inflight=lambda: 0, connected=lambda: 0)

    names = set(_families(metrics))

    assert {
        "callout_requests",
        "callout_request_duration_seconds",
        "callout_inflight_requests",
        "callout_dropped_requests",
        "callout_policy_reloads",
        "callout_policy_info",
        "callout_nats_connected",
    } <= names


def test_observe_counts_by_decision_and_reason() -> None:
    """A decision is counted under its reason code and timed under its decision."""
    metrics = Metrics()

    metrics.observe("deny", "bad_password", 0.003)
    metrics.observe("allow", None, 0.0002)
    samples = _families(metrics)

    assert ({"decision": "deny", "reason": "bad_password"}, 1.0) in samples[
        "callout_requests"
    ]
    assert ({"decision": "allow", "reason": "none"}, 1.0) in samples["callout_requests"]
    assert ({"decision": "allow", "le": "0.0005"}, 1.0) in samples[
        "callout_request_duration_seconds"
    ]


def test_labels_stay_bounded_whatever_the_reason_text() -> None:
    """Anything that is not a short code is counted as `other`."""
    expected = ["none", "bad_password", "other", "other", "other"]

    actual = [
        label(r)
        for r in (None, "bad_password", "User 'john' said hi", "x" * 100, "Über")
    ]

    assert expected == actual


def test_policy_info_has_only_the_version_in_force() -> None:
    """After a reload the old version's series is gone."""
    metrics = Metrics()

    metrics.set_policy("sha256:old")
    metrics.set_policy("sha256:new")
    info = _families(metrics)["callout_policy_info"]

    assert [({"version": "sha256:new"}, 1.0)] == info


def test_gauges_are_read_at_scrape_time() -> None:
    """In-flight and connected come from the callables given to track()."""
    metrics = Metrics()
    state = {"inflight": 3.0}
    metrics.track(inflight=lambda: state["inflight"], connected=lambda: 1.0)

    state["inflight"] = 5.0
    samples = _families(metrics)

    assert [({}, 5.0)] == samples["callout_inflight_requests"]
    assert [({}, 1.0)] == samples["callout_nats_connected"]


def test_drops_are_counted_by_reason() -> None:
    """Overload, expired and shutdown drops have their own series."""
    metrics = Metrics()

    metrics.drop("overload")
    metrics.drop("shutdown", 4)
    dropped = {
        labels["reason"]: value
        for labels, value in _families(metrics)["callout_dropped_requests"]
        if "reason" in labels
    }

    assert dropped["overload"] == 1
    assert dropped["shutdown"] == 4
    assert dropped["expired"] == 0


def test_the_global_registry_is_left_alone() -> None:
    """Two Metrics coexist; neither registers in prometheus_client's REGISTRY."""
    Metrics()
    Metrics()

    assert REGISTRY.get_sample_value("callout_requests_total") is None
    assert len(DECISIONS) == 3
