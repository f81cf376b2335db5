"""JUnit XML for CI systems that annotate test results (GitLab, Jenkins, ...)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from service.review.runner import Result


def write_junit(path: Path, suite: str, results: Sequence[Result]) -> None:
    """One testsuite, one testcase per case, a failure element per failed case."""
    failed = sum(not r.passed for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failed))
    element = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(results)), failures=str(failed)
    )
    for result in results:
        case = ET.SubElement(
            element, "testcase", classname=result.where, name=result.title
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=result.failures[0])
            failure.text = "\n".join(result.failures)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
