"""The JUnit XML a CI system reads and the table a person reads, from the same results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from localmaker.contract.junit import write_junit
from localmaker.contract.report import format_table, summary
from localmaker.contract.results import CheckResult

RESULTS = [
    CheckResult.passed("ping", "healthy after 2.0 s", 2.0),
    CheckResult.failed("unsupported-content-type", "answered 500: ValueError: <cannot> & decode", 0.25),
    CheckResult.skipped("malformed-body", "no declared Content-Type is JSON or .npy"),
    CheckResult.passed("example: two texts", "answered 200", 0.5),
]


def test_junit_xml_parses_with_counts_that_agree_with_its_cases(tmp_path):
    path = write_junit(RESULTS, tmp_path / "reports" / "contract.xml", "contract-test.tiny-qwen3",
                       {"source": "tiny-qwen3"})
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite, = root.findall("testsuite")
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("skipped"), element.get("errors")) == (
            "4", "1", "1", "0")
    assert float(suite.get("time")) == 2.75
    assert suite.find("properties/property").attrib == {"name": "source", "value": "tiny-qwen3"}
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [r.name for r in RESULTS]
    assert {case.get("classname") for case in cases} == {"contract-test.tiny-qwen3"}
    failure = cases[1].find("failure")
    assert failure.get("message") == failure.text == "answered 500: ValueError: <cannot> & decode"
    assert cases[2].find("skipped").get("message") == "no declared Content-Type is JSON or .npy"
    assert cases[0].find("failure") is None and cases[0].find("skipped") is None


def test_the_table_has_a_row_per_check_on_one_line_each():
    multiline = [*RESULTS, CheckResult.failed("example: long", "first line\n  second line")]
    table = format_table(multiline).splitlines()
    assert table[0].split() == ["CHECK", "RESULT", "REASON"]
    assert len(table) == 1 + len(multiline)
    assert table[2].split(None, 2) == ["unsupported-content-type", "FAIL",
                                       "answered 500: ValueError: <cannot> & decode"]
    assert table[3].startswith("malformed-body ") and "  SKIP  " in table[3]
    assert table[-1].endswith("FAIL    first line second line")
    outcomes = [result.outcome.value for result in multiline]
    assert len({row.index(f"  {outcome}  ") for row, outcome in zip(table[1:], outcomes, strict=True)}) == 1
    assert summary(multiline) == "2 passed, 2 failed, 1 skipped"
