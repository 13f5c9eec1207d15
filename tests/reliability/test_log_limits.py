"""Whatever an instance writes to its log, shipping it keeps CloudWatch's limits and bounded memory.

Before: a 300 MB line without a newline took the control plane to 2.63 GB (the file was read whole, then
the line decoded whole and stored as one event), and 1M lines kept 546 MB in moto. The shipping runs in
a fresh interpreter here so that its peak RSS is its own; moto is the CloudWatch Logs it ships to, and
every PutLogEvents call is recorded on the way to check PutLogEvents' limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from localmaker.control_plane.log_shipper import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES

HUGE_LINE_BYTES = 96 * 1024**2
MANY_LINES = 300_000

SHIPPING = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import boto3
    from moto import mock_aws
    from localmaker.control_plane.log_shipper import LogShipper

    folder = Path(sys.argv[1])
    calls = []

    def rss_kb():
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    class Recording:
        '''The real moto client; each PutLogEvents call's event sizes are noted on the way.'''
        def __init__(self, client):
            self._client, self.exceptions = client, client.exceptions
        def __getattr__(self, name):
            return getattr(self._client, name)
        def put_log_events(self, **kwargs):
            calls.append([len(e["message"].encode("utf-8")) for e in kwargs["logEvents"]])
            return self._client.put_log_events(**kwargs)

    with mock_aws():
        client = boto3.client("logs", region_name="us-east-1")
        recording = Recording(client)
        shipper = LogShipper(lambda: recording, interval_s=3600)
        baseline, baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_kb()
        for stream in ("huge", "many", "wide"):
            shipper.follow("/aws/sagemaker/Endpoints/e", stream, folder / f"{stream}.log")
        shipper.release("/aws/sagemaker/Endpoints/e")
        peak, retained = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_kb() - baseline_rss
        shipped = {}
        for stream in ("huge", "many", "wide"):
            events, token = [], None
            while True:
                page = client.get_log_events(logGroupName="/aws/sagemaker/Endpoints/e", logStreamName=stream,
                                             startFromHead=True, **({"nextToken": token} if token else {}))
                events += [e["message"] for e in page["events"]]
                if not page["events"] or page["nextForwardToken"] == token:
                    break
                token = page["nextForwardToken"]
            shipped[stream] = {"count": len(events), "first": events[:3], "last": events[-1] if events else None,
                               "sizes": sorted({len(e.encode("utf-8")) for e in events})[-3:]}
    print(json.dumps({"growth_kb": max(peak - baseline, retained), "retained_kb": retained, "calls": calls,
                      "shipped": shipped}))
""")


def ship(folder: Path) -> dict:
    answer = subprocess.run([sys.executable, "-c", SHIPPING, str(folder)], capture_output=True, text=True,
                            timeout=300, check=True)
    return dict(json.loads(answer.stdout.strip().splitlines()[-1]))


def test_a_huge_line_and_many_lines_ship_within_cloudwatch_limits_and_bounded_memory(tmp_path):
    with open(tmp_path / "huge.log", "wb") as huge:  # one line, no newline, written without holding it
        for _ in range(HUGE_LINE_BYTES // (1024**2)):
            huge.write(b"A" * (1024**2))
    (tmp_path / "many.log").write_bytes(b"".join(b"line %d\n" % i for i in range(MANY_LINES)))
    # Two-byte characters across a cut, a line of invalid UTF-8 (each byte becomes a 3-byte U+FFFD), and blanks.
    (tmp_path / "wide.log").write_bytes("é".encode() * 200_000 + b"\n" + b"\xff" * 300_000 + b"\n\n   \nend")
    result = ship(tmp_path)

    for sizes in result["calls"]:  # PutLogEvents' own limits, call by call
        assert 0 < len(sizes) <= MAX_BATCH_EVENTS
        assert sum(sizes) + EVENT_OVERHEAD * len(sizes) <= MAX_BATCH_BYTES
        assert max(sizes) + EVENT_OVERHEAD <= 256 * 1024
    huge, many, wide = (result["shipped"][s] for s in ("huge", "many", "wide"))
    assert huge["first"][0] == "A" * MAX_EVENT_BYTES  # split into full events, not dropped
    assert 50 < huge["count"] < 80 and "stops here" in huge["last"] and "huge.log" in huge["last"]
    assert many["first"] == ["line 0", "line 1", "line 2"] and many["count"] == 100_000
    assert "LOCALMAKER_LOG_STREAM_MAX_EVENTS" in many["last"]
    assert wide["first"][0] == "é" * (MAX_EVENT_BYTES // 2) and wide["last"] == "end"  # cut between characters
    assert wide["count"] == 2 + 4 + 1 and max(wide["sizes"]) <= MAX_EVENT_BYTES
    # The 96 MB line alone took more than 300 MB before; now the file is read 1 MB at a time and a stream
    # holds at most 16 MB of events.
    assert result["growth_kb"] < 120 * 1024, result["growth_kb"]
