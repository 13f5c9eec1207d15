"""JUnit XML for CI systems: one ``<testcase>`` per check, a ``<failure>`` or ``<skipped>`` with the reason.

This is the shape GitHub Actions report actions and GitLab's ``artifacts:reports:junit`` read:
``<testsuites>`` holding one ``<testsuite>`` whose counts agree with its test cases.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from localmaker.contract.results import CheckResult, Outcome, count


def junit_tree(results: Sequence[CheckResult], suite: str, properties: dict[str, str] | None = None) -> ET.ElementTree:
    counts = count(results)
    totals = {"tests": str(len(results)), "failures": str(counts[Outcome.FAILED]), "errors": "0",
              "skipped": str(counts[Outcome.SKIPPED]), "time": f"{sum(r.seconds for r in results):.3f}"}
    root = ET.Element("testsuites", {"name": "localmaker contract-test", **totals})
    testsuite = ET.SubElement(root, "testsuite", {"name": suite, **totals, "hostname": socket.gethostname(),
                                                  "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if properties:
        listed = ET.SubElement(testsuite, "properties")
        for name, value in properties.items():
            ET.SubElement(listed, "property", {"name": name, "value": value})
    for result in results:
        case = ET.SubElement(testsuite, "testcase", {"classname": suite, "name": result.name,
                                                     "time": f"{result.seconds:.3f}"})
        if result.outcome is Outcome.FAILED:
            failure = ET.SubElement(case, "failure", {"message": result.reason, "type": "ContractViolation"})
            failure.text = result.reason
        elif result.outcome is Outcome.SKIPPED:
            ET.SubElement(case, "skipped", {"message": result.reason})
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_junit(results: Sequence[CheckResult], path: Path, suite: str,
                properties: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(results, suite, properties).write(path, encoding="utf-8", xml_declaration=True)
    return path
